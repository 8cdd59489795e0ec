"""The profiling helpers: a timer that times the call, peak memory, the roofline."""

from __future__ import annotations

import sys
import time

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

import mini_attn as ma
from mini_attn.tools import memory, timing
from mini_attn.tools import timing as timing_module

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
EXACT_CPU_PEAK = sys.platform.startswith("linux") and memory._reset_peak_rss()


def test_warmup_calls_are_not_timed():
    calls = []
    timing = ma.time_function(lambda: calls.append(1), device="cpu", warmup=3, repeats=4)
    assert len(calls) == 7
    assert len(timing.times) == 4
    assert all(t >= 0 for t in timing.times)


def test_the_time_includes_the_whole_call():
    sleep = 0.02
    timing = ma.time_function(lambda: time.sleep(sleep), device="cpu", warmup=0, repeats=3)
    print(f"\ntime.sleep({sleep}) timed as {timing}")
    assert timing.min >= sleep  # a sleep never returns early: a lower bound, not a benchmark


def test_timing_statistics():
    timing = ma.Timing((0.004, 0.001, 0.002, 0.010))
    assert timing.median == pytest.approx(0.003)
    assert timing.min == 0.001
    assert timing.mean == pytest.approx(0.00425)
    assert str(timing) == "median 3 ms, min 1 ms, 4 runs"


@pytest.mark.parametrize(("warmup", "repeats"), [(-1, 3), (0, 0)])
def test_bad_counts(warmup, repeats):
    with pytest.raises(ValueError, match="need warmup >= 0 and repeats >= 1"):
        ma.time_function(lambda: None, device="cpu", warmup=warmup, repeats=repeats)


@CUDA
def test_cuda_events_wait_for_the_gpu():
    a = torch.randn(4096, 4096, device="cuda")
    timing = ma.time_function(lambda: a @ a, device="cuda", warmup=2, repeats=5)
    # without synchronisation the host only measures the launch
    launch = min(
        timing_module.unsynchronized_times(lambda: a @ a, 3, synchronize=torch.cuda.synchronize)
    )
    print(f"\n4096² matmul: {timing}; unsynchronised host time {launch * 1e3:.3g} ms")
    assert timing.min > 5 * launch  # 137 GFLOP: far longer than its launch on any GPU


@pytest.mark.skipif(not EXACT_CPU_PEAK, reason="needs Linux's resettable peak RSS")
def test_cpu_peak_memory_sees_a_temporary_tensor():
    n_bytes = 64 * 2**20

    def allocate_and_free():
        x = torch.ones(n_bytes // 4)  # written, so every page is resident
        return float(x[-1])  # x is freed on return: only the peak can see it

    peak = ma.measure_peak_memory(allocate_and_free, device="cpu")
    print(f"\n64 MiB temporary: peak {peak / 2**20:.1f} MiB")
    assert 0.95 * n_bytes <= peak <= n_bytes + 32 * 2**20
    assert ma.measure_peak_memory(lambda: None, device="cpu") < 16 * 2**20


@pytest.mark.skipif(not EXACT_CPU_PEAK, reason="needs Linux's resettable peak RSS")
def test_cpu_peak_memory_of_naive_attention_is_quadratic():
    q, k, v = (torch.randn(1, 1, 2048, 16) for _ in range(3))
    with torch.no_grad():
        ma.tiled_attention(q[..., :64, :], k, v)  # one-time costs (code, kernels) first
        naive = ma.measure_peak_memory(
            lambda: ma.scaled_dot_product_attention(q, k, v), device="cpu"
        )
        tiled = ma.measure_peak_memory(lambda: ma.tiled_attention(q, k, v), device="cpu")
        q2, k2, v2 = (x[..., :1024, :] for x in (q, k, v))
        half = ma.measure_peak_memory(
            lambda: ma.scaled_dot_product_attention(q2, k2, v2), device="cpu"
        )
    print(f"\nL = S = 2048: naive {naive / 2**20:.1f} MiB, tiled {tiled / 2**20:.1f} MiB")
    print(f"L = S = 1024: naive {half / 2**20:.1f} MiB")
    assert naive >= 2048 * 2048 * 4  # at least one float32 L × S matrix: 16 MiB
    assert naive >= 3 * half  # twice the length, about four times the memory
    # The tiled version never holds the L × S scores: under one float32 L × S matrix. (Its
    # peak is a few 2048 × 128 blocks plus what the allocator keeps: 9.1 MiB on CI, so a
    # tighter bound than this one would test the allocator, not the algorithm.)
    assert tiled < 2048 * 2048 * 4


@CUDA
def test_cuda_peak_memory_is_exact():
    def allocate():
        return torch.empty(2**20, device="cuda")  # 4 MiB, kept as the result

    assert ma.measure_peak_memory(allocate, device="cuda") >= 4 * 2**20


def test_ceilings_are_positive_and_finite():
    flops = ma.measure_matmul_flops(device="cpu", size=128, repeats=2)
    bandwidth = ma.measure_copy_bandwidth(device="cpu", n_bytes=2**20, repeats=2)
    print(
        f"\nCPU: {flops / 1e9:.3g} GFLOP/s (128² matmul), {bandwidth / 1e9:.3g} GB/s (1 MiB copy)"
    )
    assert np.isfinite(flops) and flops > 0
    assert np.isfinite(bandwidth) and bandwidth > 0


def test_attainable_flops_is_the_lower_ceiling():
    peak, bandwidth = 1e12, 1e11  # the ridge point is 10 FLOP/byte
    assert ma.attainable_flops(2.0, peak, bandwidth) == pytest.approx(2e11)
    assert ma.attainable_flops(50.0, peak, bandwidth) == peak
    assert ma.attainable_flops(10.0, peak, bandwidth) == pytest.approx(peak)
    got = ma.attainable_flops(np.array([1.0, 10.0, 100.0]), peak, bandwidth)
    np.testing.assert_allclose(got, [1e11, 1e12, 1e12])
    assert isinstance(ma.attainable_flops(1.0, peak, bandwidth), float)


def test_attainable_flops_refuses_non_positive_ceilings():
    with pytest.raises(ValueError, match="must be positive"):
        ma.attainable_flops(1.0, 0.0, 1e11)


def test_plot_roofline_is_labelled():
    points = [("naive attention", 3.0, 5e10), ("matmul", 300.0, 8e11)]
    ax = ma.plot_roofline(1e12, 1e11, points=points, title="a device")
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert "intensity" in ax.get_xlabel() and "FLOP/s" in ax.get_ylabel()
    assert ax.get_title() == "a device"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0] == "roofline" and "ridge point, 10 FLOP/byte" in labels[1]
    assert labels[2:] == ["naive attention", "matmul"]
    lo, hi = ax.get_xlim()
    assert lo < 3.0 and hi > 300.0
    plt.close(ax.figure)


