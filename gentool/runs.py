"""Where runs live (`runs/<model>-<data>`), what they hold (`gentool runs`), and how a bare model name
finds its newest run. Torch-free: a checkpoint's metadata is read from its safetensors JSON header."""

from __future__ import annotations

import json
import os
import struct
import sys
import time
from pathlib import Path

from gentool.errors import UsageError

ROOT = Path("runs")
CLAIM = ".gentool-run"  # created exclusively in a run directory by the training that owns it


def new_run_dir(model: str, data_name: str) -> Path:
    """`runs/<model>-<data>`, or the first free `-2`, `-3`, ... suffix."""
    base = ROOT / f"{model}-{data_name}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def _claim_in(path: Path) -> bool:
    """Create the claim file in `path` (exclusively); False if another training holds it."""
    try:
        fd = os.open(path / CLAIM, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    except OSError as exc:
        raise UsageError(f"cannot write '{path}': {exc.strerror or exc}") from None
    os.write(fd, f"{os.getpid()}\n".encode())
    os.close(fd)
    return True


def claim(out: Path | None, model: str, data_name: str) -> Path:
    """The run directory, claimed for this training: `out`, which must be new or empty, or the
    first free default name. Of two trainings started into one directory exactly one gets it (an
    exclusive create); the other is told, or takes the next default name."""
    if out is None:
        while True:
            path = new_run_dir(model, data_name)
            try:
                path.mkdir(parents=True)
            except FileExistsError:
                continue
            if _claim_in(path):
                return path
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        taken = any(out.iterdir())
    except OSError as exc:
        raise UsageError(f"cannot write '{out}': {exc.strerror or exc}") from None
    if taken or not _claim_in(out):
        raise UsageError(f"'{out}' already exists and is not empty (or another training is writing it); choose another --out or use --resume")
    return out


def release_if_unused(path: Path) -> None:
    """Give up the claim on a run directory that holds nothing else (a training that failed before
    its first checkpoint), so that the same --out can be used again."""
    if path is not None and [p.name for p in path.iterdir()] == [CLAIM]:
        (path / CLAIM).unlink()


def resolve(spec: str, holding: str, what: str) -> Path:
    """`spec` as a path when it exists, else a bare model name's newest run (`newest`)."""
    path = Path(spec)
    return path if path.exists() else newest(spec, holding, what)


def newest(name: str, holding: str, what: str) -> Path:
    """The most recently modified run of model `name` that holds a file matching `holding`; which
    one it took is said on stderr, so that a quick smoke run is never used unnoticed."""
    candidates = [] if "/" in name else [p for p in ROOT.glob(f"{name}-*") if p.is_dir() and any(p.glob(holding))]
    if not candidates:
        raise UsageError(f"'{name}' is not a file or directory, and no run of a model '{name}' with {what} is in {ROOT}/")
    found = max(candidates, key=lambda p: p.stat().st_mtime)
    others = f", the newest of {len(candidates)} (`gentool runs {name}` lists them)" if len(candidates) > 1 else ""
    print(f"note: '{name}' is {found}{_trained(found)}{others}", file=sys.stderr, flush=True)
    return found


def _trained(run: Path) -> str:
    """' (3 epochs)', or ' (3 of 10 epochs)' for a run that stopped early; '' without a checkpoint."""
    meta = checkpoint_meta(run / "model.safetensors") or {}
    done, asked = meta.get("epoch"), meta.get("train", {}).get("epochs")
    if done is None:
        return ""
    return f" ({done} of {asked} epochs)" if asked and done < asked else f" ({done} epoch{'s' * (done != 1)})"


def checkpoint_meta(file: Path) -> dict | None:
    """The gentool metadata of a safetensors checkpoint, from its JSON header; None if it has none."""
    try:
        with open(file, "rb") as f:
            size = struct.unpack("<Q", f.read(8))[0]
            if size > 2**26:
                return None
            header = json.loads(f.read(size))
        meta = json.loads(header["__metadata__"]["gentool"])
    except (OSError, struct.error, ValueError, KeyError, TypeError):
        return None
    return meta if isinstance(meta, dict) else None


METRICS = "metrics.jsonl"


def read_metrics(run: Path) -> list[dict]:
    """A run's metrics.jsonl: one dict of figures per epoch, with its `epoch`. A missing file or a
    line that is not such a dict is a usage error naming the file."""
    file = Path(run) / METRICS
    try:
        rows = [json.loads(line) for line in file.read_text().splitlines() if line.strip()]
    except OSError:
        raise UsageError(f"no training metrics in '{run}' (expected {file})") from None
    except ValueError:
        raise UsageError(f"'{file}' is not JSON lines") from None
    if not all(isinstance(row, dict) and isinstance(row.get("epoch"), int) for row in rows):
        raise UsageError(f"'{file}' has a line that is not one epoch's figures")
    return rows


def write_metrics(run: Path, rows: list[dict]) -> None:
    from gentool.files import atomic_write

    atomic_write(Path(run) / METRICS, "".join(json.dumps(r) + "\n" for r in rows).encode())


def _last_metrics(run: Path) -> dict:
    try:
        return (read_metrics(run) or [{}])[-1]
    except UsageError:
        return {}


def listing(model: str | None = None) -> list[dict]:
    """Every run under ROOT (of `model` only, if given), newest first: its directory, model, data,
    epochs done and asked for, the last epoch's test loss and quick FID, its graphs and when it last changed."""
    found = []
    for run in ROOT.glob("*") if ROOT.is_dir() else []:
        meta = checkpoint_meta(run / "model.safetensors") if run.is_dir() else None
        if meta is None or (model and meta.get("model") != model):
            continue
        last, modified = _last_metrics(run), run.stat().st_mtime
        found.append((modified, {
            "run": str(run), "model": meta.get("model"), "data": meta.get("data"),
            "epoch": meta.get("epoch"), "epochs": meta.get("train", {}).get("epochs"),
            "test_loss": last.get("test_loss"), "fid_1k": last.get("fid_1k"),
            "graphs": sorted(p.stem for p in run.glob("*.onnx")),
            "modified": time.strftime("%Y-%m-%d %H:%M", time.localtime(modified)),
        }))
    return [row for _, row in sorted(found, key=lambda pair: -pair[0])]


COLUMNS = ("run", "model", "data", "epochs", "test loss", "fid_1k", "graphs", "modified")


def cells(row: dict) -> list[str]:
    """A `listing` row as the text of the table's COLUMNS."""
    return [row["run"], row["model"], str(row["data"]), f"{row['epoch']}/{row['epochs']}",
            *(f"{row[k]:.4g}" if row[k] is not None else "" for k in ("test_loss", "fid_1k")),
            ", ".join(row["graphs"]) or "none", row["modified"]]


def evaluates_samples(path: Path) -> bool:
    """Whether `evaluate` reports the quality of samples for `path`: an export (no checkpoint), or
    the checkpoint (or run directory) of a family whose evaluation is that, read from the
    torch-free catalog, so that nothing is loaded twice."""
    from gentool import zoo

    weights = path if path.suffix == ".safetensors" else path / "model.safetensors"
    if not weights.is_file():
        return True
    meta = checkpoint_meta(weights) or {}
    return zoo.catalog().get(meta.get("model"), {}).get("evaluation") == "samples"
