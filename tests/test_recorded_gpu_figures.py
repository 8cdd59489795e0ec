"""Chapters 8 and 9 show a recorded GPU run: executed here against a synthetic one.

No GPU record is stored yet, so the chapters' cells that draw one have never run in a build.
The first real record must not be what finds their bugs: here a record with the schema of
``python -m mini_attn.bench`` (the real command, run on the CPU at tiny sizes, the Triton
kernel in its interpreter) is relabelled as a GPU's, stored in a copy of the book's folder,
and both chapters are executed against it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jupytext
import pytest

from book_tools.run_chapter import execute_notebook
from mini_attn import bench
from mini_attn.bench import PRESETS

triton = pytest.importorskip("triton", reason="the record includes the Triton kernel")

ROOT = Path(__file__).resolve().parents[1]
GPU_NAME = "Synthetic GPU (test record)"
FULL = PRESETS["full"]  # the real GPU sweep: the synthetic record has its size
METHODS = (*FULL.methods, "triton")
MEASURED = ("naive", "tiled", "sdpa-math", "sdpa-flash", "triton")  # run for real, tiny


def _template(raw: dict, method: str, dtype: str, head_dim: int, seq_len: int) -> dict:
    """The measured entry a synthetic one is copied from, and its length."""
    source = method if method in MEASURED else "naive" if "naive" in method else "sdpa-flash"
    dtype = "bfloat16" if dtype == "float16" else dtype
    tiny_len = 64 if seq_len < 4096 else 128
    for entry in raw["results"]:
        key = (entry["method"], entry["dtype"], entry["head_dim"], entry["seq_len"])
        if key == (source, dtype, head_dim, tiny_len):
            return entry
    raise AssertionError(f"no measured entry for {source, dtype, head_dim, tiny_len}")


def _synthetic_gpu_record(folder: Path) -> Path:
    raw = folder / "cpu.json"
    command = [sys.executable, "-m", "mini_attn.bench", "--device", "cpu", "--no-progress"]
    command += ["--seq-lens", "64", "128", "--head-dims", "64", "128"]
    command += ["--dtypes", "float32", "bfloat16", "--warmup", "0", "--repeats", "2"]
    command += ["--methods", *MEASURED]
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    subprocess.run([*command, "--out", str(raw)], env=env, check=True, timeout=900)
    record = json.loads(raw.read_text())
    record["device"] = {
        "type": "cuda",
        "name": GPU_NAME,
        "memory_bytes": 80 * 2**30,
        "compute_capability": "9.0",
        "multiprocessors": 132,
        "driver": None,
        "cuda": "13.0",
        "cudnn": None,
    }
    record["settings"].update(
        preset="full", seq_lens=list(FULL.seq_lens), head_dims=list(FULL.head_dims),
        dtypes=list(FULL.dtypes), methods=list(METHODS), batch=FULL.batch, heads=FULL.heads,
    )  # fmt: skip
    results = []
    for dtype, head_dim, method, seq_len in FULL.replace(methods=METHODS).configurations():
        entry = dict(_template(record, method, dtype, head_dim, seq_len))
        factor = (seq_len / entry["seq_len"]) ** 2 * FULL.heads / entry["heads"]
        times = [t * factor for t in entry["times_ms"]]
        entry.update(method=method, dtype=dtype, seq_len=seq_len, batch=FULL.batch,
                     heads=FULL.heads, times_ms=times, median_ms=entry["median_ms"] * factor,
                     min_ms=min(times))  # fmt: skip
        results.append(entry)
    record["results"] = results
    record["sync_demo"]["seq_len"] = 4096
    path = folder / "bench-synthetic-gpu-full.json"
    path.write_text(json.dumps(record, indent=1))
    return path


@pytest.mark.slow
def test_the_synthetic_record_has_the_real_sweeps_size(tmp_path_factory):
    folder = tmp_path_factory.mktemp("size")
    record = bench.load_bench(_synthetic_gpu_record(folder))
    expected = len(FULL.replace(methods=METHODS).configurations())
    assert len(record["results"]) == expected == 6 * 2 * 3 * 8
    assert record["versions"]["triton"]  # the record names the compiler


@pytest.fixture(scope="module")
def book_with_a_gpu_record(tmp_path_factory):
    book = tmp_path_factory.mktemp("book")
    (book / "data").mkdir()
    _synthetic_gpu_record(book / "data")
    for name in ("08-profiling.md", "09-fused-kernel.md"):
        shutil.copy(ROOT / "book" / name, book / name)
    return book


def _execute(book: Path, name: str) -> str:
    notebook = execute_notebook(jupytext.read(book / name), book)
    return "\n".join(
        output.get("text", "")
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if output.get("output_type") == "stream"
    )


@pytest.mark.slow
def test_chapter_7_shows_a_gpu_record(book_with_a_gpu_record):
    text = _execute(book_with_a_gpu_record, "08-profiling.md")
    assert "1 on a GPU" in text
    assert f"{GPU_NAME}, naive attention, L = 4096" in text  # the synchronisation demo
    assert f"{GPU_NAME}, L = 4096, float32, D = 64: compiled" in text  # torch.compile
    assert "ridge point" in text and "No GPU recording is present" not in text


@pytest.mark.slow
def test_chapter_8_shows_a_gpu_record(book_with_a_gpu_record):
    text = _execute(book_with_a_gpu_record, "09-fused-kernel.md")
    assert f"bench-synthetic-gpu-full.json: {GPU_NAME}" in text
    for head_dim in (64, 128):
        assert f"D = {head_dim}, L = 4096: Triton reaches" in text
    assert "No GPU record with the Triton kernel" not in text
    assert f"Triton {triton.__version__}; command" in text  # the record's compiler
