"""`--device auto|cpu|cuda` for the torch side. Never a silent CPU fallback for an explicit `cuda`."""

from __future__ import annotations

from gentool.errors import UsageError


def torch_device(name: str):
    import torch

    if name not in ("auto", "cpu", "cuda") and not name.startswith("cuda:"):
        raise UsageError(f"unknown device '{name}': use auto, cpu or cuda")
    if name == "cpu":
        return torch.device("cpu")
    available = torch.cuda.is_available()
    if name == "auto":
        return torch.device("cuda" if available else "cpu")
    if not available:
        why = "this PyTorch build has no CUDA" if torch.version.cuda is None else "no CUDA device is visible"
        raise UsageError(f"--device {name} was asked for, but {why}")
    return torch.device(name)
