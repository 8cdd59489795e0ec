"""The date-normalisation task of chapter 2: human-written dates to ISO 8601.

``"Tue 3 March 1998"``, ``"03/03/98"`` or ``"the 3rd of March, 1998"`` become
``"1998-03-03"``. No numeric format puts the month first: ``03/04/98`` is the 3rd of
April (day first) and ``1998/04/03`` writes the year first; two-digit years are read in
the window 1950–2049, the range of every generated date, so that each source has exactly
one correct answer. The calendar days are split between training, validation and test,
so a test date was never seen in training, in any format.

The harder variant hides the date in a sentence of random filler words (up to
``max_length`` characters), so that the model must also find it.
"""

from __future__ import annotations

import datetime
import random
import string
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

__all__ = [
    "DATE_FORMATS",
    "CharTokenizer",
    "DateData",
    "DateSplits",
    "format_date",
    "make_dates",
]

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August")
MONTHS += ("September", "October", "November", "December")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
FIRST_DAY, LAST_DAY = datetime.date(1950, 1, 1), datetime.date(2049, 12, 31)
ISO_LENGTH = 10  # "1998-03-03"
_A_LONG_DATE = datetime.date(1997, 9, 24)  # Wednesday, 24 September: the longest names

# words for the sentences of the long variant: no digits, no month or weekday names
_FILLER_TEXT = """we met again after the long meeting and the report was signed by her team then
sent back to our office before noon a letter arrived late as usual his contract ends so this
project started with everyone who knew it well the train left for good on at"""
FILLER = tuple(_FILLER_TEXT.split())


def _ordinal(day: int) -> str:
    """1st, 2nd, 3rd, 4th, ..., 11th, 12th, 13th, ..., 21st, 22nd, 23rd, ..., 31st."""
    suffix = "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def _fields(d: datetime.date) -> dict[str, str]:
    month, weekday = MONTHS[d.month - 1], WEEKDAYS[d.weekday()]
    return {
        "d": str(d.day),
        "dd": f"{d.day:02d}",
        "dth": _ordinal(d.day),
        "m": str(d.month),
        "mm": f"{d.month:02d}",
        "Month": month,
        "month": month.lower(),
        "Mon": month[:3],
        "MON": month[:3].upper(),
        "yyyy": str(d.year),
        "yy": f"{d.year % 100:02d}",
        "Weekday": weekday,
        "Dow": weekday[:3],
    }


DATE_FORMATS = (
    "{d} {Month} {yyyy}",
    "{Dow} {d} {Month} {yyyy}",
    "{Weekday}, {d} {Month} {yyyy}",
    "{Dow}, {dd} {Mon} {yyyy}",
    "the {dth} of {Month}, {yyyy}",
    "{Month} {d}, {yyyy}",
    "{month} {dth}, {yyyy}",
    "{Mon} {dth} {yyyy}",
    "{d} {Mon} {yy}",
    "{dd}-{MON}-{yyyy}",
    "{dd}/{mm}/{yy}",
    "{d}/{m}/{yy}",
    "{dd}/{mm}/{yyyy}",
    "{d}.{m}.{yyyy}",
    "{yyyy}/{mm}/{dd}",
)
"""The human-written formats, as ``str.format`` templates over the fields ``d``, ``dd``
(zero-padded), ``dth`` (ordinal), ``m``, ``mm``, ``Month``, ``month``, ``Mon``, ``MON``,
``yyyy``, ``yy``, ``Weekday`` and ``Dow``."""


def format_date(date: datetime.date, template: str) -> str:
    """Write ``date`` in a human format: ``"{Dow} {d} {Month} {yyyy}"`` → ``"Tue 3 March 1998"``.

    Args:
        date: a ``datetime.date`` between 1950-01-01 and 2049-12-31 (two-digit
            years are read in that window).
        template (str): a ``str.format`` template, one of :data:`~mini_attn.tasks.DATE_FORMATS` or
            your own over the same fields.

    Returns:
        str: the date in that format.
    """
    if not FIRST_DAY <= date <= LAST_DAY:
        raise ValueError(f"date must be between {FIRST_DAY} and {LAST_DAY}, got {date}")
    return template.format(**_fields(date))


