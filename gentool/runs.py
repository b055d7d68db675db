"""Where runs live (`runs/<model>-<data>`), what they hold (`gentool runs`), and how a bare model name
finds its newest run. Torch-free: a checkpoint's metadata is read from its safetensors JSON header."""

from __future__ import annotations

import glob
import json
import math
import os
import socket
import struct
import sys
import time
from pathlib import Path

from gentool.errors import UsageError

ROOT = Path("runs")
CLAIM = ".gentool-run"  # created exclusively in a run directory by the training writing it: "PID HOST"


def new_run_dir(model: str, data_name: str) -> Path:
    """`runs/<model>-<data>`, or the first free `-2`, `-3`, ... suffix."""
    base = ROOT / f"{model}-{data_name}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def _holder(claim: str) -> tuple[str, str]:
    """A claim file's text, "PID HOST", as its two parts (either may be empty)."""
    pid, _, host = claim.strip().partition(" ")
    return pid, host


def claimant(path: Path) -> int | None:
    """The process that holds the claim on run directory `path`, or None when there is no claim or
    its process is gone (killed before it could give the claim up: a stale claim). A claim from
    another host, or one so new that its writer has not filled it in yet, counts as held."""
    file = path / CLAIM
    try:
        text, age = file.read_text(), time.time() - file.stat().st_mtime
    except FileNotFoundError:
        return None
    except OSError:
        return -1
    pid, host = _holder(text)
    if not pid.isdigit():
        return -1 if age < 10 else None
    if host and host != socket.gethostname():
        return int(pid)
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return None
    except OSError:  # alive, another user's
        pass
    return int(pid)


