"""Shared by the benchmark scripts: a one-line description of the machine, a markdown table, yes/NO."""

import os
import platform
from importlib import metadata


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    except OSError:
        names = []
    return names[0] if names else platform.processor() or platform.machine()


def _version(*dists: str) -> str:
    """'name version' of the first of `dists` that is installed."""
    for dist in dists:
        try:
            return f"{dist} {metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            pass
    return f"{dists[0]} not installed"


def machine() -> str:
    """CPU, cores, load and library versions, read without importing torch or onnxruntime."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"machine: {_cpu_model()}, {os.cpu_count()} cores, load average {load:.2f} (1 min), "
        f"{platform.system()} {platform.release()}; python {platform.python_version()}, "
        f"{_version('torch')}, {_version('onnxruntime', 'onnxruntime-gpu')}"
    )


def table(header: list[str], rows: list[list]) -> str:
    """A markdown table with padded columns, readable as plain text too."""
    cells = [[str(c) for c in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row):
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cells[0]), rule, *map(line, cells[1:])])


def met(ok: bool) -> str:
    return "yes" if ok else "NO"
