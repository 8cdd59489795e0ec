"""The date task: deterministic, every target the ISO form of its source, disjoint splits."""

from __future__ import annotations

import datetime
import re

import pytest
import torch

import mini_attn as ma
from mini_attn.tasks.data.dates import MONTHS, WEEKDAYS

# An independent reader of the formats: each field of a template becomes a regex group.
_FIELD_PATTERNS = {
    "d": r"(?P<d>[1-9]|[12]\d|3[01])",
    "dd": r"(?P<dd>0[1-9]|[12]\d|3[01])",
    "dth": r"(?P<dth>[1-9]|[12]\d|3[01])(?P<suffix>st|nd|rd|th)",
    "m": r"(?P<m>[1-9]|1[0-2])",
    "mm": r"(?P<mm>0[1-9]|1[0-2])",
    "Month": "(?P<Month>" + "|".join(MONTHS) + ")",
    "month": "(?P<month>" + "|".join(m.lower() for m in MONTHS) + ")",
    "Mon": "(?P<Mon>" + "|".join(m[:3] for m in MONTHS) + ")",
    "MON": "(?P<MON>" + "|".join(m[:3].upper() for m in MONTHS) + ")",
    "yyyy": r"(?P<yyyy>\d{4})",
    "yy": r"(?P<yy>\d{2})",
    "Weekday": "(?P<Weekday>" + "|".join(WEEKDAYS) + ")",
    "Dow": "(?P<Dow>" + "|".join(w[:3] for w in WEEKDAYS) + ")",
}


def _template_regex(template: str) -> re.Pattern:
    parts = re.split(r"\{(\w+)\}", template)  # literal, field, literal, field, ...
    pattern = "".join(
        _FIELD_PATTERNS[part] if i % 2 else re.escape(part) for i, part in enumerate(parts)
    )
    return re.compile(r"(?<![\w/.-])" + pattern + r"(?![\w/.-])")


def _ordinal_suffix(day: int) -> str:
    if day in (11, 12, 13):
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")


def _read(match: re.Match) -> datetime.date | None:
    """The date a match describes, or None if its fields contradict each other."""
    g = {k: v for k, v in match.groupdict().items() if v is not None}
    day = int(g.get("d") or g.get("dd") or g["dth"])
    if "dth" in g and g["suffix"] != _ordinal_suffix(day):
        return None
    if "m" in g or "mm" in g:
        month = int(g.get("m") or g["mm"])
    else:
        name = (g.get("Month") or g.get("month") or g.get("Mon") or g["MON"]).lower()
        month = next(i + 1 for i, m in enumerate(MONTHS) if m.lower().startswith(name))
    year = int(g["yyyy"]) if "yyyy" in g else int(g["yy"]) + (1900 if int(g["yy"]) >= 50 else 2000)
    try:
        date = datetime.date(year, month, day)
    except ValueError:
        return None
    weekday = g.get("Weekday") or g.get("Dow")
    if weekday is not None and not WEEKDAYS[date.weekday()].startswith(weekday):
        return None
    return date


def _readings(source: str) -> set[datetime.date]:
    """Every date that any format finds in ``source``."""
    found = set()
    for template in ma.tasks.DATE_FORMATS:
        for match in _template_regex(template).finditer(source):
            date = _read(match)
            if date is not None:
                found.add(date)
    return found


@pytest.fixture(scope="module")
def short():
    return ma.tasks.make_dates(600, 200, 200, seed=1)


@pytest.fixture(scope="module")
def long():
    return ma.tasks.make_dates(600, 200, 200, seed=2, in_sentence=True, max_length=80)


def test_format_date_examples():
    day = datetime.date(1998, 3, 3)
    assert ma.tasks.format_date(day, "{Dow} {d} {Month} {yyyy}") == "Tue 3 March 1998"
    assert ma.tasks.format_date(day, "{dd}/{mm}/{yy}") == "03/03/98"
    assert ma.tasks.format_date(day, "the {dth} of {Month}, {yyyy}") == "the 3rd of March, 1998"
    ordinals = [
        ma.tasks.format_date(datetime.date(2001, 1, d), "{dth}") for d in (1, 2, 3, 4, 11, 12)
    ]
    assert ordinals == ["1st", "2nd", "3rd", "4th", "11th", "12th"]
    ordinals = [
        ma.tasks.format_date(datetime.date(2001, 1, d), "{dth}") for d in (13, 21, 22, 23, 31)
    ]
    assert ordinals == ["13th", "21st", "22nd", "23rd", "31st"]


