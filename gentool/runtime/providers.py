"""Which onnxruntime execution provider `--device auto|cpu|cuda` means on this machine.

onnxruntime-gpu lists the CUDA provider whether or not CUDA works, and logs an error when it falls
back. So CUDA is asked for only when the driver answers with a device, and the session's providers
are checked afterwards: an explicit `cuda` that did not take is an error, never a silent CPU run.
"""

from __future__ import annotations

import ctypes
import functools
import sys

from gentool.errors import UsageError

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


@functools.cache
def cuda_device_count() -> int:
    """Devices the CUDA driver reports (0 without a driver), asked without loading any runtime."""
    name = "nvcuda.dll" if sys.platform == "win32" else "libcuda.so.1"
    try:
        lib = ctypes.CDLL(name)
        count = ctypes.c_int(0)
        if lib.cuInit(0) != 0 or lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return 0
        return count.value
    except (OSError, AttributeError):
        return 0


def providers_for(device: str) -> list[str]:
    import onnxruntime

    if device not in ("auto", "cpu", "cuda"):
        raise UsageError(f"unknown device '{device}': use auto, cpu or cuda")
    if device == "cpu":
        return [CPU]
    has_provider = CUDA in onnxruntime.get_available_providers()
    if device == "cuda":
        if not has_provider:
            raise UsageError("--device cuda: this onnxruntime has no CUDA provider (install onnxruntime-gpu)")
        if not cuda_device_count():
            raise UsageError("--device cuda: no CUDA driver or device found")
    return [CUDA, CPU] if has_provider and cuda_device_count() else [CPU]


def check_session(session, device: str) -> None:
    if device == "cuda" and CUDA not in session.get_providers():
        raise UsageError(
            "--device cuda: onnxruntime could not start its CUDA provider (check the CUDA and cuDNN libraries)"
        )
