"""``python -m mini_attn.bench``: runs on the CPU in a tiny mode and writes a valid record."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
import torch

import mini_attn as ma
from mini_attn import bench
from mini_attn.bench import decode, machine, measure, methods, sweep
from mini_attn.bench.methods import Method

DATA = Path(__file__).resolve().parents[1] / "book" / "data"
RECORDS = sorted(DATA.glob("bench-*.json"))
STATUSES = {"ok", "oom", "unsupported", "skipped", "error"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The real command, in a fresh process, in its tiny mode: (record, stdout, stderr)."""
    out = tmp_path_factory.mktemp("bench") / "tiny.json"
    args = ["--tiny", "--out", str(out)]
    # without TRITON_INTERPRET, which test_triton_attention sets for this whole process: on
    # a GPU the tiny run then compiles the Triton kernel instead of interpreting it
    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    done = subprocess.run(
        [sys.executable, "-m", "mini_attn.bench", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    return bench.load_bench(out), done.stdout, done.stderr, args


@pytest.mark.slow
def test_the_command_writes_a_complete_record(tiny):
    record, stdout, stderr, args = tiny
    assert record["schema"] == bench.SCHEMA
    assert record["command"] == "python -m mini_attn.bench " + " ".join(args)
    assert datetime.datetime.fromisoformat(record["date"]).tzinfo is not None
    assert record["device"]["type"] in ("cpu", "cuda")
    assert record["device"]["name"]
    assert record["versions"]["torch"] == torch.__version__
    assert record["versions"]["mini_attn"] == ma.__version__
    settings = record["settings"]
    assert settings["preset"] == "tiny"
    expected = [
        (d, h, m, n)
        for d in settings["dtypes"]
        for h in settings["head_dims"]
        for m in settings["methods"]
        for n in settings["seq_lens"]
    ]
    got = [(e["dtype"], e["head_dim"], e["method"], e["seq_len"]) for e in record["results"]]
    assert got == expected
    assert {e["status"] for e in record["results"]} <= STATUSES
    assert "bench:" in stderr and "100%" in stderr, "a progress bar on stderr"
    assert "wrote" in stdout and "naive" in stdout


@pytest.mark.slow
def test_every_result_that_ran_is_consistent(tiny):
    record = tiny[0]
    ran = [e for e in record["results"] if e["status"] == "ok"]
    assert {e["method"] for e in ran} >= {"naive", "tiled", "sdpa-math"}
    for e in ran:
        assert len(e["times_ms"]) == record["settings"]["repeats"]
        assert min(e["times_ms"]) == e["min_ms"] <= e["median_ms"]
        flops = ma.attention_flops(
            e["batch"], e["heads"], e["seq_len"], e["seq_len"], e["head_dim"]
        )
        assert e["tflops"] == pytest.approx(flops / (e["median_ms"] / 1e3) / 1e12, rel=1e-3)
        assert e["peak_memory_bytes"] >= 0
    for e in record["results"]:
        if e["status"] != "ok":
            assert e["note"], f"{e['method']} {e['status']} should say why"


@pytest.mark.slow
def test_the_record_has_the_ceilings_and_the_sync_demo(tiny):
    record = tiny[0]
    ceilings, demo = record["ceilings"], record["sync_demo"]
    assert all(v > 0 for v in ceilings["matmul_tflops"].values())
    assert ceilings["copy_bandwidth_gbs"] > 0
    assert demo["method"] == "naive" and demo["synced_ms"] > 0 and demo["no_sync_ms"] > 0


@pytest.mark.slow
def test_table_plot_and_description_read_the_record(tiny):
    record = tiny[0]
    dtype, head_dim = record["settings"]["dtypes"][0], record["settings"]["head_dims"][0]
    table = bench.bench_table(record, metric="peak_memory_bytes", dtype=dtype, head_dim=head_dim)
    lines = table.splitlines()
    assert "MiB" in lines[0] and lines[1].split()[1:] == [
        str(n) for n in record["settings"]["seq_lens"]
    ]
    assert {line.split()[0] for line in lines[2:]} == set(record["settings"]["methods"])
    ax = bench.plot_bench(record, metric="tflops", dtype=dtype, head_dim=head_dim)
    fast = max(e.get("tflops") or 0 for e in record["results"]) >= 1
    assert ax.get_ylabel() == f"achieved {'T' if fast else 'G'}FLOP/s"
    assert "L = S" in ax.get_xlabel()
    assert {t.get_text() for t in ax.get_legend().get_texts()} >= {"naive", "tiled"}
    plt.close(ax.figure)
    text = bench.describe_bench(record)
    assert record["versions"]["torch"] in text and record["command"] in text
    assert record["date"] in text


def _sizes(**changes) -> bench.SweepSizes:
    base = dict(seq_lens=(16, 32), head_dims=(8,), dtypes=("float32",), heads=1, warmup=0)
    return bench.SweepSizes(**(base | dict(repeats=1) | changes))


def test_unsupported_backends_are_recorded_not_raised():
    record = bench.run_bench(
        _sizes(methods=("tiled", "sdpa-efficient")),
        device="cpu",
        measure_ceilings=False,
        progress=False,
    )
    statuses = [(e["method"], e["status"]) for e in record["results"]]
    assert statuses[:2] == [("tiled", "ok"), ("tiled", "ok")]
    if not torch.cuda.is_available():  # the memory-efficient kernel exists only for CUDA
        assert [s for _, s in statuses[2:]] == ["unsupported", "unsupported"]
    assert record["command"] is None and record["ceilings"] is None


@pytest.mark.parametrize(
    ("message", "status"),
    [
        ("CUDA out of memory. Tried to allocate 16.00 GiB", "oom"),
        ("No available kernel. Aborting execution.", "unsupported"),
        ("something else went wrong", "error"),
    ],
)
def test_errors_are_classified(message, status):
    assert methods.classify(RuntimeError(message))[0] == status


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(methods=("fast",)), "unknown method 'fast'"),
        (dict(dtypes=("float8",)), "unknown dtype 'float8'"),
        (dict(seq_lens=()), "must not be empty"),
    ],
)
def test_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _sizes(**kwargs)