def test_the_same_seed_gives_the_same_data(short):
    again = ma.tasks.make_dates(600, 200, 200, seed=1)
    for split, other in zip(short, again, strict=True):
        assert split.sources == other.sources and split.targets == other.targets
        assert torch.equal(split.source_ids, other.source_ids)
        assert torch.equal(split.target_ids, other.target_ids)
    different = ma.tasks.make_dates(600, 200, 200, seed=3)
    assert different.train.sources != short.train.sources


@pytest.mark.parametrize("variant", ["short", "long"])
def test_every_target_is_the_iso_form_of_its_source(variant, request):
    splits = request.getfixturevalue(variant)
    for split in splits:
        for source, target in zip(split.sources, split.targets, strict=True):
            assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", target)
            date = datetime.date.fromisoformat(target)  # a valid calendar date
            # the source describes exactly this date, and no format reads it otherwise
            assert _readings(source) == {date}, f"{source!r} -> {target}"


def test_every_format_and_field_value_occurs(short):
    sources = short.train.sources
    for template in ma.tasks.DATE_FORMATS:
        assert any(_template_regex(template).fullmatch(s) for s in sources), template
    months = {datetime.date.fromisoformat(t).month for t in short.train.targets}
    assert months == set(range(1, 13))


def test_splits_use_disjoint_calendar_days(short):
    train, validation, test = (set(split.targets) for split in short)
    assert not train & test and not train & validation and not validation & test


def test_tensors_match_the_texts(long):
    data = long.train
    assert data.source_ids.shape == (len(data), int(data.source_lengths.max()))
    assert data.target_ids.shape == (len(data), 10)
    for i in range(0, len(data), 37):
        assert data.source_tokenizer.decode(data.source_ids[i]) == data.sources[i]
        assert data.source_lengths[i] == len(data.sources[i])
        assert data.target_tokenizer.decode(data.target_ids[i]) == data.targets[i]
        assert (data.source_ids[i, len(data.sources[i]) :] == 0).all()


def test_sentences_respect_max_length_and_vary_in_length(long):
    lengths = long.train.source_lengths
    assert int(lengths.max()) <= 80
    assert int(lengths.min()) < 20 and int(lengths.max()) > 70
    assert any(not re.match(r"[\dA-Zt]", s) for s in long.train.sources), "some start with filler"


def test_char_tokenizer_round_trip_and_errors():
    tokenizer = ma.tasks.CharTokenizer("abc-")
    assert tokenizer.vocab_size == 6 and tokenizer.pad_id == 0 and tokenizer.bos_id == 1
    assert tokenizer.encode("cab-") == [4, 2, 3, 5]
    assert tokenizer.decode([1, 4, 2, 3, 5, 0, 0]) == "cab-"
    ids, lengths = tokenizer.encode_batch(["ab", "c", "abca"])
    assert ids.tolist() == [[2, 3, 0, 0], [4, 0, 0, 0], [2, 3, 4, 2]]
    assert lengths.tolist() == [2, 1, 4]
    with pytest.raises(ValueError, match=r"characters \['x'\] of 'abx'"):
        tokenizer.encode("abx")
    with pytest.raises(ValueError, match="repeated characters"):
        ma.tasks.CharTokenizer("aba")


def test_batches_are_seeded_trimmed_and_cover_every_example(long):
    data = long.train
    batches = data.batches(100, seed=5)
    first = [next(batches) for _ in range(6)]  # 600 examples: one pass
    again = data.batches(100, seed=5)
    seen = []
    for source, lengths, targets in first:
        same = next(again)
        assert torch.equal(source, same[0]) and torch.equal(targets, same[2])
        assert source.shape == (100, int(lengths.max())) and targets.shape == (100, 10)
        seen += [data.target_tokenizer.decode(t) for t in targets]
    assert sorted(seen) == sorted(data.targets), "one pass visits every example once"
    with pytest.raises(ValueError, match="batch_size must be between 1 and 600, got 0"):
        next(data.batches(0))
    with pytest.raises(ValueError, match="batch_size must be between 1 and 600, got 601"):
        next(data.batches(601))


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="between 1950-01-01 and 2049-12-31"):
        ma.tasks.format_date(datetime.date(2050, 1, 1), "{d}")
    with pytest.raises(ValueError, match="every split needs examples"):
        ma.tasks.make_dates(0)
    with pytest.raises(ValueError, match="max_length must be at least 28"):
        ma.tasks.make_dates(10, 10, 10, in_sentence=True, max_length=20)
