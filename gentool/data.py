"""Datasets loaded into memory as uint8 arrays (N, C, H, W), with int64 labels when there are any.

Sources for `load(spec)`:
- `mnist`, `fashion-mnist`: the four standard IDX files in `dataset_dir(name)`, gzipped or not.
  Missing files are downloaded from the dataset's usual mirrors (`MIRRORS`), checked against the
  official MD5 and SHA-256 (`CHECKSUMS`), and written atomically.
- a folder of PNG/JPEG images: flat (unlabeled), or one sub-folder per class (labels index the
  class names, sorted); if it has both `train/` and `test/` sub-folders, those are the splits
  (with the classes of both). Images must share one size; they load as grayscale if all of them
  are, else as RGB. Each split is checked on its own (the other split is not read).
- a `.npy` array (N, H, W), (N, H, W, C) or (N, C, H, W) with C in 1 or 3, uint8 or float in [0, 1];
  or a `.npz` holding `x_train`/`x_test` (+ `y_train`/`y_test`), `images` (+ `labels`), or one array.
A path source without its own test split holds out 10% as the test split: the first N // 10
indices of `np.random.default_rng(0).permutation(N)`. Both splits keep the source's order.
A dataset name wins over a folder of the same name: write `./mnist` for the folder.
Sources joined with '+' (`mnist+fashion-mnist`) are concatenated split by split; their images must
share one shape, and their classes are listed one after the other (labels offset to match).
"""

import gzip
import math
import os
import sys
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from gentool import files, images as image_io, progress
from gentool.errors import UsageError

