"""Self-describing checkpoints: safetensors weights whose metadata rebuilds the model.

The metadata holds one key, `gentool`, a JSON string (safetensors metadata values must be strings)
with the model name, every hyperparameter, image shape, data name and pixel stats, epoch, seed and
versions. `resume.pt` holds what `--resume` needs: the same weights and metadata, and the optimizer
and RNG state (see `save` for why the weights are in both).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from gentool import data as datasets
from gentool.errors import UsageError
from gentool.files import atomic_path

WEIGHTS = "model.safetensors"
RESUME = "resume.pt"


def versions() -> dict[str, str]:
    import gentool

    return {"gentool": gentool.__version__, "torch": torch.__version__}


def save(run_dir: Path, model: torch.nn.Module, meta: dict, resume_state: dict | None = None) -> None:
    """Write the weights and, for a training, the resume state.

    The resume state carries the weights and metadata as well and is written first, so whenever the
    process dies `resume.pt` is one complete checkpoint, the new or the previous one (and
    `model.safetensors` too, the previous one until its own rename): `--resume` is exact.
    """
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    text = json.dumps({**meta, "versions": versions()})
    if resume_state is not None:
        with atomic_path(Path(run_dir) / RESUME) as tmp:
            torch.save({**resume_state, "model": tensors, "meta": text}, tmp)
    with atomic_path(Path(run_dir) / WEIGHTS) as tmp:
        save_file(tensors, str(tmp), metadata={"gentool": text})


def weights_path(path: Path) -> Path:
    """A run directory or a `.safetensors` file -> the weights file (checked to exist)."""
    path = Path(path)
    file = path / WEIGHTS if path.is_dir() else path
    if not file.is_file():
        raise UsageError(f"no checkpoint at '{path}' (expected a run directory with {WEIGHTS} or a .safetensors file)")
    return file


def read_meta(path: Path) -> dict:
    from safetensors import safe_open

    file = weights_path(path)
    try:
        with safe_open(str(file), framework="pt") as f:
            raw = (f.metadata() or {}).get("gentool")
    except Exception as e:  # safetensors raises its own error types for corrupt or truncated files
        raise UsageError(f"'{file}' is not a readable checkpoint ({str(e).splitlines()[0]})") from None
    if not raw:
        raise UsageError(f"'{file}' has no gentool metadata; it was not written by gentool")
    try:
        meta = json.loads(raw)
    except ValueError:
        meta = None
    if not isinstance(meta, dict) or not {"model", "image_shape", "hparams"} <= meta.keys():
        raise UsageError(f"'{file}' has garbled gentool metadata (not the JSON object gentool writes)")
    return current(meta)


def current(meta: dict) -> dict:
    """Metadata in today's form: `classes` is the class names (older checkpoints kept their count
    there and the names in `class_names`)."""
    if "class_names" in meta:
        meta = {**{k: v for k, v in meta.items() if k != "class_names"}, "classes": meta["class_names"]}
    return meta


def _build(meta: dict, tensors: dict, source, device):
    """The model the metadata describes, with these weights, in eval mode."""
    from gentool import zoo

    try:
        classes = meta.get("classes")
        model = zoo.get(meta["model"])(tuple(meta["image_shape"]), meta["hparams"], len(classes) if classes else None)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise UsageError(f"'{source}': its metadata does not describe a model gentool can build ({type(e).__name__}: {e})") from None
    try:
        model.load_state_dict(tensors)
    except Exception as e:
        raise UsageError(f"'{source}': weights do not match the model in its metadata ({str(e).splitlines()[0]})") from None
    return model.to(device).eval()


def load(path: Path, device: str | torch.device = "cpu"):
    """Rebuild the model from a checkpoint alone; returns (model in eval mode, metadata)."""
    from safetensors.torch import load_file

    meta = read_meta(path)
    return _build(meta, load_file(str(weights_path(path))), path, device), meta


def data_size(meta: dict) -> tuple[int, int] | None:
    """The (H, W) a run resizes its images to as they load (`train --size`), or None."""
    size = meta["train"].get("size")
    return tuple(size) if size else None


def load_with_split(path: Path, data: str | None, split: str, limit: int | None, device="cpu"):
    """(model, metadata, dataset): a checkpoint and a split of `data` (default: the run's own data,
    resized as the run's were), checked to have the model's image shape."""
    model, meta = load(path, device)
    dataset = datasets.load(data or meta["data"], split, limit, data_size(meta))
    return model, meta, datasets.check_shape(dataset, meta["image_shape"], split)


def load_resume(run_dir: Path):
    """(model, metadata, resume state) of the last complete training checkpoint of a run."""
    file = Path(run_dir) / RESUME
    if not file.is_file():
        raise UsageError(f"cannot resume '{run_dir}': {RESUME} is missing" if (Path(run_dir) / WEIGHTS).is_file()
                         else f"no checkpoint at '{run_dir}' (expected a run directory with {RESUME})")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UsageError(f"cannot resume '{run_dir}': {RESUME} is unreadable ({str(e).splitlines()[0]})") from None
    if "model" not in state:
        raise UsageError(f"cannot resume '{run_dir}': its {RESUME} was written by an older gentool, without the weights")
    meta = current(json.loads(state.pop("meta")))
    return _build(meta, state.pop("model"), run_dir, "cpu"), meta, state