def _claim_in(path: Path) -> bool:
    """Create the claim file in `path` (exclusively); False if a live training holds it. A stale
    claim is taken over, with a note: moved aside first, so that of two takers one wins."""
    for _ in range(3):
        try:
            fd = os.open(path / CLAIM, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            if claimant(path) is not None:
                return False
            aside = path / f"{CLAIM}.stale-{os.getpid()}"
            try:
                os.rename(path / CLAIM, aside)
            except FileNotFoundError:  # another process took it over first
                continue
            stale = _holder(aside.read_text())[0] or "?"
            aside.unlink()
            print(f"note: '{path}' was claimed by process {stale}, which is gone: taking it over", file=sys.stderr, flush=True)
            continue
        except OSError as exc:
            raise UsageError(f"cannot write '{path}': {exc.strerror or exc}") from None
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        os.close(fd)
        return True
    return False


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
        taken = any(p.name != CLAIM for p in out.iterdir())
    except OSError as exc:
        raise UsageError(f"cannot write '{out}': {exc.strerror or exc}") from None
    if taken or not _claim_in(out):
        raise UsageError(f"'{out}' already exists and is not empty (or another training is writing it); choose another --out or use --resume")
    return out


def hold(path: Path) -> None:
    """Claim an existing run directory for `--resume`: a usage error while a live training holds it."""
    if not _claim_in(path):
        raise UsageError(f"'{path}' is being trained by process {claimant(path)}; wait for it, or stop it "
                         f"(if no such training runs, remove '{path / CLAIM}')")


def release(path: Path | None) -> None:
    """Give up this process's claim on a run directory (a training's last step, however it ends),
    so that it can be resumed, or trained into again if nothing was written."""
    file = None if path is None else path / CLAIM
    try:
        if file is not None and _holder(file.read_text())[0] == str(os.getpid()):
            file.unlink()
    except OSError:
        pass


def resolve(spec: str, holding: str, what: str) -> Path:
    """`spec` as a path when it exists, else a bare model name's newest run (`newest`)."""
    path = Path(spec)
    return path if path.exists() else newest(spec, holding, what)


def newest(name: str, holding: str, what: str) -> Path:
    """The most recently modified run of model `name` that holds a file matching `holding`; which
    one it took is said on stderr, so that a quick smoke run is never used unnoticed."""
    candidates = [] if "/" in name else [p for p in ROOT.glob(f"{glob.escape(name)}-*") if p.is_dir() and any(p.glob(holding))]
    if not candidates:
        raise UsageError(f"'{name}' is not a file or directory, and no run of a model '{name}' with {what} is in {ROOT}/")
    found = max(candidates, key=lambda p: p.stat().st_mtime)
    others = f", the newest of {len(candidates)} (`gentool runs {name}` lists them)" if len(candidates) > 1 else ""
    print(f"note: '{name}' is {found}{_trained(found)}{others}", file=sys.stderr, flush=True)
    return found


def _trained(run: Path) -> str:
    """' (3 epochs)', or ' (3 of 10 epochs)' for a run that stopped early; '' without a checkpoint."""
    meta = checkpoint_meta(run / "model.safetensors") or {}
    done, asked = _count(meta.get("epoch")), _count(_train(meta).get("epochs"))
    if done is None:
        return ""
    return f" ({done} of {asked} epochs)" if asked and done < asked else f" ({done} epoch{'s' * (done != 1)})"


def _count(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else None


def _train(meta: dict) -> dict:
    return meta["train"] if isinstance(meta.get("train"), dict) else {}


def checkpoint_meta(file: Path) -> dict | None:
    """The gentool metadata of a safetensors checkpoint, from its JSON header; None if it has none
    (or is not a regular file: a FIFO would block the read)."""
    try:
        if not file.is_file():
            return None
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
    from gentool.console import to_json
    from gentool.files import atomic_write

    atomic_write(Path(run) / METRICS, "".join(to_json(r) + "\n" for r in rows).encode())


def _last_metrics(run: Path) -> dict:
    """The last line of a run's metrics.jsonl that is an object, for listings: any other line, or
    a file that is not regular or not there, is passed over."""
    file = Path(run) / METRICS
    last = {}
    try:
        lines = file.read_text().splitlines() if file.is_file() else []
    except (OSError, UnicodeDecodeError):
        return last
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            last = row
    return last


def listing(model: str | None = None) -> list[dict]:
    """Every run under ROOT (of `model` only, if given), newest first: its directory, model, data,
    epochs done and asked for, the last epoch's test loss and quick FID, its graphs and when it last changed."""
    found = []
    for run in ROOT.glob("*") if ROOT.is_dir() else []:
        try:
            row = _listed(run)
        except OSError as exc:  # removed or unreadable while being listed
            row = {"run": str(run), "broken": f"cannot read it: {exc.strerror or exc}", "modified": 0.0}
        if row is not None and (not model or row.get("model") == model or (row.get("broken") and run.name.startswith(f"{model}-"))):
            found.append(row)
    found.sort(key=lambda row: -row["modified"])
    for row in found:
        row["modified"] = time.strftime("%Y-%m-%d %H:%M", time.localtime(row["modified"])) if row["modified"] else ""
    return found


def _listed(run: Path) -> dict | None:
    """One run's `listing` row; a directory with a checkpoint whose metadata cannot be read is
    listed as broken (with why); one without a checkpoint is not a run (yet)."""
    weights = run / "model.safetensors"
    if not run.is_dir() or not (weights.exists() or weights.is_symlink()):
        return None
    meta, last = checkpoint_meta(weights), _last_metrics(run)
    row = {"run": str(run), "model": None, "data": None, "epoch": None, "epochs": None, "test_loss": None, "fid_1k": None,
           "graphs": sorted(p.stem for p in run.glob("*.onnx")), "modified": run.stat().st_mtime}
    if meta is None:
        why = "model.safetensors is not a regular file" if not weights.is_file() else "model.safetensors has no readable gentool metadata"
        return {**row, "broken": why}
    return {**row, "model": str(meta.get("model")), "data": str(meta.get("data")), "epoch": _count(meta.get("epoch")),
            "epochs": _count(_train(meta).get("epochs")), "test_loss": _number(last.get("test_loss")), "fid_1k": _number(last.get("fid_1k"))}


COLUMNS = ("run", "model", "data", "epochs", "test loss", "fid_1k", "graphs", "modified")


def cells(row: dict) -> list[str]:
    """A `listing` row as the text of the table's COLUMNS."""
    if row.get("broken"):
        return [row["run"], f"broken: {row['broken']}", "", "", "", "", ", ".join(row.get("graphs", [])) or "none", row["modified"]]
    return [row["run"], row["model"], str(row["data"]), f"{row['epoch'] or '?'}/{row['epochs'] or '?'}",
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
