"""Latent codes in and out: .npy, CSV, or JSON lines ({"input": ..., "code": [...]} per image)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from gentool import console
from gentool.errors import UsageError
from gentool.files import STDOUT_PATHS, atomic_write, read_input, write_stdout

NPY_MAGIC = b"\x93NUMPY"
IMAGE_MAGICS = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM")  # PNG, JPEG, GIF, BMP


def _format_for(out: str | None, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    suffix = Path(out).suffix.lower() if out and out != "-" else ""
    return {".npy": "npy", ".csv": "csv"}.get(suffix, "json")


def write(outputs: dict[str, np.ndarray], names: list[str], out: str | None, fmt: str) -> None:
    """Write encoder outputs: the code (or posterior mean) and, in JSON lines, the log-variance too."""
    code = outputs["mean"] if "mean" in outputs else outputs["code"]
    fmt = _format_for(out, fmt)
    if fmt == "npy":
        buffer = io.BytesIO()
        np.save(buffer, code.astype(np.float32))
        data = buffer.getvalue()
    elif fmt == "csv":
        data = "".join(",".join(f"{v:.7g}" for v in row) + "\n" for row in code).encode()
    else:
        lines = []
        for i, name in enumerate(names):
            row = {"input": name, "code": [round(float(v), 7) for v in code[i]]}
            if "logvar" in outputs:
                row["logvar"] = [round(float(v), 7) for v in outputs["logvar"][i]]
            lines.append(console.to_json(row) + "\n")
        data = "".join(lines).encode()
    if out is None or out in STDOUT_PATHS:
        write_stdout(data if fmt == "npy" else data.decode())
    else:
        atomic_write(Path(out), data)


def read(src: str) -> np.ndarray:
    """Codes from a path or '-': .npy bytes, JSON lines (objects with "code", or bare lists), or CSV."""
    raw = read_input(src)
    if raw.startswith(IMAGE_MAGICS):
        raise UsageError(f"'{src}' is an image, not codes: decode reads what `gentool encode` writes "
                         "(.npy, CSV or JSON lines); `gentool reconstruct` takes images")
    try:
        if raw.startswith(NPY_MAGIC):
            codes = np.load(io.BytesIO(raw), allow_pickle=False)
        else:
            text = raw.decode().strip()
            if text.startswith(("{", "[")):
                rows = [json.loads(line) for line in text.splitlines() if line.strip()]
                codes = np.array([r["code"] if isinstance(r, dict) else r for r in rows], dtype=np.float64)
            else:
                codes = np.array([[float(v) for v in line.split(",")] for line in text.splitlines() if line.strip()])
    except UnicodeDecodeError:
        raise UsageError(f"cannot read codes from '{src}': it is neither text (CSV, JSON lines) nor a .npy file") from None
    except (ValueError, KeyError, TypeError) as e:
        raise UsageError(f"cannot read codes from '{src}': {e}") from None
    codes = np.atleast_2d(np.asarray(codes, dtype=np.float32))
    if codes.ndim != 2 or not np.isfinite(codes).all():
        raise UsageError(f"cannot read codes from '{src}': expected finite numbers shaped (N, latent_dim)")
    return codes