class CharTokenizer:
    """Characters to integer ids and back, with a padding id 0 and a begin-of-sequence id 1.

    Args:
        alphabet (str): the characters the tokenizer knows, each once.

    Attributes:
        pad_id (int): 0, the id that fills short sequences in a batch.
        bos_id (int): 1, the first input of the decoder.
        vocab_size (int): ``len(alphabet) + 2``.
    """

    pad_id = 0
    bos_id = 1

    def __init__(self, alphabet: str) -> None:
        if len(set(alphabet)) != len(alphabet):
            raise ValueError(f"alphabet has repeated characters: {alphabet!r}")
        self.alphabet = alphabet
        self._known = set(alphabet)
        self._to_ids = str.maketrans({c: chr(i + 2) for i, c in enumerate(alphabet)})
        self.vocab_size = len(alphabet) + 2

    def _ids(self, text: str) -> np.ndarray:
        unknown = set(text) - self._known
        if unknown:
            raise ValueError(f"characters {sorted(unknown)} of {text!r} are not in the alphabet")
        # each character becomes the character whose code point is its id: one C-level pass
        return np.frombuffer(text.translate(self._to_ids).encode("utf-32-le"), dtype=np.uint32)

    def encode(self, text: str) -> list[int]:
        """The ids of the characters of ``text``; unknown characters raise ``ValueError``."""
        return self._ids(text).tolist()

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """The text of ``ids``, skipping the padding and begin-of-sequence ids."""
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else ids
        return "".join(self.alphabet[i - 2] for i in ids if i >= 2)

    def encode_batch(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode and right-pad several texts.

        Args:
            texts (sequence of str): ``B`` texts.

        Returns:
            (Tensor, Tensor): ``ids`` of shape :math:`(B, S)` (int64, padded with
            ``pad_id`` to the longest text ``S``) and ``lengths`` of shape :math:`(B,)`.
        """
        lengths = torch.tensor([len(t) for t in texts], dtype=torch.long)  # (B,)
        flat = torch.from_numpy(self._ids("".join(texts)).astype(np.int64))  # every character
        positions = torch.arange(int(lengths.max()) if texts else 0)
        real = positions < lengths[:, None]  # (B, S): True where a character goes
        ids = torch.full(real.shape, self.pad_id, dtype=torch.long)
        ids[real] = flat  # row by row, left to right: the order of "".join(texts)
        return ids, lengths


SOURCE_ALPHABET = " ,-./0123456789" + string.ascii_letters
TARGET_ALPHABET = "-0123456789"


@dataclass
class DateData:
    """One split of the date task: the texts and their tensors.

    Attributes:
        sources (list of str): the human-written dates (or sentences), ``N`` of them.
        targets (list of str): their ISO forms, ``"YYYY-MM-DD"``.
        source_ids (Tensor): shape :math:`(N, S)`, int64, padded with 0.
        source_lengths (Tensor): shape :math:`(N,)`, the length of each source.
        target_ids (Tensor): shape :math:`(N, 10)`, int64.
        source_tokenizer (CharTokenizer): the tokenizer of the sources.
        target_tokenizer (CharTokenizer): the tokenizer of the targets.
    """

    sources: list[str]
    targets: list[str]
    source_ids: torch.Tensor
    source_lengths: torch.Tensor
    target_ids: torch.Tensor
    source_tokenizer: CharTokenizer
    target_tokenizer: CharTokenizer

    def __len__(self) -> int:
        return len(self.sources)

    def batches(
        self, batch_size: int, *, seed: int = 0, device: torch.device | str | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Endless random batches ``(source_ids, source_lengths, target_ids)``.

        Each pass visits every example once (the last incomplete batch of a pass is left
        out) in a new random order, seeded. The sources of a batch are cut to the longest
        one in it.

        Args:
            batch_size (int): examples per batch ``B``.
            seed (int): the seed of the order. Default: 0.
            device (torch.device or str, optional): where to put the batches.

        Yields:
            (Tensor, Tensor, Tensor): shapes :math:`(B, S_b)`, :math:`(B,)`, :math:`(B, 10)`.
        """
        if not 1 <= batch_size <= len(self):
            raise ValueError(f"batch_size must be between 1 and {len(self)}, got {batch_size}")
        g = torch.Generator().manual_seed(seed)
        n_batches = len(self) // batch_size
        while True:
            order = torch.randperm(len(self), generator=g)[: n_batches * batch_size]
            for rows in order.view(n_batches, batch_size):
                lengths = self.source_lengths[rows]
                source = self.source_ids[rows, : int(lengths.max())]
                yield source.to(device), lengths.to(device), self.target_ids[rows].to(device)


class DateSplits(NamedTuple):
    """The three splits of :func:`make_dates`, on disjoint sets of calendar days."""

    train: DateData
    validation: DateData
    test: DateData


def _filler(rng: random.Random, n_chars: int) -> str:
    """Random filler words that, with one space to join them to the date, fit in ``n_chars``."""
    words: list[str] = []
    used = 0  # the length of the words joined by spaces, plus the space before the date
    for word in rng.choices(FILLER, k=n_chars // 2 + 1):  # enough: a word and its space take 2+
        used += len(word) + 1
        if used > n_chars:
            break
        words.append(word)
    return " ".join(words)


def _in_sentence(rng: random.Random, date_text: str, max_length: int) -> str:
    """Hide ``date_text`` among filler words, the sentence of a random length <= ``max_length``."""
    budget = rng.randint(len(date_text), max_length) - len(date_text)  # characters of filler
    before = _filler(rng, rng.randint(0, budget))
    after = _filler(rng, budget - (len(before) + 1 if before else 0))
    return " ".join(part for part in (before, date_text, after) if part)


def _make_split(
    rng: random.Random, days: list[datetime.date], n: int, in_sentence: bool, max_length: int
) -> DateData:
    sources, targets = [], []
    for _ in range(n):
        day = rng.choice(days)
        text = format_date(day, rng.choice(DATE_FORMATS))
        sources.append(_in_sentence(rng, text, max_length) if in_sentence else text)
        targets.append(day.isoformat())
    source_tokenizer, target_tokenizer = (
        CharTokenizer(SOURCE_ALPHABET),
        CharTokenizer(TARGET_ALPHABET),
    )
    source_ids, source_lengths = source_tokenizer.encode_batch(sources)
    target_ids, _ = target_tokenizer.encode_batch(targets)
    return DateData(
        sources, targets, source_ids, source_lengths, target_ids, source_tokenizer, target_tokenizer
    )


def make_dates(
    n_train: int = 20_000,
    n_validation: int = 1_000,
    n_test: int = 2_000,
    *,
    seed: int = 0,
    in_sentence: bool = False,
    max_length: int = 100,
) -> DateSplits:
    """Generate the date-normalisation task: human-written dates and their ISO forms.

    The calendar days from 1950-01-01 to 2049-12-31 are shuffled (seeded) and split 80 %
    / 10 % / 10 % between training, validation and test; each example draws a day of its
    split and one of :data:`~mini_attn.tasks.DATE_FORMATS` at random. The same seed gives the
    same data.

    Args:
        n_train (int): training examples. Default: 20000.
        n_validation (int): validation examples. Default: 1000.
        n_test (int): test examples. Default: 2000.
        seed (int): the seed. Default: 0.
        in_sentence (bool): hide each date in a sentence of random filler words, of a
            random length up to ``max_length`` characters. Default: False.
        max_length (int): the longest sentence when ``in_sentence`` is True. Default: 100.

    Returns:
        DateSplits: ``train``, ``validation`` and ``test``, each a :class:`DateData`.
    """
    if min(n_train, n_validation, n_test) < 1:
        raise ValueError(
            f"every split needs examples, got n_train={n_train}, n_validation={n_validation}, "
            f"n_test={n_test}"
        )
    longest_date = max(len(format_date(_A_LONG_DATE, f)) for f in DATE_FORMATS)
    if in_sentence and max_length < longest_date:
        raise ValueError(f"max_length must be at least {longest_date}, got {max_length}")
    rng = random.Random(seed)
    days = [FIRST_DAY + datetime.timedelta(i) for i in range((LAST_DAY - FIRST_DAY).days + 1)]
    rng.shuffle(days)
    n_val_days = n_test_days = len(days) // 10
    test_days, val_days = days[:n_test_days], days[n_test_days : n_test_days + n_val_days]
    train_days = days[n_test_days + n_val_days :]
    return DateSplits(
        _make_split(rng, train_days, n_train, in_sentence, max_length),
        _make_split(rng, val_days, n_validation, in_sentence, max_length),
        _make_split(rng, test_days, n_test, in_sentence, max_length),
    )
