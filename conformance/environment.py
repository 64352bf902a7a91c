"""The machine and software a run measured: CPU flags, ATen's CPU capability, versions."""

from __future__ import annotations

import importlib.metadata
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["TORCH_VERIFIED", "describe_environment", "torch_warning"]

TORCH_VERIFIED = "2.13.0"
"""The torch release the torch profile is verified on, bit for bit (see constraints.txt)."""

_INTERESTING_FLAGS = (
    "sse2",
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512_fp16",
    "amx_tile",
)


def _cpu() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    flags: set[str] = set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model in ("", platform.machine(), platform.processor()):
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    return {"model": model, "flags": [f for f in _INTERESTING_FLAGS if f in flags]}


def describe_environment() -> dict[str, Any]:
    environment: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numpy": np.__version__,
        "cpu": _cpu(),
    }
    try:
        import torch

        environment["torch"] = torch.__version__
        environment["torch_verified"] = TORCH_VERIFIED
        environment["aten_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        environment["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:  # pragma: no cover - torch is in the conformance extra
        environment["torch"] = None
    import scipy

    environment["scipy"] = scipy.__version__
    environment["numba"] = _numba_version()
    environment["optimized_kernel"] = _auto_kernel()
    return environment


def _numba_version() -> str | None:
    """numba's installed version, read from its metadata so numba is not imported for it."""
    try:
        return importlib.metadata.version("numba")
    except importlib.metadata.PackageNotFoundError:
        return None


def _auto_kernel() -> str:
    """The backend ``optimized.ASGD(kernel="auto")`` resolves to on this machine."""
    import optimized

    backend: str = optimized.ASGD([np.zeros(1, np.float32)]).backend
    return backend


def torch_warning(environment: dict[str, Any]) -> str | None:
    """A warning when the installed torch is not the release the torch profile was verified on."""
    installed = environment.get("torch")
    if installed is None or installed.split("+")[0] == TORCH_VERIFIED:
        return None
    return (
        f"torch {installed} is installed; the torch profile was verified on torch {TORCH_VERIFIED}. "
        "The verdicts still decide."
    )
