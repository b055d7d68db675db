"""Self-describing checkpoints: safetensors weights whose metadata rebuilds the model.

The metadata holds one key, `gentool`, a JSON string (safetensors metadata values must be strings)
with the model name, every hyperparameter, image shape, data name and pixel stats, epoch, seed and
versions. Optimizer and RNG state for `--resume` live beside it in `resume.pt`.
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
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(run_dir / WEIGHTS) as tmp:
        save_file(tensors, str(tmp), metadata={"gentool": json.dumps({**meta, "versions": versions()})})
    if resume_state is not None:
        with atomic_path(run_dir / RESUME) as tmp:
            torch.save(resume_state, tmp)


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
    return json.loads(raw)


def load(path: Path, device: str | torch.device = "cpu"):
    """Rebuild the model from a checkpoint alone; returns (model in eval mode, metadata)."""
    from safetensors.torch import load_file

    from gentool import zoo

    meta = read_meta(path)
    model = zoo.get(meta["model"])(tuple(meta["image_shape"]), meta["hparams"], meta.get("classes"))
    try:
        model.load_state_dict(load_file(str(weights_path(path))))
    except Exception as e:
        raise UsageError(f"'{path}': weights do not match the model in its metadata ({str(e).splitlines()[0]})") from None
    return model.to(device).eval(), meta


def load_with_split(path: Path, data: str | None, split: str, limit: int | None, device="cpu"):
    """(model, metadata, dataset): a checkpoint and a split of `data` (default: the run's own data),
    checked to have the model's image shape."""
    model, meta = load(path, device)
    dataset = datasets.load(data or meta["data"], split, limit)
    return model, meta, datasets.check_shape(dataset, meta["image_shape"])


def load_resume_state(run_dir: Path) -> dict:
    file = Path(run_dir) / RESUME
    if not file.is_file():
        raise UsageError(f"cannot resume '{run_dir}': {RESUME} is missing")
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UsageError(f"cannot resume '{run_dir}': {RESUME} is unreadable ({str(e).splitlines()[0]})") from None
