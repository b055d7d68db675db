"""Where runs live (`runs/<model>-<data>`) and how a bare model name finds its newest run. Torch-free."""

from __future__ import annotations

from pathlib import Path

from gentool.errors import UsageError

ROOT = Path("runs")


def new_run_dir(model: str, data_name: str) -> Path:
    """`runs/<model>-<data>`, or the first free `-2`, `-3`, ... suffix."""
    base = ROOT / f"{model}-{data_name}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def newest(name: str, holding: str, what: str) -> Path:
    """The most recently modified run of model `name` that holds a file matching `holding`."""
    candidates = [p for p in ROOT.glob(f"{name}-*") if p.is_dir() and any(p.glob(holding))]
    if "/" in name or not candidates:
        raise UsageError(f"'{name}' is not a file or directory, and no run of a model '{name}' with {what} is in {ROOT}/")
    return max(candidates, key=lambda p: p.stat().st_mtime)
