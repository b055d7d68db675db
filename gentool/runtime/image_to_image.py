"""The image-to-image roles: `denoiser` (x -> x) and `upscaler` (x -> x `factor` times larger).

Both graphs are fully convolutional, so they take images of any size: sides are padded by
reflection to the graph's `size_multiple` (what its stride-2 layers need) and the output cropped
back; a grayscale model takes each channel of a colour image on its own. Large images go through
in overlapping tiles, with the same result as one pass.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from gentool import metrics
from gentool.errors import UsageError
from gentool.runtime import ASSETS
from gentool.runtime.artifact import Graphs
from gentool.runtime.declaration import Role, Sampler, Tensor, Verb, positive_int

# Trained by this project on MNIST + Fashion-MNIST: a blind dae (an export directory: its denoiser
# and level estimator graphs), and sr models by factor.
BUNDLED_DENOISER = ASSETS / "denoiser"
BUNDLED_UPSCALERS = {2: ASSETS / "upscaler-x2.onnx"}

# Images are processed in tiles of this many pixels a side (plus the graph's halo), so memory stays
# that of one tile whatever the image's size.
TILE = 512


def bundled_denoiser() -> Path:
    if not (BUNDLED_DENOISER / "denoiser.onnx").is_file():
        raise UsageError(f"this gentool has no bundled denoiser ({BUNDLED_DENOISER} is missing): pass --model with a dae run or .onnx")
    return BUNDLED_DENOISER


def bundled_upscaler(factor: int) -> Path:
    path = BUNDLED_UPSCALERS.get(factor)
    if path is None or not path.is_file():
        have = ", ".join(str(f) for f, p in BUNDLED_UPSCALERS.items() if p.is_file()) or "none"
        raise UsageError(f"this gentool has no bundled upscaler for --factor {factor} (bundled: {have}): pass --model with an sr run or .onnx")
    return path


def _tiles(size: int, tile: int, halo: int) -> list[tuple[int, int, int, int]]:
    """(core start, core end, context start, context end) of each tile along one side."""
    return [(a, min(a + tile, size), max(a - halo, 0), min(a + tile + halo, size)) for a in range(0, size, tile)]


def _tiled(graphs: Graphs, role: str, x: np.ndarray, extra: dict, tile: int) -> np.ndarray:
    """The role's graph over x (N,C,H,W; sides multiples of `size_multiple`) one tile at a time,
    each with `halo` pixels of context around its core, the cores' outputs put together.

    The halo covers what an output pixel sees and the tiles start at multiples of the stride, so
    this equals one pass over the whole image (to float rounding) in a tile's memory. An export
    without `halo` runs in one pass. The output may be larger or smaller than the input (an
    upscaler's, the level map); the scale is read from the first tile and held to by the rest.
    """
    m = int(graphs.meta.get("size_multiple", 1))
    n, _, h, w = x.shape
    halo = graphs.meta.get("halo")
    tile, halo = (-(-tile // m) * m, -(-halo // m) * m) if halo is not None else (max(h, w), 0)
    out, scale = None, None
    for y0, y1, cy0, cy1 in _tiles(h, tile, halo):
        for x0, x1, cx0, cx1 in _tiles(w, tile, halo):
            (part,) = graphs.run(role, {"x": x[:, :, cy0:cy1, cx0:cx1], **extra}).values()
            if out is None:
                scale = Fraction(part.shape[2], cy1 - cy0)
                out = np.empty((n, part.shape[1], int(h * scale), int(w * scale)), part.dtype)
            if part.shape[2:] != ((cy1 - cy0) * scale, (cx1 - cx0) * scale):
                raise UsageError(f"the {role} graph's output size does not follow its input's ({cy1 - cy0}x{cx1 - cx0} gave {part.shape[2]}x{part.shape[3]})")
            out[:, :, int(y0 * scale) : int(y1 * scale), int(x0 * scale) : int(x1 * scale)] = part[
                :, :, int((y0 - cy0) * scale) : int((y1 - cy0) * scale), int((x0 - cx0) * scale) : int((x1 - cx0) * scale)]
    return out


def _padded(graphs: Graphs, x: np.ndarray) -> np.ndarray:
    """x (N,C,H,W) with its sides padded by reflection to the graph's `size_multiple`."""
    m = int(graphs.meta.get("size_multiple", 1))
    return np.pad(x, ((0, 0), (0, 0), (0, -x.shape[2] % m), (0, -x.shape[3] % m)), mode="reflect")


def _rows(graphs: Graphs, image: np.ndarray) -> np.ndarray:
    """One (C, H, W) image as the batch a model takes: a grayscale model takes each channel alone."""
    return image[:, None] if graphs.image_shape[0] == 1 else image[None]


def denoise_batch(graphs: Graphs, x: np.ndarray, tile: int = TILE) -> np.ndarray:
    """Images (N,C,H,W) of any size, denoised. A denoiser that takes the noise `level` gets the
    `level_estimator`'s estimate for each whole image: softplus of the mean of its logits map."""
    padded = _padded(graphs, np.asarray(x, np.float32))
    extra = {}
    if "level" in graphs.input_names("denoiser"):
        logits = _tiled(graphs, "level_estimator", padded, {}, tile)
        extra["level"] = np.logaddexp(0, logits.mean((2, 3), keepdims=True, dtype=np.float64)).astype(np.float32)
    return _tiled(graphs, "denoiser", padded, extra, tile)[:, :, : x.shape[2], : x.shape[3]]


def denoise(graphs: Graphs, image: np.ndarray, tile: int = TILE) -> np.ndarray:
    """One (C, H, W) image of any size, denoised."""
    return denoise_batch(graphs, _rows(graphs, image), tile).reshape(image.shape)


def upscale(graphs: Graphs, image: np.ndarray, factor: int | None = None, tile: int = TILE) -> np.ndarray:
    """One (C, H, W) image of any size, `factor` times larger (the model's own factor; another is an error)."""
    own = int(graphs.need("factor", "upscale"))
    if factor not in (None, own):
        raise UsageError(f"this sr model upscales by {own}, not {factor}: train one with `gentool train sr --factor {factor}`")
    c, h, w = image.shape
    padded = _padded(graphs, _rows(graphs, image))
    out = _tiled(graphs, "upscaler", padded, {}, tile)
    if out.shape[2:] != (padded.shape[2] * own, padded.shape[3] * own):
        raise UsageError(f"the upscaler graph made {padded.shape[2]}x{padded.shape[3]} into {out.shape[2]}x{out.shape[3]}, "
                         f"not {own} times larger as its metadata says")
    return out[:, :, : h * own, : w * own].reshape(c, h * own, w * own)


def score(graphs: Graphs, images: np.ndarray, seed: int | None = None) -> tuple[np.ndarray, str]:
    """`reconstruction_mse`: the per-image mean squared error between an image and the denoiser's output."""
    x = np.asarray(images, np.float32)
    return metrics.mse(x, denoise_batch(graphs, x)), "reconstruction_mse"


_ANY_SIZE = Tensor("x", "N C h w")
SAMPLER = Sampler(
    name="image-to-image",
    roles={
        "denoiser": Role(inputs=(_ANY_SIZE, Tensor("level", "N 1 1 1", optional=True)), outputs=((Tensor("*", "N C h w"),),)),
        "level_estimator": Role(inputs=(_ANY_SIZE,), outputs=((Tensor("*", "N 1 h w"),),)),
        "upscaler": Role(inputs=(_ANY_SIZE,), outputs=((Tensor("*", "N C h w"),),)),
    },
    verbs={"denoise": Verb(denoise, (("denoiser",),)), "upscale": Verb(upscale, (("upscaler",),)), "score": Verb(score, (("denoiser",),))},
    metadata={
        "size_multiple": lambda v, meta: positive_int(v, 64),
        "factor": lambda v, meta: positive_int(v, 16),
        "halo": lambda v, meta: v == 0 or positive_int(v, 1024),
    },
)
