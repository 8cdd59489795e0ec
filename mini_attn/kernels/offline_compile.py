"""Compile the Triton kernels for a GPU that is not there (chapter 9).

Triton compiles a kernel on its first launch, for the GPU it finds. The compiler itself
(Triton's MLIR passes and NVIDIA's ``ptxas``, which ship in the ``triton`` wheel) needs
no GPU, only a *target*: :func:`compile_for_gpu` launches
:func:`mini_attn.kernels.launch.attention_forward` (and the backward launcher) through a
stand-in driver that names the target, lets Triton compile exactly what it would compile
on that GPU (the same block sizes, warps, stages and argument specialisations) and then
runs nothing. What comes back is what the compiler decided: the shared memory one program
needs, the registers per thread, the bytes spilled to local memory and the tensor-core
instruction the dot products became.

It runs in a fresh Python process, because a process whose kernels were defined for the
interpreter (``TRITON_INTERPRET=1``, as in chapter 9) cannot compile them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass

import torch

__all__ = ["GPUS", "KernelBuild", "compile_for_gpu"]

#: The GPUs :func:`compile_for_gpu` can target: their compute capability (``arch``) and the
#: most shared memory one program (thread block) may use, in bytes (227, 163, 99 and
#: 64 KiB), from the table of compute capabilities of the CUDA C++ Programming Guide.
GPUS = {
    "H100": {"arch": 90, "max_shared_mem": 232_448},
    "A100": {"arch": 80, "max_shared_mem": 166_912},
    "L4": {"arch": 89, "max_shared_mem": 101_376},
    "T4": {"arch": 75, "max_shared_mem": 65_536},
}

_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


@dataclass(frozen=True)
class KernelBuild:
    """What Triton's compiler made of one kernel for one GPU.

    Attributes:
        kernel: the kernel's name, e.g. ``"attention_forward_kernel"``.
        gpu: the GPU it was compiled for, a key of :data:`GPUS`.
        dtype, head_dim, causal, block_m, block_n: the launch's settings.
        num_warps, num_stages: the launcher's choices (warps per program, and how many
            blocks of keys the compiler's software pipeline loads ahead).
        shared_bytes: shared memory one program needs.
        max_shared_bytes: the most that one program may use on ``gpu``.
        registers: registers per thread (at most 255).
        local_bytes: bytes per thread in local memory: registers spilled to slow memory.
        tensor_core_op: the tensor-core instruction of the dot products: ``"wgmma"``
            (Hopper's warpgroup MMA), ``"mma"`` (Ampere's), or ``"none"``.
    """

    kernel: str
    gpu: str
    dtype: str
    head_dim: int
    causal: bool
    block_m: int
    block_n: int
    num_warps: int
    num_stages: int
    shared_bytes: int
    max_shared_bytes: int
    registers: int
    local_bytes: int
    tensor_core_op: str

    @property
    def fits(self) -> bool:
        """Whether one program's shared memory fits the GPU (else the launch would fail)."""
        return self.shared_bytes <= self.max_shared_bytes


def compile_for_gpu(configs: list[dict], *, gpu: str = "H100") -> list[KernelBuild]:
    """Compile the attention kernels for ``gpu`` without one, and report on each.

    Args:
        configs (list of dict): launches to compile; each may set ``dtype`` (a
            ``torch.dtype`` or its name; default bfloat16), ``head_dim`` (64), ``causal``
            (False), ``block_m`` (128), ``block_n`` (64) as :func:`mini_attn.triton_attention`
            takes them; ``num_stages`` (None: the launcher's choice, the deepest pipeline
            that fits ``gpu``; or 1, 2, 3, ... for the forward kernel); and ``backward``
            (False: the forward kernel only; True: the two backward kernels only).
        gpu (str): one of :data:`GPUS`. Default: ``"H100"``.

    Returns:
        list of KernelBuild: one per compiled kernel, in the order of ``configs``.

    Raises:
        ModuleNotFoundError: if Triton is not installed.
        RuntimeError: if the compiler fails (its message included).
    """
    if gpu not in GPUS:
        raise ValueError(f"gpu must be one of {sorted(GPUS)}, got {gpu!r}")
    requests = [_normalise(config) for config in configs]
    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton 3.9's default, without its warning
    result = subprocess.run(
        [sys.executable, "-m", __name__, json.dumps({"gpu": gpu, "configs": requests})],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if result.returncode != 0:
        if "No module named 'triton'" in result.stderr:
            raise ModuleNotFoundError(
                "compile_for_gpu needs Triton, which is not installed: "
                "`pip install -r requirements.txt` installs the tested version",
                name="triton",
            )
        raise RuntimeError(f"compiling for {gpu} failed:\n{result.stderr.strip()[-3000:]}")
    return [KernelBuild(**build) for build in json.loads(result.stdout.splitlines()[-1])]


def _normalise(config: dict) -> dict:
    settings = {"dtype": "bfloat16", "head_dim": 64, "causal": False, "block_m": 128,
                "block_n": 64, "num_stages": None, "backward": False}  # fmt: skip
    unknown = set(config) - set(settings)
    if unknown:
        raise ValueError(f"unknown settings {sorted(unknown)}; allowed: {sorted(settings)}")
    settings.update(config)
    dtype = settings["dtype"]
    settings["dtype"] = str(dtype).removeprefix("torch.")
    if settings["dtype"] not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype}")
    return settings


