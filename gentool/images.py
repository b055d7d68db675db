"""Torch-free image I/O: read and write PNG/JPEG (paths or '-'), grids, value ranges.

Images inside gentool are float32 arrays (N, C, H, W) or (C, H, W) with values in [0, 1].

Reading converts whatever PIL opens, and reports each lossy or shape-changing conversion as a note:
- 16-bit grayscale (PIL modes I;16*, I) is scaled by its bit depth (divided by 65535), keeping its
  precision, instead of being clipped to 8 bits as PIL's own conversion would do;
- palette images are expanded to RGB (RGBA when they carry transparency);
- alpha is composited onto black, since gentool's datasets are light-on-dark;
- RGB becomes grayscale with the ITU-R 601-2 luma (PIL's "L" conversion) when one channel is asked;
- grayscale becomes RGB by repeating the channel when three are asked;
- an image whose size differs from the requested (H, W) is resized with a Lanczos filter.
Writing takes one image (a grid of several) to a file or stdout, or each image to its own PNG in a
folder. Sizes in notes are written width x height, as image viewers show them.
"""

import io
import json
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from gentool import files
from gentool.errors import UsageError

_GRAY_BANDS = ("1", "L", "I", "F")
FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}


def read_image(
    src: str, channels: int | None, size: tuple[int, int] | None = None
) -> tuple[np.ndarray, list[str]]:
    """Read one image from a path or '-' as float32 (C, H, W) in [0, 1], plus notes.

    `channels` is 1 or 3; None keeps the image's own kind (1 for grayscale, 3 otherwise).
    """
    from PIL import Image

    if channels not in (None, 1, 3):
        raise UsageError(f"images must have 1 or 3 channels, not {channels}")
    name = files.display_name(src)
    data = files.read_input(src)
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise UsageError(f"cannot read image '{name}': not a readable PNG/JPEG image") from None

    notes = []
    gray = img.getbands()[0] in _GRAY_BANDS
    if img.mode.startswith("I"):
        img = Image.fromarray(np.asarray(img, np.float32) / 65535)
    else:
        if img.has_transparency_data:
            img = img.convert("RGBA")
            if img.getextrema()[3][0] < 255:
                notes.append(f"{name}: alpha composited onto black")
            img = Image.alpha_composite(Image.new("RGBA", img.size, (0, 0, 0, 255)), img)
        img = img.convert("L" if gray else "RGB")
    if channels == 1 and not gray:
        img = img.convert("L")
        notes.append(f"{name}: RGB converted to grayscale")
    if size is not None and img.size != (size[1], size[0]):
        notes.append(f"{name}: resized {img.width}x{img.height} -> {size[1]}x{size[0]}")
        img = img.resize((size[1], size[0]), Image.Resampling.LANCZOS)

    array = np.asarray(img, np.float32)
    array = np.clip(array, 0, 1) if img.mode == "F" else array / 255
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    if channels == 3 and gray:
        array = np.repeat(array, 3, axis=0)
        notes.append(f"{name}: grayscale repeated to RGB")
    return np.ascontiguousarray(array), notes


def read_images(
    srcs: list[str], channels: int | None, size: tuple[int, int] | None = None
) -> tuple[np.ndarray, list[str]]:
    """Read several images as one (N, C, H, W) batch.

    With no `size` (or `channels`), all images take the first image's size (or channel count).
    """
    if not srcs:
        raise UsageError("no input images")
    if srcs.count("-") > 1:
        raise UsageError("stdin ('-') can be read only once")
    images, notes = [], []
    for src in srcs:
        image, image_notes = read_image(src, channels, size)
        size = size or image.shape[1:]
        channels = channels or image.shape[0]
        images.append(image)
        notes += image_notes
    return np.stack(images), notes