def test_run_bench_wants_sweep_sizes():
    with pytest.raises(TypeError, match="sizes must be a SweepSizes, got dict"):
        bench.run_bench(dict(seq_lens=(16,)), device="cpu")


def test_load_bench_refuses_other_json(tmp_path):
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"schema": "something/else"}))
    with pytest.raises(ValueError, match=r"is not a mini_attn\.bench/1 record"):
        bench.load_bench(path)


def test_a_missing_configuration_is_named():
    record = {"results": [], "settings": {"dtypes": ["float32"], "head_dims": [64]}}
    with pytest.raises(ValueError, match=r"no results for dtype='bfloat16', head_dim=64"):
        bench.bench_table(record, dtype="bfloat16", head_dim=64)


@pytest.mark.parametrize("path", RECORDS, ids=lambda p: p.name)
def test_committed_records_name_their_machine(path):
    """Every record under book/data/ names the device, versions, date and exact command."""
    record = bench.load_bench(path)
    info = record["device"]
    assert info["name"] and record["versions"]["torch"] and record["date"]
    assert record["command"].startswith("python -m mini_attn.bench")
    if info["type"] == "cuda":
        assert info["cuda"] and "driver" in info
    assert path.name.startswith("bench-" + machine._slug(info["name"]).split("-")[0]) or (
        info["type"] == "cpu" and path.name.startswith("bench-cpu-")
    )


def test_plot_bench_marks_out_of_memory():
    def entry(n, status, ms=None):
        return {
            "method": "naive",
            "dtype": "bfloat16",
            "head_dim": 64,
            "seq_len": n,
            "status": status,
            "median_ms": ms,
        }

    record = {"results": [entry(512, "ok", 1.0), entry(1024, "ok", 4.0), entry(2048, "oom")]}
    ax = bench.plot_bench(record, dtype="bfloat16", head_dim=64)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "naive (out of memory at L=2048)"
    ]
    assert len(ax.get_lines()) == 2  # the line and the cross at its last length
    plt.close(ax.figure)