# ---- the child process: a stand-in driver, then the launchers ----


class _StandInDriver:
    """Enough of a Triton driver to compile for ``gpu`` and launch nothing."""

    def __init__(self, gpu: str, on_load):
        from triton.backends.compiler import GPUTarget

        self.gpu = gpu
        self.target = GPUTarget("cuda", GPUS[gpu]["arch"], 32)
        self.device = ("stand-in", gpu)  # never device 0: Triton caches kernels per device
        self.launcher_cls = lambda src, metadata: lambda *args: None  # launch nothing
        self.utils = self
        self._on_load = on_load

    def get_current_target(self):
        return self.target

    def get_current_device(self):
        return self.device

    def get_current_stream(self, device=None):
        return 0

    def get_device_properties(self, device):
        return {"max_shared_mem": GPUS[self.gpu]["max_shared_mem"]}

    def load_binary(self, name, cubin, shared, device):
        self._on_load(name, cubin)
        return None, None, 0, 0, 1024  # module, function, registers, spills, max threads


def _resources(cubin: bytes) -> tuple[int, int]:
    """Registers per thread and local-memory bytes per thread, as ``cuobjdump`` reads them."""
    import triton

    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as file:
        file.write(cubin)
        file.flush()
        text = subprocess.run(
            [tool, "-res-usage", file.name], capture_output=True, text=True, check=True
        ).stdout
    match = re.search(r"REG:(\d+).*?LOCAL:(\d+)", text)
    if match is None:
        raise RuntimeError(f"cannot read the resource usage from cuobjdump:\n{text}")
    return int(match[1]), int(match[2])


def _compile_in_this_process(gpu: str, configs: list[dict]) -> list[dict]:
    from triton.compiler import compiler
    from triton.runtime import driver

    from . import launch

    # Triton refuses to load a kernel whose shared memory exceeds the GPU's; here nothing
    # is loaded, and KernelBuild.fits reports it instead (a throwaway process: no harm)
    compiler.max_shared_mem = lambda device: 2**31

    if launch.INTERPRETED:
        raise RuntimeError("TRITON_INTERPRET is set: the kernels cannot be compiled")
    loaded = []  # (kernel name, cubin) of each kernel the launchers "load"
    stand_in = _StandInDriver(gpu, lambda name, cubin: loaded.append((name, cubin)))
    saved = driver._active
    driver.set_active(stand_in)
    builds = []
    try:
        for config in configs:
            q = torch.zeros(1, 256, config["head_dim"], dtype=_DTYPES[config["dtype"]])
            settings = dict(causal=config["causal"], scale=0.125)  # nothing runs: any values
            loaded.clear()
            if config["backward"]:
                lse = torch.zeros(1, 256)
                launch.attention_backward(q, q, q, q, lse, q, **settings)
            else:
                blocks = dict(block_m=config["block_m"], block_n=config["block_n"])
                stages = dict(num_stages=config["num_stages"])
                launch.attention_forward(q, q, q, **blocks, **stages, **settings)
            for name, cubin in loaded:
                builds.append(_describe(getattr(launch, name), cubin, stand_in, config))
    finally:
        driver._active = saved
    return builds


def _describe(kernel, cubin: bytes, stand_in: _StandInDriver, config: dict) -> dict:
    """The :class:`KernelBuild` fields of the compiled ``kernel`` whose binary is ``cubin``."""
    cache = kernel.device_caches[stand_in.device][0]
    compiled = next(c for c in cache.values() if c.kernel is cubin)
    constant = {kernel.arg_names[path[0]]: value for path, value in compiled.src.constants.items()}
    registers, local = _resources(cubin)
    ptx = compiled.asm["ptx"]
    return {
        "kernel": kernel.__name__,
        "gpu": stand_in.gpu,
        "dtype": config["dtype"],
        "head_dim": config["head_dim"],
        "causal": config["causal"],
        "block_m": constant["BLOCK_M"],
        "block_n": constant["BLOCK_N"],
        "num_warps": compiled.metadata.num_warps,
        "num_stages": compiled.metadata.num_stages,
        "shared_bytes": compiled.metadata.shared,
        "max_shared_bytes": GPUS[stand_in.gpu]["max_shared_mem"],
        "registers": registers,
        "local_bytes": local,
        "tensor_core_op": "wgmma" if "wgmma." in ptx else "mma" if "mma.sync" in ptx else "none",
    }


if __name__ == "__main__":
    request = json.loads(sys.argv[1])
    print(json.dumps(_compile_in_this_process(request["gpu"], request["configs"])))
