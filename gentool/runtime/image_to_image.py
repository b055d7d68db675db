"""The image-to-image roles: `denoiser` (x -> x) and `upscaler` (x -> x `factor` times larger).

Both graphs are fully convolutional, so they take images of any size: sides are padded by
reflection to the graph's `size_multiple` (what its stride-2 layers need) and the output cropped
back; a grayscale model takes each channel of a colour image on its own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gentool import metrics
from gentool.errors import UsageError
from gentool.runtime.artifact import Graphs

VERBS = {"denoise": [("denoiser",)], "upscale": [("upscaler",)], "score": [("denoiser",)]}

# Models trained by this project on MNIST + Fashion-MNIST, shipped as package data (the README says
# how each is built): a dae, and sr models by factor.
ASSETS = Path(__file__).resolve().parents[1] / "assets"
BUNDLED_DENOISER = ASSETS / "denoiser.onnx"
BUNDLED_UPSCALERS = {2: ASSETS / "upscaler-x2.onnx"}


def bundled_denoiser() -> Path:
    if not BUNDLED_DENOISER.is_file():
        raise UsageError(f"this gentool has no bundled denoiser ({BUNDLED_DENOISER} is missing): pass --model with a dae run or .onnx")
    return BUNDLED_DENOISER


def bundled_upscaler(factor: int) -> Path:
    path = BUNDLED_UPSCALERS.get(factor)
    if path is None or not path.is_file():
        have = ", ".join(str(f) for f, p in BUNDLED_UPSCALERS.items() if p.is_file()) or "none"
        raise UsageError(f"this gentool has no bundled upscaler for --factor {factor} (bundled: {have}): pass --model with an sr run or .onnx")
    return path


def _any_size(graphs: Graphs, role: str, image: np.ndarray, factor: int = 1) -> np.ndarray:
    """One (C, H, W) image of any size through the role's graph, which scales sides by `factor`."""
    c, h, w = image.shape
    batch = image[:, None] if graphs.image_shape[0] == 1 else image[None]
    m = int(graphs.meta.get("size_multiple", 1))
    padded = np.pad(batch, ((0, 0), (0, 0), (0, -h % m), (0, -w % m)), mode="reflect")
    (out,) = graphs.run(role, {"x": padded}).values()
    if out.shape[2:] != (padded.shape[2] * factor, padded.shape[3] * factor):
        raise UsageError(f"the {role} graph made {padded.shape[2]}x{padded.shape[3]} into {out.shape[2]}x{out.shape[3]}, "
                         f"not {factor} times larger as its metadata says")
    return out[:, :, : h * factor, : w * factor].reshape(c, h * factor, w * factor)


def denoise(graphs: Graphs, image: np.ndarray) -> np.ndarray:
    """One (C, H, W) image of any size, denoised."""
    return _any_size(graphs, "denoiser", image)


def upscale(graphs: Graphs, image: np.ndarray, factor: int | None = None) -> np.ndarray:
    """One (C, H, W) image of any size, `factor` times larger (the model's own factor; another is an error)."""
    own = int(graphs.need("factor", "upscale"))
    if factor not in (None, own):
        raise UsageError(f"this sr model upscales by {own}, not {factor}: train one with `gentool train sr --factor {factor}`")
    return _any_size(graphs, "upscaler", image, own)


def score(graphs: Graphs, images: np.ndarray, seed: int | None = None, samples: int = 1) -> tuple[np.ndarray, str]:
    """`reconstruction_mse`: the per-image mean squared error between an image and the denoiser's output."""
    x = np.asarray(images, np.float32)
    (denoised,) = graphs.run("denoiser", {"x": x}).values()
    return metrics.mse(x, denoised), "reconstruction_mse"