def test_the_compiled_method_compiles_once(monkeypatch):
    compiled = []

    def fake_compile(fn, **options):  # torch.compile takes minutes on a CPU: count the calls
        compiled.append(options)
        return fn

    monkeypatch.setattr(torch, "compile", fake_compile)
    record = bench.run_bench(
        _sizes(head_dims=(8, 16), methods=("naive-compiled",)),
        device="cpu",
        measure_ceilings=False,
        progress=False,
    )
    assert [e["status"] for e in record["results"]] == ["ok"] * 4
    assert compiled == [{"dynamic": True}]


def test_a_run_that_changes_the_preset_gets_its_own_file_name():
    """Two runs of one preset on one machine must not overwrite each other's record."""
    gpu = {"type": "cuda", "name": "NVIDIA H100 80GB HBM3"}
    assert machine.default_out(gpu, "full").name == "bench-nvidia-h100-80gb-hbm3-full.json"
    custom = machine.default_out(gpu, "full", ["custom", "causal"])
    assert custom.name == "bench-nvidia-h100-80gb-hbm3-full-custom-causal.json"
    cpu = {"type": "cpu", "name": "Intel(R) Xeon(R) CPU @ 2.50GHz", "threads": 1}
    assert (
        machine.default_out(cpu, "small").name
        == "bench-cpu-intel-xeon-2-50ghz-1-threads-small.json"
    )


def test_a_short_call_is_timed_back_to_back():
    """A call far shorter than a millisecond is repeated inside each timed run, and the
    times are per call: the launch overhead of one call does not dominate them."""
    calls, user_calls = [], []
    q = k = v = torch.zeros(1)
    method = Method(lambda *args: calls.append(1), lambda *args: user_calls.append(1))
    entry = sweep._run_one(method, q, k, v, device=torch.device("cpu"), warmup=1, repeats=3)
    assert 1 < entry["calls_per_run"] <= 100
    # the first call, warm-up and calibration (1 + 1 + 1), the timed runs, the memory run
    assert len(calls) == 3 + 3 * entry["calls_per_run"] + 1
    assert len(entry["times_ms"]) == 3 and entry["median_ms"] < 1.0
    assert len(user_calls) == 3 and entry["host_ms"] >= 0  # the user's call, timed apart

    sleep = lambda *args: time.sleep(2e-3)  # noqa: E731
    slow = sweep._run_one(
        Method(sleep, sleep), q, k, v, device=torch.device("cpu"), warmup=0, repeats=2
    )
    assert slow["calls_per_run"] == 1 and slow["min_ms"] >= 2.0
    assert slow["host_ms"] >= 2.0  # on the CPU, the host's time is the work


def test_host_checks_are_timed_apart_from_the_kernel():
    """A slow check in the user's call shows in host_ms, not in the kernel's median_ms."""
    q = k = v = torch.zeros(1)

    def checked_call(*args):
        time.sleep(5e-3)  # validation, broadcasting, the autograd wrapper ...

    entry = sweep._run_one(
        Method(lambda *args: None, checked_call), q, k, v, device=torch.device("cpu"),
        warmup=0, repeats=2,
    )  # fmt: skip
    assert entry["median_ms"] < 1.0 <= 5.0 <= entry["host_ms"]


