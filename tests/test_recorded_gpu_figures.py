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

from scripts.run_chapter import execute_notebook

pytest.importorskip("triton", reason="the record includes the Triton kernel")

ROOT = Path(__file__).resolve().parents[1]
GPU_NAME = "Synthetic GPU (test record)"
LENGTHS = {64: 2048, 128: 4096}  # relabelled: the chapters pick out L = 4096


def _synthetic_gpu_record(folder: Path) -> Path:
    raw = folder / "cpu.json"
    command = [sys.executable, "-m", "mini_attn.bench", "--device", "cpu", "--no-progress"]
    command += ["--seq-lens", *map(str, LENGTHS), "--head-dims", "64", "128"]
    command += ["--dtypes", "float32", "bfloat16", "--warmup", "0", "--repeats", "2"]
    command += ["--methods", "naive", "tiled", "sdpa-math", "sdpa-flash", "triton"]
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
    record["settings"]["seq_lens"] = [LENGTHS[n] for n in record["settings"]["seq_lens"]]
    record["settings"]["methods"].append("naive-compiled")
    compiled = []
    for entry in record["results"]:
        entry["seq_len"] = LENGTHS[entry["seq_len"]]
        if entry["method"] == "naive":
            compiled.append({**entry, "method": "naive-compiled"})
    record["results"] += compiled
    record["sync_demo"]["seq_len"] = LENGTHS.get(record["sync_demo"]["seq_len"], 4096)
    path = folder / "bench-synthetic-gpu-full.json"
    path.write_text(json.dumps(record, indent=1))
    return path


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