SPLITS = ("train", "test")
ALL = "all"  # every example of a source, both splits (what `gentool fid` compares)
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CLASSES = {
    "mnist": [str(digit) for digit in range(10)],
    "fashion-mnist": [
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ],
}
# Base URLs tried in order for the `.gz` files.
MIRRORS = {
    "mnist": ["https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"],
    "fashion-mnist": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
}
# (MD5, SHA-256) of the official `.gz` files.
CHECKSUMS = {
    "mnist": {
        "train-images-idx3-ubyte.gz": (
            "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        ),
        "train-labels-idx1-ubyte.gz": (
            "d53e105ee54ea40749a09fcbcd1e9432",
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        ),
        "t10k-images-idx3-ubyte.gz": (
            "9fb629c4189551a2d022fa330f9573f3",
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        ),
        "t10k-labels-idx1-ubyte.gz": (
            "ec29112dd5afa0611ce80d1b7f02629c",
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        ),
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": (
            "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        ),
        "train-labels-idx1-ubyte.gz": (
            "25c81989df183df01b3e8a0aad5dffbe",
            "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        ),
        "t10k-images-idx3-ubyte.gz": (
            "bef4ecab320f06d8554ea6380940ec79",
            "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        ),
        "t10k-labels-idx1-ubyte.gz": (
            "bb300cfdad3c16e7a12a480ee83cd310",
            "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        ),
    },
}
DOWNLOAD_TIMEOUT_S = 30
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass
class Dataset:
    """uint8 images (N, C, H, W); int64 labels indexing `classes`, both None for unlabeled data."""

    images: np.ndarray
    labels: np.ndarray | None
    name: str
    classes: list[str] | None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.images.shape[1:]

    def __len__(self) -> int:
        return len(self.images)


def data_dir() -> Path:
    """Where named datasets live: $GENTOOL_DATA_DIR, else the user cache directory."""
    if os.environ.get("GENTOOL_DATA_DIR"):
        return Path(os.environ["GENTOOL_DATA_DIR"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "gentool" / "data"


# Where a checkout's datasets may lie beside it when GENTOOL_DATA_DIR is not set (as ultralytics
# looks for `datasets/` beside its repository): `data/` in the working directory, `../shared/data`.
LOCAL_DATA_DIRS = (Path("data"), Path("..") / "shared" / "data")


def has_all_files(folder: Path) -> bool:
    return all(_find_idx(folder, stem) for pair in IDX_FILES.values() for stem in pair)


def dataset_dir(name: str) -> Path:
    """The folder of a named dataset: `data_dir()/<name>` when $GENTOOL_DATA_DIR is set; otherwise
    the first of the cache, ./data and ../shared/data that holds its four files, else the cache
    (where they are downloaded to)."""
    if not os.environ.get("GENTOOL_DATA_DIR"):
        found = next((root / name for root in (data_dir(), *LOCAL_DATA_DIRS) if has_all_files(root / name)), None)
        if found is not None:
            return found
    return data_dir() / name


def load(spec: str, split: str = "train", limit: int | None = None, size: tuple[int, int] | None = None) -> Dataset:
    """Load a named dataset or a path (see the module docstring); `limit` keeps the first N. With
    `size` (H, W) every image is resized to it (Lanczos) as it loads, and the result is cached."""
    if split not in (*SPLITS, ALL):
        raise UsageError(f"unknown split '{split}': use train or test")
    if limit is not None and limit < 1:
        raise UsageError(f"limit must be at least 1, not {limit}")
    dataset = _read_source(spec, split, None, limit) if size is None else _resized(spec, split, tuple(size))
    if len(dataset) == 0:
        raise UsageError(f"dataset '{dataset.name}' has no {split} examples")
    return dataset if limit is None else _select(dataset, slice(limit))


def _read_source(spec: str, split: str, size: tuple[int, int] | None, limit: int | None = None) -> Dataset:
    """The source's split; `limit`, when given, lets an IDX file stop after its first images."""
    path = Path(spec).expanduser()
    if spec in CLASSES:
        return _fit(_load_named(spec, split, limit), size)
    if path.is_dir():
        return _load_folder(path, split, size)
    if path.is_file() and path.suffix.lower() in (".npy", ".npz"):
        return _fit(_load_arrays(path, split), size)
    if "+" in spec and not path.exists():
        return _join(spec, split, size)
    if path.exists():
        raise UsageError(f"cannot load '{spec}': use a folder of images or a .npy/.npz file")
    raise UsageError(f"unknown dataset '{spec}': use mnist, fashion-mnist, a folder of images, or a .npy/.npz file")


MAX_SIDE = 4096  # the largest --size a training resizes to


def parse_size(text: str) -> tuple[int, int]:
    """`--size` 'H' or 'HxW' -> (H, W)."""
    try:
        sides = tuple(int(part) for part in text.lower().split("x"))
    except ValueError:
        sides = ()
    if len(sides) not in (1, 2) or not all(1 <= side <= MAX_SIDE for side in sides):
        raise UsageError(f"--size takes H or HxW in pixels (each 1 to {MAX_SIDE}), e.g. 32 or 32x48; got '{text}'")
    return (sides[0], sides[-1])


def cache_dir() -> Path:
    """What gentool computes once and keeps (real features, resized datasets): $GENTOOL_CACHE_DIR,
    else the user cache directory."""
    if os.environ.get("GENTOOL_CACHE_DIR"):
        return Path(os.environ["GENTOOL_CACHE_DIR"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gentool"


def signature(spec: str) -> list:
    """What a source's content depends on, for the cache: each file's path, size and modification time."""
    if "+" in spec and not Path(spec).expanduser().exists():
        return [signature(part) for part in spec.split("+")]
    path = dataset_dir(spec) if spec in CLASSES else Path(spec).expanduser().resolve()
    found = sorted(path.rglob("*")) if path.is_dir() else [path]
    return [spec] + [[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in found if p.is_file()]


def _resized(spec: str, split: str, size: tuple[int, int]) -> Dataset:
    """The split with every image resized to `size`: done once, then read from the cache."""
    import hashlib
    import json

    key = hashlib.sha256(json.dumps([signature(spec), split, size]).encode()).hexdigest()[:24]
    path = cache_dir() / "resized" / f"{key}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as saved:
            labels = saved["labels"] if "labels" in saved.files else None
            classes = json.loads(str(saved["classes"])) if "classes" in saved.files else None
            return Dataset(saved["images"], labels, str(saved["name"]), classes)
    with progress.stage(f"resizing the {split} images of {spec} to {size[0]}x{size[1]} (once: they are cached)"):
        dataset = _read_source(spec, split, size)
    arrays = {"images": dataset.images, "name": np.array(dataset.name)}
    if dataset.labels is not None:
        arrays["labels"] = dataset.labels
    if dataset.classes is not None:
        arrays["classes"] = np.array(json.dumps(dataset.classes))
    path.parent.mkdir(parents=True, exist_ok=True)
    with files.atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    return dataset


def _fit(dataset: Dataset, size: tuple[int, int] | None) -> Dataset:
    """The dataset with its images resized to `size` (Lanczos); as it is for None."""
    if size is None:
        return dataset
    images, _ = image_io.conform(dataset.images, (dataset.images.shape[1], *size), dataset.name)
    return replace(dataset, images=images)


def image_set(spec: str, limit: int | None = None) -> Dataset:
    """Images to compare (`gentool fid`): `SOURCE:train` / `SOURCE:test` for one split; a dataset
    name alone means its test split, a path alone all its images; `limit` keeps the first N."""
    source, colon, split = spec.rpartition(":")
    if colon and source and split in SPLITS:
        return load(source, split, limit)
    return load(spec, ALL if Path(spec).expanduser().exists() else "test", limit)


def check_shape(dataset: Dataset, expected, split: str) -> Dataset:
    """The dataset, if its images have the shape a model expects; else a usage error."""
    if list(dataset.image_shape) != list(expected):
        raise UsageError(f"the {split} split of '{dataset.name}' has images of shape {list(dataset.image_shape)}, the model expects {list(expected)}")
    return dataset


def pixel_stats(images: np.ndarray) -> dict:
    """Mean and std over all uint8 pixels, scaled to [0, 1].

    Exact integer sums, squared in chunks so that no wide copy of the whole array is made (and no
    BLAS call, which costs milliseconds per call on small machines).
    """
    flat = images.reshape(-1)
    step = 1 << 20
    total = int(flat.sum(dtype=np.int64))
    total_sq = sum(
        int(np.square(flat[i : i + step], dtype=np.int64).sum()) for i in range(0, flat.size, step)
    )
    mean = total / flat.size
    std = math.sqrt(max(total_sq / flat.size - mean**2, 0.0))
    return {"mean": mean / 255, "std": std / 255}


def _select(dataset: Dataset, index) -> Dataset:
    labels = None if dataset.labels is None else dataset.labels[index]
    return replace(dataset, images=dataset.images[index], labels=labels)


def _both(load_split, split: str) -> Dataset:
    """A source with its own splits: `load_split(split)`, or for ALL both splits concatenated."""
    if split != ALL:
        return load_split(split)
    train, test = load_split("train"), load_split("test")
    if train.images.shape[1:] != test.images.shape[1:]:
        raise UsageError(f"the train and test splits of '{train.name}' have images of different shapes: name one split")
    labels = None if train.labels is None or test.labels is None else np.concatenate([train.labels, test.labels])
    return replace(train, images=np.concatenate([train.images, test.images]), labels=labels)


def _holdout(dataset: Dataset, split: str) -> Dataset:
    if split == ALL:
        return dataset
    n = len(dataset)
    order = np.random.default_rng(0).permutation(n)
    return _select(dataset, np.sort(order[: n // 10] if split == "test" else order[n // 10 :]))


def _join(spec: str, split: str, size: tuple[int, int] | None) -> Dataset:
    names = spec.split("+")
    if "" in names:
        raise UsageError(f"cannot join '{spec}': name a source on each side of '+'")
    parts = [_read_source(name, split, size) for name in names]
    if len({part.image_shape for part in parts}) > 1:
        shapes = ", ".join(f"{name} {list(part.image_shape)}" for name, part in zip(names, parts))
        raise UsageError(f"cannot join '{spec}': its images differ in shape ({shapes})")
    labels = classes = None
    if all(part.labels is not None for part in parts):
        offsets = np.cumsum([0] + [len(part.classes) for part in parts[:-1]])
        labels = np.concatenate([part.labels + offset for part, offset in zip(parts, offsets)])
        classes = [c for part in parts for c in part.classes]
    return Dataset(np.concatenate([part.images for part in parts]), labels, spec, classes)


# Named datasets (IDX files) ------------------------------------------------------------------


def _load_named(name: str, split: str, limit: int | None = None) -> Dataset:
    folder = dataset_dir(name)
    _download_missing(name, folder)
    return _both(lambda s: _read_named(folder, name, s, None if split == ALL else limit), split)


def _read_named(folder: Path, name: str, split: str, limit: int | None = None) -> Dataset:
    image_stem, label_stem = IDX_FILES[split]
    (images, n_images), (labels, n_labels) = (_read_idx(_find_idx(folder, stem), ndim, limit) for stem, ndim in ((image_stem, 3), (label_stem, 1)))
    if n_images != n_labels:
        raise UsageError(f"'{folder}' has {n_images} {split} images but {n_labels} labels")
    return Dataset(images[:, None], labels.astype(np.int64), name, CLASSES[name])


def _find_idx(folder: Path, stem: str) -> Path | None:
    return next((p for p in (folder / stem, folder / f"{stem}.gz") if p.is_file()), None)


# The largest IDX payload gentool loads (MNIST's training images are 47 MB).
MAX_IDX_BYTES = 2**31


def _read_idx(path: Path, ndim: int, limit: int | None = None) -> tuple[np.ndarray, int]:
    """Parse an IDX file of unsigned bytes: magic 0x08nn (nn = ndim), big-endian int32 sizes, data;
    returns its first `limit` items (all of them by default) and how many the header says it holds.

    The header is read and checked first, and then exactly the bytes it promises (a gzip stream is
    never decompressed past them), so a lying or hostile file costs no more than its header says;
    with a `limit`, reading stops after that many items (a test's 64 images skip 47 MB of MNIST)."""
    header = 4 * (ndim + 1)
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
            head = f.read(header)
            # A file shorter than its header reads as zeros, which fail the checks below.
            magic, *shape = np.frombuffer(head.ljust(header, b"\0"), ">i4").tolist()
            total = shape[0] if shape else 0
            if magic != 0x800 + ndim or min(shape) < 0 or math.prod(shape) > MAX_IDX_BYTES:
                raise UsageError(f"'{path}' is not a valid IDX file (corrupt or truncated)")
            whole = limit is None or limit >= total
            shape[0] = total if whole else limit
            size = math.prod(shape)
            # bytearray makes the array writable (torch.from_numpy warns about read-only arrays).
            raw = bytearray(f.read(size))
            if len(raw) != size or (whole and f.read(1)):
                raise UsageError(f"'{path}' is not a valid IDX file (corrupt or truncated)")
    except (OSError, EOFError, zlib.error) as exc:
        raise UsageError(f"cannot read '{path}': {exc}") from None
    return np.frombuffer(raw, np.uint8).reshape(shape), total


class _DownloadError(Exception):
    pass


def _download_missing(name: str, folder: Path) -> None:
    stems = [stem for pair in IDX_FILES.values() for stem in pair]
    for stem in stems:
        if _find_idx(folder, stem):
            continue
        try:
            data = _download(name, f"{stem}.gz")
        except _DownloadError as exc:
            raise UsageError(
                f"dataset '{name}' not found in {folder} and could not be downloaded ({exc}); put the "
                f"four IDX files ({', '.join(f'{s}.gz' for s in stems)}) there"
                + (" (the folder GENTOOL_DATA_DIR names)" if os.environ.get("GENTOOL_DATA_DIR") else f" or in ./data/{name}/, or set GENTOOL_DATA_DIR")
            ) from None
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create '{folder}': {exc.strerror or exc}") from None
        files.atomic_write(folder / f"{stem}.gz", data)


def _download(name: str, filename: str) -> bytes:
    """The file from the first mirror that serves it with the expected checksums."""
    import hashlib
    import http.client
    import urllib.error
    import urllib.request

    reason = "no download mirror"
    for base in MIRRORS.get(name, []):
        print(f"downloading {name}/{filename} from {base}", file=sys.stderr)
        try:
            with urllib.request.urlopen(base + filename, timeout=DOWNLOAD_TIMEOUT_S) as response:
                data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            reason = exc.reason if type(exc) is urllib.error.URLError else exc
            continue
        digests = (
            hashlib.md5(data, usedforsecurity=False).hexdigest(),
            hashlib.sha256(data).hexdigest(),
        )
        if digests == CHECKSUMS[name][filename]:
            return data
        reason = f"checksum mismatch for {base}{filename}"
    raise _DownloadError(reason)


# Folders of images ---------------------------------------------------------------------------


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _image_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES and not p.name.startswith(".")
    )


def _load_folder(root: Path, split: str, size: tuple[int, int] | None) -> Dataset:
    name = root.resolve().name
    if {"train", "test"} <= {p.name for p in _subfolders(root)}:
        classes = sorted({p.name for s in SPLITS for p in _subfolders(root / s)}) or None
        return _both(lambda s: Dataset(*_read_folder(root / s, classes, size), name, classes), split)
    classes = [p.name for p in _subfolders(root)] or None
    empty = [c for c in classes or [] if not _image_files(root / c)]
    if empty:
        raise UsageError(f"'{root}': the class folder '{empty[0]}' holds no PNG/JPEG images (each sub-folder is a class)")
    return _holdout(Dataset(*_read_folder(root, classes, size), name, classes), split)


def _read_folder(folder: Path, classes: list[str] | None, size: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Decode every image (grayscale if all are, else RGB), each resized to `size` when given;
    without it all must have one size."""
    if classes:
        loose = _image_files(folder)
        if loose:
            raise UsageError(f"'{folder}' holds images both at its top level ({loose[0].name}, ...) and in class folders "
                             f"({', '.join(classes[:3])}{', ...' if len(classes) > 3 else ''}): put every image in a class folder, or none")
        paths, labels = [], []
        for label, class_name in enumerate(classes):
            class_paths = _image_files(folder / class_name)
            paths += class_paths
            labels += [label] * len(class_paths)
    else:
        paths, labels = _image_files(folder), None
    if not paths:
        raise UsageError(f"no PNG/JPEG images found in '{folder}'")
    arrays = []
    for path in paths:
        image = image_io.to_uint8(image_io.read_image(str(path), None, size)[0])
        if arrays and image.shape[1:] != arrays[0].shape[1:]:
            (h, w), (h0, w0) = image.shape[1:], arrays[0].shape[1:]
            raise UsageError(
                f"'{path}' is {w}x{h} but '{paths[0]}' is {w0}x{h0}: all images must have one size "
                "(`gentool train --size H[xW]` resizes them as they load)"
            )
        arrays.append(image)
    channels = max(len(a) for a in arrays)
    images = np.stack([np.broadcast_to(a, (channels, *a.shape[1:])) for a in arrays])
    return images, None if labels is None else np.array(labels, np.int64)


# .npy / .npz arrays --------------------------------------------------------------------------


def _load_arrays(path: Path, split: str) -> Dataset:
    import zipfile

    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            arrays = {"": loaded}
        else:
            with loaded:
                arrays = {key: loaded[key] for key in loaded.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise UsageError(f"cannot read '{path}': {exc}") from None

    has_splits = {"x_train", "x_test"} <= arrays.keys()
    if has_splits:
        both = _both(lambda s: Dataset(arrays[f"x_{s}"], arrays.get(f"y_{s}"), path.stem, None), split)
        x, y, label_keys = both.images, both.labels, ("y_train", "y_test")
    elif "images" in arrays:
        x, y, label_keys = arrays["images"], arrays.get("labels"), ("labels",)
    elif len(arrays) == 1:
        x, y, label_keys = next(iter(arrays.values())), None, ()
    else:
        raise UsageError(
            f"'{path}' holds {', '.join(arrays)}: expected x_train/y_train/x_test/y_test, "
            "images/labels, or a single array"
        )
    images = _as_images(x, path)
    labels = None if y is None else _as_labels(y, len(images), path)
    classes = None
    if labels is not None:  # counted over every label array, so that both splits agree
        n_classes = 1 + max(int(arrays[k].max(initial=-1)) for k in label_keys if k in arrays)
        classes = [str(i) for i in range(n_classes)]
    dataset = Dataset(images, labels, path.stem, classes)
    return dataset if has_splits else _holdout(dataset, split)


def _as_images(x: np.ndarray, path: Path) -> np.ndarray:
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise UsageError(
            f"'{path}': an array of shape {x.shape} is not (N, H, W), (N, H, W, C) or (N, C, H, W) "
            "with C in 1 or 3"
        )
    if np.issubdtype(x.dtype, np.floating):
        if x.size and not (x.min() >= 0 and x.max() <= 1):
            raise UsageError(f"'{path}': float pixels must be in [0, 1]")
        x = image_io.to_uint8(x)
    elif x.dtype != np.uint8:
        raise UsageError(f"'{path}': pixels must be uint8 or float in [0, 1], not {x.dtype}")
    return np.ascontiguousarray(x)


# Labels index classes; more than this many would only be a way to make gentool allocate a huge table.
MAX_CLASSES = 100_000


def _as_labels(y: np.ndarray, n: int, path: Path) -> np.ndarray:
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer) or (n and y.min() < 0):
        raise UsageError(f"'{path}': labels must be {n} non-negative integers, not {y.dtype} {y.shape}")
    if n and y.max() >= MAX_CLASSES:
        raise UsageError(f"'{path}': labels must be class indices below {MAX_CLASSES}, got {y.max()}")
    return y.astype(np.int64)


def class_indices(spec: str, dataset: Dataset) -> list[int]:
    """'3' or '3,5' -> sorted label indices; each item is a class name, else a class index."""
    if dataset.labels is None:
        raise UsageError(f"--classes needs labelled data; '{dataset.name}' has no labels")
    from gentool.values import class_index

    return sorted({class_index("--classes", dataset.classes, item.strip(), f"'{dataset.name}'") for item in spec.split(",")})


def training_set(data: str, limit: int | None, classes: str | list[int] | None, size=None):
    """The training split (resized to `size` when given), keeping only `classes` (a --classes spec
    or label indices) before `limit`.

    Returns the dataset and the label indices kept (None for all).
    """
    dataset = load(data, "train", None if classes else limit, size)
    if not classes:
        return dataset, None
    if isinstance(classes, str):
        classes = class_indices(classes, dataset)
    keep = np.flatnonzero(np.isin(dataset.labels, classes))[:limit]
    if not len(keep):
        raise UsageError(f"'{dataset.name}' has no training examples of the classes {classes}")
    return replace(dataset, images=dataset.images[keep], labels=dataset.labels[keep]), classes
