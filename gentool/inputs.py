"""The images a verb reads, in the form its model takes, with one note on stderr per conversion.
Torch-free; numpy and the image readers load on first use, so importing the CLI stays quick."""

from __future__ import annotations

from gentool import console


def batch(graphs, paths: list[str]):
    """Image files (or '-') as one batch in [0, 1] of the model's image shape."""
    from gentool import images

    c, h, w = graphs.image_shape
    x, found = images.read_images(paths, c, (h, w))
    console.notes(found)
    return x


def any_size(graphs, path: str):
    """One image at its own size; a grayscale model keeps a colour image's channels (taken one by one)."""
    from gentool import images

    c = graphs.image_shape[0]
    x, found = images.read_image(path, None if c == 1 else c)
    console.notes(found)
    return x


def kept_region(graphs, mask: str | None, keep: str | None):
    """Where `complete` keeps its inputs, (1, 1, H, W) bool: the black pixels of a mask image (read
    at the model's size), or one half of the image (`top`, `bottom`, `left`, `right`)."""
    import numpy as np

    from gentool import images
    from gentool.errors import UsageError

    if (mask is None) == (keep is None):
        raise UsageError("say what to keep: --mask MASK.png (white is drawn, black kept) or --keep top|bottom|left|right")
    _, h, w = graphs.image_shape
    if keep is not None:
        rows, cols = np.arange(h)[:, None], np.arange(w)[None, :]
        half = {"top": rows < h // 2, "bottom": rows >= h - h // 2, "left": cols < w // 2, "right": cols >= w - w // 2}[keep]
        return np.broadcast_to(half, (h, w))[None, None]
    region, found = images.read_images([mask], 1, (h, w))
    console.notes(found)
    kept = region < 0.5
    if kept.all():
        raise UsageError(f"the mask '{mask}' is all black: it leaves nothing to draw (white is drawn, black kept)")
    return kept


def conformed(dataset, shape):
    """A dataset's uint8 images in the channels and size a network takes."""
    from gentool import images

    converted, found = images.conform(dataset.images, shape, dataset.name)
    console.notes(found)
    return converted


def image_set(graphs, spec: str):
    """One image file, or a set (a folder, .npy/.npz, a dataset split), in [0, 1] of the model's shape."""
    from pathlib import Path

    import numpy as np

    from gentool import data, images

    if Path(spec).suffix.lower() in images.FORMATS:
        return batch(graphs, [spec])
    return conformed(data.image_set(spec), graphs.image_shape) / np.float32(255)
