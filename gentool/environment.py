"""`gentool env`: what gentool runs on, for bug reports and for checking a GPU set-up.

Versions are read from the installed packages' metadata (nothing heavy is imported for them);
CUDA is reported as working only after something ran on it: the bundled upscaler under
onnxruntime's CUDA provider, a matrix product under torch.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys

import numpy as np

PACKAGES = ("numpy", "onnxruntime-gpu", "onnxruntime", "onnx", "onnxscript", "torch", "safetensors", "pillow", "typer",
            "rich", "matplotlib")


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]


def onnxruntime_report() -> dict:
    """The providers this onnxruntime has, the CUDA devices the driver reports, and whether a graph
    ran on the CUDA provider ('works', else why not)."""
    import onnxruntime

    from gentool.runtime import providers

    available = onnxruntime.get_available_providers()
    devices = providers.cuda_device_count()
    if providers.CUDA not in available:
        cuda = "no: this onnxruntime has no CUDA provider (install onnxruntime-gpu)"
    elif not devices:
        cuda = "no: no CUDA driver or device"
    else:
        cuda = _run_on_cuda()
    return {"version": onnxruntime.__version__, "providers": available, "cuda_devices": devices, "cuda": cuda}


def _run_on_cuda() -> str:
    from gentool.runtime.artifact import Artifact
    from gentool.runtime.image_to_image import bundled_upscaler

    try:
        upscaler = Artifact(str(bundled_upscaler(2)), "cuda")
        upscaler.run("upscaler", {"x": np.zeros((1, 1, 8, 8), np.float32)})
    except Exception as exc:  # what onnxruntime or the driver said, in one line
        return f"no: {_first_line(exc)}"
    return "works"


def torch_report() -> dict | None:
    """torch's version and whether it ran a matrix product on CUDA; None without torch."""
    try:
        import torch
    except ImportError:
        return None

    found = {"version": torch.__version__, "threads": torch.get_num_threads(), "cuda": "no: this torch has no CUDA"}
    if torch.version.cuda and not torch.cuda.is_available():
        found["cuda"] = "no: no CUDA device"
    elif torch.cuda.is_available():
        try:
            x = torch.ones(64, 64, device="cuda")
            float((x @ x).sum())
            found["cuda"] = "works"
            found["device"] = torch.cuda.get_device_name(0)
        except Exception as exc:
            found["cuda"] = f"no: {_first_line(exc)}"
    return found


def report() -> dict:
    from gentool import __version__, data, runs

    folders = {name: data.dataset_dir(name) for name in data.CLASSES}
    datasets = {name: str(folder) if data.has_all_files(folder) else None for name, folder in folders.items()}
    return {
        "gentool": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "packages": {name: version for name in PACKAGES if (version := _version(name))},
        "onnxruntime": onnxruntime_report(),
        "torch": torch_report(),
        "data_dir": str(data.data_dir()) + ("" if os.environ.get("GENTOOL_DATA_DIR") else " (GENTOOL_DATA_DIR not set)"),
        "datasets": datasets,
        "cache_dir": str(data.cache_dir()),
        "runs": f"{len(runs.listing())} in {runs.ROOT.resolve()}",
        "executable": sys.executable,
    }


def describe(found: dict) -> str:
    """The report as aligned lines, nested values indented under their key."""
    lines = []
    for key, value in found.items():
        if isinstance(value, dict):
            lines.append(f"{key}:")
            lines += [f"  {k:<18} {'missing (downloaded on first use)' if v is None else ', '.join(v) if isinstance(v, list) else v}"
                      for k, v in value.items()]
        else:
            lines.append(f"{key:<20} {'not installed' if value is None else value}")
    return "\n".join(lines)