def test_a_run_cut_short_keeps_what_it_measured(tmp_path, monkeypatch):
    """The record is rewritten after every configuration, marked incomplete until the end."""
    calls = 0
    real = sweep._run_one

    def stop_at_the_third(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == 3:
            raise KeyboardInterrupt  # as a killed or interrupted run
        return real(*args, **kwargs)

    monkeypatch.setattr(sweep, "_run_one", stop_at_the_third)
    path = tmp_path / "cut.json"
    sizes = _sizes(seq_lens=(8, 16, 32, 64), head_dims=(16,), methods=("naive",))
    with pytest.raises(KeyboardInterrupt):
        bench.run_bench(sizes, device="cpu", measure_ceilings=False, progress=False,
                        checkpoint=path)  # fmt: skip
    cut = bench.load_bench(path)
    assert [e["seq_len"] for e in cut["results"]] == [8, 16]
    assert cut["environment"]["complete"] is False
    assert "INCOMPLETE: the run stopped after 2 configurations" in bench.describe_bench(cut)
    assert not list(tmp_path.glob("*.part"))

    monkeypatch.setattr(sweep, "_run_one", real)
    whole = bench.run_bench(sizes.replace(seq_lens=(8, 16)), device="cpu",
                            measure_ceilings=False, progress=False, checkpoint=path)  # fmt: skip
    assert bench.load_bench(path)["environment"]["complete"] is True
    assert len(whole["results"]) == 2 and "INCOMPLETE" not in bench.describe_bench(whole)


@pytest.mark.parametrize("name", ["new-folder", "new/nested/folder"])
def test_out_names_a_folder_that_does_not_exist_yet(tmp_path, name):
    """``--out DIR`` for a missing DIR creates it and writes bench-<device>-<preset>.json."""
    out = tmp_path / name
    assert bench.main(["--tiny", "--device", "cpu", "--no-progress", "--no-ceilings",
                       "--methods", "naive", "--out", str(out)]) == 0  # fmt: skip
    files = list(out.glob("bench-*.json"))
    assert out.is_dir() and len(files) == 1
    assert files[0].name.endswith("-tiny-custom.json")
    assert bench.load_bench(files[0])["results"][0]["status"] == "ok"


def test_the_record_names_the_triton_version_and_the_load(tmp_path):
    record = bench.run_bench(
        _sizes(methods=("naive",)), device="cpu", measure_ceilings=False, progress=False
    )
    try:
        from importlib.metadata import version

        expected = version("triton")
    except Exception:
        expected = None
    assert record["versions"]["triton"] == expected
    assert "triton" in record["versions"]
    environment = record["environment"]
    assert len(environment["load_average_start"]) == 3 and environment["cpu_count"] >= 1
    assert len(environment["load_average_end"]) == 3
    if expected:
        assert f"Triton {expected}" in bench.describe_bench(record)


def test_load_records_checks_every_file(tmp_path):
    record = bench.run_bench(
        _sizes(methods=("naive",)), device="cpu", measure_ceilings=False, progress=False
    )
    bench.records.write_record(record, tmp_path / "bench-a.json")
    assert [r["device"]["type"] for r in bench.load_records(tmp_path)] == ["cpu"]
    assert bench.load_records(tmp_path, device_type="cuda") == []
    assert bench.load_records(tmp_path / "missing") == []
    broken = dict(record, results=[{"method": "naive"}])
    bench.records.write_record(broken, tmp_path / "bench-b.json")
    with pytest.raises(ValueError, match="result 0 lacks the fields"):
        bench.load_records(tmp_path)


def test_the_estimate_grows_with_the_work():
    full, fill, tiny = (bench.estimate_seconds(bench.PRESETS[p]) for p in ("full", "fill", "tiny"))
    print(f"\nestimated on an H100: full {full:.0f} s, fill {fill:.0f} s, tiny {tiny:.0f} s")
    assert tiny < fill < full < 300  # the full sweep must leave room in a 6-minute run
    bigger = bench.PRESETS["full"].replace(repeats=20)
    assert bench.estimate_seconds(bigger) > full


def test_the_fill_preset_gives_a_gpu_enough_programs():
    fill = bench.PRESETS["fill"]
    programs = fill.batch * fill.heads * (min(fill.seq_lens) // 128)  # block_m = 128
    assert fill.batch * fill.heads >= 128 and programs >= 4 * 132  # 132 SMs on an H100


@pytest.mark.slow
def test_the_gpu_script_passes_its_dry_run_on_the_cpu(tmp_path):
    """scripts/record_gpu.sh --dry-run: every step of the GPU run but the kernels, here."""
    script = Path(__file__).resolve().parents[1] / "scripts" / "record_gpu.sh"
    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    env["PYTHON"] = sys.executable
    done = subprocess.run(
        ["bash", str(script), str(tmp_path), "--dry-run"],
        capture_output=True, text=True, timeout=600, env=env, cwd=script.parents[1],
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    budget = (tmp_path / "budget.txt").read_text()
    print("\n" + budget)
    assert "estimated on an H100" in budget and "of 360" in budget and "failed: none" in budget
    total = int(budget.split("total at most ")[1].split(" s")[0])
    imports = int(budget.split("python + imports ")[1].split(" ")[0])  # measured: load-bound
    # the stated start and the timeouts leave 15 s for three python starts on the GPU machine
    assert total - imports <= 345, "the GPU run must fit in six minutes, its start included"
    records = bench.load_records(tmp_path / "data")
    assert sorted(r["settings"]["preset"] for r in records) == ["fill", "full"]
    assert not list((Path(__file__).resolve().parents[1] / "book" / "data").glob("*custom*"))
    assert "triton" in (tmp_path / "versions.txt").read_text()
    collected = (tmp_path / "tests.log").read_text()
    assert "test_compiled_kernel_on_the_gpu" in collected  # the test ids exist
    assert "test_cuda_peak_memory_is_exact" in collected


def test_host_ms_table_reads_old_records_too():
    entry = {"method": "naive", "dtype": "float32", "head_dim": 64, "status": "ok"}
    record = {
        "results": [
            {**entry, "seq_len": 512, "host_ms": 0.012},
            {**entry, "seq_len": 1024},  # a record from before host_ms existed
        ]
    }
    table = bench.bench_table(record, metric="host_ms", dtype="float32", head_dim=64)
    assert table.splitlines()[0].startswith("host time per call")
    assert table.splitlines()[2].split()[1:] == ["0.012", "n/a"]


@pytest.mark.slow
def test_the_record_times_a_decode_step_per_configuration(tiny):
    """Prefill (L = S) and decode (one query against S keys) for every configuration."""
    record, stdout = tiny[0], tiny[1]
    prefill = [(e["dtype"], e["head_dim"], e["method"], e["seq_len"]) for e in record["results"]]
    decode = [(e["dtype"], e["head_dim"], e["method"], e["seq_len"]) for e in record["decode"]]
    assert decode == prefill
    assert "decode step, one query" in stdout
    for step, full in zip(record["decode"], record["results"], strict=True):
        assert step["n_queries"] == 1 and step["status"] in STATUSES
        if step["status"] != "ok":
            assert step["note"]
            continue
        flops = ma.attention_flops(1, record["settings"]["heads"], 1, step["seq_len"],
                                   step["head_dim"])  # fmt: skip
        assert step["tflops"] == pytest.approx(flops / (step["median_ms"] / 1e3) / 1e12, rel=1e-3)
        assert step["flops_per_byte"] < 0.5  # float32: 4 S D FLOPs over more than 8 S D bytes
        if full["status"] == "ok":
            assert step["flops_per_byte"] < full["flops_per_byte"]


def test_a_decode_step_is_the_last_row_of_causal_attention():
    """Why a decode step is timed without a mask: the last query sees every key."""
    sizes = _sizes(batch=2, heads=3)
    q1, k, v = measure.seeded_inputs(sizes, 1, 7, 8, torch.float64, torch.device("cpu"), 0)
    q = torch.cat([torch.randn(2, 3, 6, 8, dtype=torch.float64), q1], dim=-2)
    causal = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    for name in ("naive", "tiled", "sdpa-math"):
        step = methods.make_method(name, causal=False, block_size=4).kernel(q1, k, v)
        torch.testing.assert_close(step, causal[..., -1:, :], atol=1e-12, rtol=0)


def test_decode_can_be_left_out_and_tables_say_so():
    record = bench.run_bench(_sizes(decode=False, methods=("naive",)), device="cpu",
                             measure_ceilings=False, progress=False)  # fmt: skip
    assert record["decode"] is None
    with pytest.raises(ValueError, match="no decode steps"):
        bench.bench_table(record, dtype="float32", head_dim=8, phase="decode")
    with pytest.raises(ValueError, match="phase must be"):
        bench.bench_table(record, dtype="float32", head_dim=8, phase="generate")
    assert bench.estimate_seconds(bench.PRESETS["full"]) > bench.estimate_seconds(
        bench.PRESETS["full"].replace(decode=False)
    )


def test_the_compiled_method_decode_step_is_skipped_with_a_reason():
    entry = decode.measure_decode(_sizes(), torch.float32, 8, "naive-compiled", 16,
                                        torch.device("cpu"))  # fmt: skip
    assert entry["status"] == "skipped" and "compil" in entry["note"]


def test_load_bench_checks_the_decode_entries(tmp_path):
    record = bench.run_bench(_sizes(methods=("naive",)), device="cpu", measure_ceilings=False,
                             progress=False)  # fmt: skip
    path = tmp_path / "r.json"
    del record["decode"][0]["status"]
    path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match="decode entry 0 lacks"):
        bench.load_bench(path)