def conform(batch: np.ndarray, shape, name: str) -> tuple[np.ndarray, list[str]]:
    """A uint8 batch (N, C, H, W) in the channels and size of `shape` (C, H, W), converted as
    `read_image` converts one image (luma for grayscale, repeated gray for RGB, Lanczos to resize),
    with a note per kind of conversion made."""
    from PIL import Image

    c, h, w = shape
    n, c0, h0, w0 = batch.shape
    notes = []
    if c0 != c:
        notes.append(f"{name}: {'RGB converted to grayscale' if c == 1 else 'grayscale repeated to RGB'}")
    if (h0, w0) != (h, w):
        notes.append(f"{name}: resized {w0}x{h0} -> {w}x{h}")
    if c0 == 1 and c == 3:
        batch = np.repeat(batch, 3, axis=1)
    if c0 <= c and (h0, w0) == (h, w):  # no luma and no resize: nothing for PIL to do
        return batch, notes
    out = np.empty((n, c, h, w), np.uint8)
    for i, image in enumerate(batch):
        picture = Image.fromarray(image[0] if len(image) == 1 else image.transpose(1, 2, 0))
        if c == 1:
            picture = picture.convert("L")
        if (h0, w0) != (h, w):
            picture = picture.resize((w, h), Image.Resampling.LANCZOS)
        pixels = np.asarray(picture)
        out[i] = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    return out, notes


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float values in [0, 1] to uint8, rounding and clipping."""
    return np.clip(np.rint(np.asarray(image, np.float32) * 255), 0, 255).astype(np.uint8)


def _pixels(image: np.ndarray) -> np.ndarray:
    pixels = image if image.dtype == np.uint8 else to_uint8(image)
    if pixels.ndim != 3 or pixels.shape[0] not in (1, 3):
        raise ValueError(f"expected a (C, H, W) image with 1 or 3 channels, got {image.shape}")
    return pixels


def encode_png(image: np.ndarray, text: dict[str, str] | None = None) -> bytes:
    """PNG bytes of a (C, H, W) image, float in [0, 1] or uint8, with a tEXt chunk per `text` item
    (keyword: value, both Latin-1).

    Written with zlib rather than PIL: importing PIL's image plugins costs more than the rest of a
    `gentool sample` cold start's own work.
    """
    pixels = _pixels(image)
    c, h, w = pixels.shape
    rows = pixels.transpose(1, 2, 0).reshape(h, w * c)
    scanlines = np.hstack([np.zeros((h, 1), np.uint8), rows]).tobytes()  # filter type 0 on each row

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", w, h, 8, 0 if c == 1 else 2, 0, 0, 0)
    notes = b"".join(chunk(b"tEXt", f"{k}\0{v}".encode("latin-1", "replace")) for k, v in (text or {}).items())
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + notes + chunk(b"IDAT", zlib.compress(scanlines, 6))
            + chunk(b"IEND", b""))


def _encode_jpeg(image: np.ndarray, text: dict[str, str] | None = None) -> bytes:
    """JPEG bytes, with `text`'s `gentool` value as its comment."""
    from PIL import Image

    pixels = _pixels(image)
    buffer = io.BytesIO()
    Image.fromarray(pixels[0] if len(pixels) == 1 else pixels.transpose(1, 2, 0).copy()).save(
        buffer, "JPEG", quality=95, comment=(text or {}).get("gentool", "").encode("latin-1", "replace"))
    return buffer.getvalue()


def made_by(verb: str, **fields) -> dict[str, str]:
    """The PNG text of an image gentool made: `Software`, and `gentool`, a JSON object with the
    version, the verb and `fields` (what it needs to be made again)."""
    from gentool import __version__

    made = {"version": __version__, "verb": verb, **fields}
    return {"Software": f"gentool {__version__}", "gentool": json.dumps(made, default=str)}


def write_image(image: np.ndarray, dest: str | None, text: dict[str, str] | None = None) -> None:
    """Write a (C, H, W) image to `dest` (.png, .jpg, .jpeg; PNG to a device or FIFO without a
    suffix), or as PNG to stdout for None, '-' or /dev/stdout; a PNG carries
    `text` as tEXt chunks, a JPEG as its comment."""
    if dest is None or dest in files.STDOUT_PATHS:
        files.write_stdout(encode_png(image, text))
        return
    suffix = Path(dest).suffix.lower()
    if suffix not in FORMATS and not (files.is_special(Path(dest)) and not suffix):
        raise UsageError(f"unsupported output format '{suffix or dest}' (use .png or .jpg)")
    files.atomic_write(dest, _encode_jpeg(image, text) if FORMATS.get(suffix) == "JPEG" else encode_png(image, text))


def is_folder(dest: str | None) -> bool:
    """Whether an output names a folder (one file per image): an existing directory, or a path
    ending in '/'."""
    return dest is not None and (dest.endswith(("/", os.sep)) or Path(dest).is_dir())


def write_folder(batch: np.ndarray, folder: str, text_of) -> list[Path]:
    """Each (C, H, W) image of `batch` as its own PNG in `folder` (made if missing): 000.png, 001.png,
    ... (as many digits as the last index needs, at least three), the i-th carrying `text_of(i)` as
    its PNG text. Each file is written whole or not at all. Returns the paths."""
    target = Path(folder)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the folder '{folder}': {exc.strerror or exc}") from None
    width = max(3, len(str(len(batch) - 1)))
    paths = [target / f"{i:0{width}d}.png" for i in range(len(batch))]
    for i, (image, path) in enumerate(zip(batch, paths)):
        files.atomic_write(path, encode_png(image, text_of(i)))
    return paths


def make_grid(
    images: np.ndarray, nrow: int | None = None, pad: int = 2, pad_value: float = 0.0
) -> np.ndarray:
    """Tile (N, C, H, W) images into one (C, H', W') image, `nrow` images per row.

    `nrow` defaults to ceil(sqrt(N)); `pad` pixels of `pad_value` separate and surround the images.
    """
    n, c, h, w = images.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    grid = np.full((c, pad + rows * (h + pad), pad + nrow * (w + pad)), pad_value, images.dtype)
    for i, image in enumerate(images):
        top, left = pad + (i // nrow) * (h + pad), pad + (i % nrow) * (w + pad)
        grid[:, top : top + h, left : left + w] = image
    return grid
