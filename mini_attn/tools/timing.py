"""Time code the right way per device: warm-up, synchronisation, repeats (chapter 8).

A GPU runs asynchronously: a call that launches a kernel returns long before the kernel
finishes, so a timer must wait for the device (CUDA events, or ``torch.cuda.synchronize``
before the clock is read), discard warm-up runs and repeat. On the CPU the call returns
when the work is done, and ``time.perf_counter()`` is enough. This module is the
project's one timer: :func:`time_function` for repeated runs, :func:`first_call_time` for
the first call, and :func:`sync_demo` for the mistake chapter 8 warns about, shown on a
real device or on the :class:`SimulatedDevice`.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .device import default_device

__all__ = [
    "SimulatedDevice",
    "SyncDemo",
    "Timing",
    "cuda_event_times",
    "first_call_time",
    "host_times",
    "sync_demo",
    "synchronizer",
    "time_function",
    "unsynchronized_times",
]


@dataclass(frozen=True)
class Timing:
    """The wall times of the repeated runs of one function.

    Attributes:
        times (tuple of float): seconds of each timed run, in order (warm-up excluded).
    """

    times: tuple[float, ...]

    @property
    def median(self) -> float:
        """The median time in seconds, which a few slow runs do not move."""
        return statistics.median(self.times)

    @property
    def min(self) -> float:
        """The fastest run in seconds, the one least disturbed by other work."""
        return min(self.times)

    @property
    def mean(self) -> float:
        """The mean time in seconds."""
        return statistics.fmean(self.times)

    def __str__(self) -> str:
        runs = len(self.times)
        return f"median {self.median * 1e3:.3g} ms, min {self.min * 1e3:.3g} ms, {runs} runs"


def synchronizer(
    device: torch.device | str | None = None,
) -> Callable[[], None]:
    """The function that waits until ``device`` has finished its queued work.

    Args:
        device (torch.device or str, optional): Default: :func:`~mini_attn.default_device`.

    Returns:
        callable: ``torch.cuda.synchronize`` (for that GPU) on CUDA,
        ``torch.mps.synchronize`` on MPS, a function that does nothing on the CPU.
    """
    device = default_device() if device is None else torch.device(device)
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    if device.type == "mps":
        return torch.mps.synchronize
    return lambda: None


def cuda_event_times(
    fn: Callable[[], object], repeats: int
) -> list[float]:
    """Time ``fn`` on the current CUDA stream with a pair of CUDA events per run.

    Args:
        fn (callable): a function of no argument that queues work on the current GPU.
        repeats (int): how many timed runs.

    Returns:
        list of float: the seconds of each run, measured by the GPU between the events.
    """
    times = []
    for _ in range(repeats):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        # a marker in the GPU's queue, not a clock read on the CPU
        start.record()
        fn()
        end.record()
        end.synchronize()  # wait until the GPU has reached the end marker
        # elapsed_time is in milliseconds
        times.append(start.elapsed_time(end) / 1e3)
    return times


def host_times(
    fn: Callable[[], object],
    repeats: int,
    *,
    synchronize: Callable[[], None] = lambda: None,
    clock: Callable[[], float] = time.perf_counter,
) -> list[float]:
    """Time ``fn`` with the host's clock, waiting for the device before each reading.

    Args:
        fn (callable): a function of no argument.
        repeats (int): how many timed runs.
        synchronize (callable): waits until the device is idle. Default: does nothing
            (the CPU, where a call returns when its work is done).
        clock (callable): reads the time in seconds. Default: ``time.perf_counter``.

    Returns:
        list of float: the seconds of each run.
    """
    times = []
    for _ in range(repeats):
        synchronize()
        start = clock()
        fn()
        # the work must be finished before the clock is read
        synchronize()
        times.append(clock() - start)
    return times


def unsynchronized_times(
    fn: Callable[[], object],
    repeats: int,
    *,
    synchronize: Callable[[], None] = lambda: None,
    clock: Callable[[], float] = time.perf_counter,
) -> list[float]:
    """The host's time per call *without* waiting for the device: the launch cost.

    On an asynchronous device this is the mistake of chapter 8 if it is taken for the
    time of the work; it is the right measure of the host's own cost per call (checks,
    Python, the launch), which the bench reports separately as ``host_ms``.

    Args:
        fn (callable): a function of no argument.
        repeats (int): how many timed runs.
        synchronize (callable): waits until the device is idle, called between runs
            (outside the timed region). Default: does nothing.
        clock (callable): reads the time in seconds. Default: ``time.perf_counter``.

    Returns:
        list of float: the seconds the host spent in each call.
    """
    times = []
    for _ in range(repeats):
        synchronize()
        start = clock()
        fn()  # on a GPU, returns as soon as the kernels are queued
        times.append(clock() - start)
    synchronize()
    return times


def time_function(
    fn: Callable[[], object],
    *,
    device: torch.device | str | None = None,
    warmup: int = 2,
    repeats: int = 10,
) -> Timing:
    """Time ``fn()`` correctly on its device: warm-up, synchronisation, repeats.

    The ``warmup`` first calls are not timed (they pay for memory allocation, kernel
    selection, caches and, with ``torch.compile``, compilation). On a CUDA device each
    run is timed with a pair of CUDA events recorded around it and read after the GPU
    has finished (:func:`~mini_attn.tools.timing.cuda_event_times`); elsewhere with
    ``time.perf_counter()``, after synchronising the device (MPS) when it runs asynchronously
    (:func:`~mini_attn.tools.timing.host_times`).

    Args:
        fn (callable): a function of no argument that runs the work on ``device``.
        device (torch.device or str, optional): where ``fn`` runs. Default:
            :func:`~mini_attn.default_device`.
        warmup (int): untimed calls first. Default: 2.
        repeats (int): timed calls. Default: 10.

    Returns:
        Timing: the seconds of each timed call, with their median and minimum.

    Raises:
        ValueError: if ``warmup < 0`` or ``repeats < 1``.
    """
    device = default_device() if device is None else torch.device(device)
    if warmup < 0 or repeats < 1:
        raise ValueError(
            "need warmup >= 0 and repeats >= 1, got "
            f"{warmup} and {repeats}"
        )
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        with torch.cuda.device(device):
            torch.cuda.synchronize()  # start from an idle GPU
            return Timing(tuple(cuda_event_times(fn, repeats)))
    return Timing(
        tuple(host_times(fn, repeats, synchronize=synchronizer(device)))
    )


def first_call_time(
    fn: Callable[[], object], *, device: torch.device | str | None = None
):
    """The seconds of one call of ``fn()``, waiting for the device: time it *first*.

    The first call pays for what later calls reuse (compilation, kernel selection,
    memory allocation); call this before any other call of ``fn``.

    Args:
        fn (callable): a function of no argument that runs the work on ``device``.
        device (torch.device or str, optional): Default: :func:`~mini_attn.default_device`.

    Returns:
        float: seconds, from an idle device to the end of the call's work.
    """
    return host_times(fn, 1, synchronize=synchronizer(device))[0]


@dataclass(frozen=True)
class SyncDemo:
    """Three timings of one function, from :func:`sync_demo`.

    Attributes:
        first_call (float): seconds of the first call (its one-time costs included).
        unsynchronized (Timing): runs timed without waiting for the device (the mistake).
        synchronized (Timing): runs timed after the device finished (correct).
    """

    first_call: float
    unsynchronized: Timing
    synchronized: Timing

    @property
    def ratio(self) -> float:
        """How many times longer the correct median is than the unsynchronised one."""
        return self.synchronized.median / max(
            self.unsynchronized.median, 1e-12
        )


def sync_demo(
    fn: Callable[[], object],
    *,
    synchronize: Callable[[], None],
    clock: Callable[[], float] = time.perf_counter,
    warmup: int = 1,
    repeats: int = 5,
) -> SyncDemo:
    """Time ``fn`` three ways: its first call, without synchronisation, and correctly.

    On an asynchronous device the unsynchronised runs measure only the launch; on the
    CPU the two agree. Pass the ``synchronize`` and ``clock`` of a
    :class:`SimulatedDevice` to see the mistake without a GPU.

    Args:
        fn (callable): a function of no argument; call it here first.
        synchronize (callable): waits until the device is idle (:func:`synchronizer`).
        clock (callable): reads the time in seconds. Default: ``time.perf_counter``.
        warmup (int): untimed calls after the first. Default: 1.
        repeats (int): runs of each kind. Default: 5.

    Returns:
        SyncDemo: the first call's seconds and the two :class:`Timing`.
    """
    first = host_times(fn, 1, synchronize=synchronize, clock=clock)[0]
    for _ in range(warmup):
        fn()
    wrong = unsynchronized_times(
        fn, repeats, synchronize=synchronize, clock=clock
    )
    right = host_times(fn, repeats, synchronize=synchronize, clock=clock)
    return SyncDemo(first, Timing(tuple(wrong)), Timing(tuple(right)))


class SimulatedDevice:
    """A simulated accelerator with its own clock: the asynchronous GPU, deterministic.

    :meth:`launch` costs the host ``launch_s`` and queues ``work_s`` of work on the
    device (plus ``first_s`` on the very first call: allocation, kernel choice); an
    asynchronous device returns at once, a synchronous one (a CPU) returns when the work
    is done. :meth:`synchronize` waits for the queue; :meth:`clock` reads the host's
    clock. Every call is logged in ``timeline`` as ``(call, host_start, host_end,
    device_start, device_end)``, the picture of the host running ahead of the device.
    Exercise 8.1's checker times learners' timers on it, and chapter 8 shows the
    synchronisation mistake on it.

    Args:
        asynchronous (bool): return from :meth:`launch` before the work is done.
        work_s (float): seconds of device work per call. Default: 0.005.
        launch_s (float): seconds the host spends per call. Default: 1e-5.
        first_s (float): extra seconds of the first call. Default: 0.1.
    """

    def __init__(
        self,
        *,
        asynchronous: bool,
        work_s=0.005,
        launch_s=1e-5,
        first_s=0.1,
    ):
        self.asynchronous = asynchronous
        self.work_s, self.launch_s, self.first_s = (
            work_s,
            launch_s,
            first_s,
        )
        self.now = 0.0  # the host's clock
        self.busy_until = 0.0  # when the device finishes its queue
        self.calls = 0
        self.calls_at_first_clock: int | None = (
            None  # calls before the clock was first read
        )
        self.timeline: list[tuple[int, float, float, float, float]] = []

    def launch(self) -> None:
        """Queue one call's work (and return at once if asynchronous)."""
        self.calls += 1
        host_start = self.now
        self.now += self.launch_s
        work = self.work_s + (self.first_s if self.calls == 1 else 0.0)
        device_start = max(self.now, self.busy_until)
        self.busy_until = device_start + work
        self.timeline.append(
            (
                self.calls,
                host_start,
                self.now,
                device_start,
                self.busy_until,
            )
        )
        if not self.asynchronous:
            self.now = self.busy_until

    def synchronize(self) -> None:
        """Wait until the queued work is done."""
        self.now = max(self.now, self.busy_until)

    def clock(self) -> float:
        """The host's time in seconds."""
        if self.calls_at_first_clock is None:
            self.calls_at_first_clock = self.calls
        return self.now
