#!/usr/bin/env bash
# The project's GPU measurements and CUDA tests, prepared to run in one go on a lent GPU
# machine: one run of at most about six minutes, the machine's start included, so that a
# rerun still fits in 15 minutes of GPU time. From the repository root:
#
#     bash scripts/record_gpu.sh OUT_DIR             # on the GPU machine
#     bash scripts/record_gpu.sh OUT_DIR --dry-run   # here, on a CPU: every step but the kernels
#
# It uses the machine's own python3 (its torch and Triton, whose versions the records name),
# prints a time budget (the CPU-side start measured, the GPU sweeps estimated from their
# FLOPs and bytes against an H100's specification sheet), then records
#   1. the benchmark's full sweep (chapter 8's GPU figures and chapter 9's Triton kernel
#      against PyTorch's fused kernels: L = 512 ... 16384, D = 64 and 128, float32,
#      bfloat16, float16; B·H = 8), and
#   2. the fill sweep (B·H = 128: enough programs to fill the GPU, bfloat16),
# into book/data/, runs the tests whose CUDA paths never run on a CPU, and copies the
# records and the logs to OUT_DIR. Commit the records under book/data/: the chapters show
# them. Each record is rewritten after every configuration, so a timeout keeps what was
# measured (marked incomplete; float16, swept last, is what a timeout cuts first).
#
# The dry run takes the same steps on the CPU at tiny sizes, writes its records under
# OUT_DIR/data (never book/data), only collects the tests, and skips what only a GPU has:
# CUDA events and memory statistics, torch.compile (minutes on a CPU) and the kernels.
set -uo pipefail
out=${1:?usage: bash scripts/record_gpu.sh OUT_DIR [--dry-run]}
dry=${2:-}
py=${PYTHON:-python3}
mkdir -p "$out"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1

# the stated budget, in seconds: the machine's start (the device notes: "a minute or
# more") is not measured here; the timeouts below bound every step
start_s=90 full_timeout=165 fill_timeout=45 tests_timeout=45
gpu_tests=(tests/test_triton_attention.py::test_compiled_kernel_on_the_gpu
           tests/test_profiling.py::test_cuda_events_wait_for_the_gpu
           tests/test_profiling.py::test_cuda_peak_memory_is_exact)
if [ "$dry" = "--dry-run" ]; then
    data="$out/data"
    small=(--device cpu --seq-lens 64 128 --head-dims 16 --warmup 0 --repeats 1)
    full_extra=(--methods naive tiled sdpa-math sdpa-efficient sdpa-flash sdpa-cudnn)
    test_mode=(--collect-only -q)
elif [ -n "$dry" ]; then
    echo "unknown option $dry (only --dry-run)" >&2; exit 2
else
    data=book/data small=() full_extra=() test_mode=(-q)
fi
mkdir -p "$data"

t0=$SECONDS
"$py" -c "import platform, numpy, torch
try:
    import triton; tv = triton.__version__
except ImportError:
    tv = 'absent'
gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'
print('python', platform.python_version(), 'torch', torch.__version__, 'numpy',
      numpy.__version__, 'triton', tv, gpu)" 2>&1 | tee "$out/versions.txt"
full_est=$("$py" -m mini_attn.bench --full --device cuda --estimate | grep -o '[0-9]* s' | head -1)
fill_est=$("$py" -m mini_attn.bench --fill --device cuda --estimate | grep -o '[0-9]* s' | head -1)
import_s=$((SECONDS - t0))  # three python starts with torch: measured, on this machine
total=$((start_s + import_s + full_timeout + fill_timeout + tests_timeout))
{
    echo "time budget (s): machine start ~${start_s} (stated), python + imports ${import_s}"\
         "(measured here, three starts)"
    echo "  full sweep: ${full_est} estimated on an H100 from FLOPs and its spec sheet,"\
         "timeout ${full_timeout}"
    echo "  fill sweep: ${fill_est} estimated, timeout ${fill_timeout}"
    echo "  CUDA tests: timeout ${tests_timeout}"
    echo "  total at most ${total} s ($((total / 60)) min $((total % 60)) s) of 360"
} | tee "$out/budget.txt"

# 1 and 2: the records, the part that only a GPU can give
failed=()  # the steps that did not succeed (a timeout included); the others still run
timeout "$full_timeout" "$py" -m mini_attn.bench --full --no-progress --out "$data" \
    "${small[@]}" "${full_extra[@]}" 2>&1 | tee "$out/bench-full.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || failed+=(full-sweep)
timeout "$fill_timeout" "$py" -m mini_attn.bench --fill --no-progress --out "$data" \
    "${small[@]}" 2>&1 | tee "$out/bench-fill.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || failed+=(fill-sweep)
cp "$data"/bench-*.json "$out/" 2>/dev/null

# 3: the tests whose CUDA paths never run on the CPU (the compiled Triton kernel, forward
# and gradients; the CUDA timer and memory measurements). Only these: the interpreter
# tests say nothing about a GPU, and Triton < 3.9's interpreter fails them on NumPy >= 2.4
# (tests/test_triton_attention.py skips them there with that message).
timeout "$tests_timeout" "$py" -m pytest -p no:cacheprovider "${test_mode[@]}" \
    "${gpu_tests[@]}" 2>&1 | tee "$out/tests.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || failed+=(cuda-tests)
echo "done in $((SECONDS - t0)) s (the machine's start not included);" \
     "failed: ${failed[*]:-none}" | tee -a "$out/budget.txt"
[ "${#failed[@]}" -eq 0 ]
