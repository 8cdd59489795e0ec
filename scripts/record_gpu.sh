#!/usr/bin/env bash
# The project's GPU measurements and CUDA tests, prepared to run in one go on a lent GPU
# machine (estimated 5 to 7 minutes on an H100, its start not included). From the
# repository root:
#
#     bash scripts/record_gpu.sh OUT_DIR
#
# It uses the machine's own python3 (its torch and Triton, whose versions the record names),
# records the benchmark's full sweep (chapter 8's GPU figures, and the Triton kernel of
# chapter 9 against PyTorch's fused kernels: L = 512 ... 16384, D = 64 and 128, float32,
# bfloat16 and float16) into book/data/, runs the tests that need CUDA, and copies the
# record and the logs to OUT_DIR. Commit the record under book/data/: the chapters show it.
set -uo pipefail
out=${1:?usage: bash scripts/record_gpu.sh OUT_DIR}
mkdir -p "$out" book/data
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1

python3 -c "import platform, torch, triton; print('python', platform.python_version(), \
'torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())" \
    2>&1 | tee "$out/versions.txt"

# first the record, the part that only a GPU can give (written after every configuration:
# if the timeout stops it, what it measured is kept, marked incomplete)
timeout 360 python3 -m mini_attn.bench --no-progress --out book/data 2>&1 | tee "$out/bench.log"
cp book/data/bench-*.json "$out/" 2>/dev/null

# then the tests whose CUDA paths never run on the CPU: the compiled Triton kernel (forward
# and gradients), the CUDA timer and memory measurements, the bench's tiny run on the GPU
timeout 200 python3 -m pytest -q -p no:cacheprovider tests/test_triton_attention.py \
    tests/test_profiling.py tests/test_bench.py 2>&1 | tee "$out/tests.log"