def test_first_call_time_waits_for_the_call():
    assert ma.first_call_time(lambda: time.sleep(0.01), device="cpu") >= 0.01


def test_the_sync_demo_shows_the_mistake_on_an_asynchronous_device():
    device = timing.SimulatedDevice(asynchronous=True)  # 10 µs launch, 5 ms of work
    demo = timing.sync_demo(device.launch, synchronize=device.synchronize, clock=device.clock)
    assert demo.first_call == pytest.approx(0.10501)  # the first call's 100 ms included
    assert demo.unsynchronized.median == pytest.approx(1e-5)  # only the launch
    assert demo.synchronized.median == pytest.approx(0.00501)
    assert demo.ratio == pytest.approx(501)
    cpu = timing.SimulatedDevice(asynchronous=False)
    same = timing.sync_demo(cpu.launch, synchronize=cpu.synchronize, clock=cpu.clock)
    assert same.unsynchronized.median == pytest.approx(same.synchronized.median)


def test_unsynchronized_times_measure_the_host_only():
    device = timing.SimulatedDevice(asynchronous=True, launch_s=2e-5, first_s=0.0)
    times = timing.unsynchronized_times(
        device.launch, 4, synchronize=device.synchronize, clock=device.clock
    )
    assert times == pytest.approx([2e-5] * 4)
    assert device.now == pytest.approx(device.busy_until)  # the device is idle afterwards


def test_roofline_points_keep_distinct_styles_past_ten():
    points = [(f"p{i}", 2.0 ** (i % 8), 1e11) for i in range(24)]  # a real sweep's size
    ax = ma.plot_roofline(1e12, 1e11, points=points)
    styles = [(line.get_color(), line.get_marker()) for line in ax.get_lines()[2:]]
    assert len(styles) == 24 and len(set(styles)) == 24
    plt.close(ax.figure)
    with pytest.raises(ValueError, match="must be positive"):
        ma.plot_roofline(1e12, 0.0)


def test_the_simulated_timeline_shows_the_host_running_ahead():
    device = timing.SimulatedDevice(asynchronous=True, first_s=0.0)
    for _ in range(3):
        device.launch()
    host_done = device.clock()
    assert [call for call, *_ in device.timeline] == [1, 2, 3]
    (_, _, _, d0, d1), (_, h0, _, d2, _) = device.timeline[0], device.timeline[1]
    assert d2 == pytest.approx(d1)  # the device works through its queue, one after another
    assert h0 < d1 and host_done < device.timeline[-1][4]  # the host is far ahead
    assert d1 - d0 == pytest.approx(device.work_s)
