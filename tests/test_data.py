import functools
import http.server
import shutil
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gentool import data
from gentool.errors import UsageError

SHARED = Path(data.data_dir())
GZ_FILES = [f"{stem}.gz" for stems in data.IDX_FILES.values() for stem in stems]


@pytest.fixture(scope="module")
def mnist_train():
    return data.load("mnist")


def test_mnist(mnist_train):
    assert mnist_train.images.shape == (60000, 1, 28, 28) and mnist_train.images.dtype == np.uint8
    assert mnist_train.images.flags.writeable and mnist_train.labels.dtype == np.int64
    assert mnist_train.labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert mnist_train.image_shape == (1, 28, 28) and len(mnist_train) == 60000
    assert mnist_train.name == "mnist" and len(mnist_train.classes) == 10
    test = data.load("mnist", "test")
    assert len(test) == 10000 and test.labels[:5].tolist() == [7, 2, 1, 0, 4]


def test_pixel_stats(mnist_train):
    stats = data.pixel_stats(mnist_train.images)
    assert stats["mean"] == pytest.approx(0.1307, abs=5e-5) and stats["std"] == pytest.approx(0.3081, abs=5e-5)


def test_fashion_mnist_and_limit():
    fashion = data.load("fashion-mnist", limit=5)
    assert fashion.labels.tolist() == [9, 0, 0, 3, 0] and fashion.images.shape == (5, 1, 28, 28)
    assert fashion.classes[9] == "Ankle boot"


def test_bad_arguments():
    with pytest.raises(UsageError, match="unknown dataset 'foo': use mnist"):
        data.load("foo")
    with pytest.raises(UsageError, match="unknown split"):
        data.load("mnist", "valid")


def test_corrupt_idx_files_are_named(tmp_path, monkeypatch):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in GZ_FILES:
        shutil.copy(SHARED / "mnist" / name, folder)
    monkeypatch.setenv("GENTOOL_DATA_DIR", str(tmp_path))
    truncated = folder / "t10k-labels-idx1-ubyte.gz"
    truncated.write_bytes(truncated.read_bytes()[:1000])
    with pytest.raises(UsageError, match="t10k-labels-idx1-ubyte.gz"):
        data.load("mnist", "test")
    # An uncompressed file is used as well, and checked against the sizes in its header.
    truncated.unlink()
    header = np.array([2049, 10000], ">i4").tobytes()
    (folder / "t10k-labels-idx1-ubyte").write_bytes(header + bytes(9999))
    with pytest.raises(UsageError, match="t10k-labels-idx1-ubyte' is not a valid IDX file"):
        data.load("mnist", "test")


# Downloads, against a local server ------------------------------------------------------------


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A local HTTP mirror (its folder is returned) and an empty data directory."""
    served = tmp_path / "served"
    served.mkdir()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(served))
    )
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    monkeypatch.setattr(data, "MIRRORS", {"mnist": [f"http://127.0.0.1:{server.server_port}/"]})
    monkeypatch.setenv("GENTOOL_DATA_DIR", str(tmp_path / "cache"))
    yield served
    server.shutdown()
    server.server_close()


def test_download(mirror, tmp_path, capsys):
    for name in GZ_FILES:
        shutil.copy(SHARED / "mnist" / name, mirror)
    test = data.load("mnist", "test")
    assert test.labels[:5].tolist() == [7, 2, 1, 0, 4]
    assert sorted(p.name for p in (tmp_path / "cache" / "mnist").iterdir()) == sorted(GZ_FILES)
    assert "downloading mnist/t10k-images-idx3-ubyte.gz from http://127.0.0.1:" in capsys.readouterr().err


def test_download_with_wrong_checksum_is_discarded(mirror, tmp_path):
    cache = tmp_path / "cache" / "mnist"
    cache.mkdir(parents=True)
    for name in GZ_FILES[:3]:  # only the small test-labels file is left to download
        shutil.copy(SHARED / "mnist" / name, cache)
    shutil.copy(SHARED / "mnist" / "train-labels-idx1-ubyte.gz", mirror / GZ_FILES[3])
    with pytest.raises(UsageError, match="could not be downloaded \\(checksum mismatch"):
        data.load("mnist", "test")
    assert sorted(p.name for p in cache.iterdir()) == sorted(GZ_FILES[:3])


def test_offline_without_files(tmp_path, monkeypatch):
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setattr(data, "MIRRORS", {"mnist": [f"http://127.0.0.1:{port}/"]})
    monkeypatch.setenv("GENTOOL_DATA_DIR", str(tmp_path))
    with pytest.raises(UsageError) as error:
        data.load("mnist")
    message = str(error.value)
    assert f"dataset 'mnist' not found in {tmp_path / 'mnist'} and could not be downloaded" in message
    assert "train-images-idx3-ubyte.gz" in message and "GENTOOL_DATA_DIR" in message
    assert "\n" not in message and not (tmp_path / "mnist").exists()


# Folders and arrays ---------------------------------------------------------------------------


def make_folder(root: Path, classes: dict[str, int], mode="L", size=(6, 5)) -> None:
    """PNGs whose first pixel numbers them, so the tests can tell which ones they got."""
    number = 0
    for class_name, count in classes.items():
        (root / class_name).mkdir(parents=True, exist_ok=True)
        for _ in range(count):
            Image.new(mode, size, number if mode == "L" else (number,) * 3).save(root / class_name / f"{number:03d}.png")
            number += 1


def first_pixels(dataset) -> set[int]:
    return set(dataset.images[:, 0, 0, 0].tolist())


def test_folder_with_classes_and_deterministic_holdout(tmp_path):
    make_folder(tmp_path / "shapes", {"b-square": 12, "a-circle": 18})
    train = data.load(str(tmp_path / "shapes"))
    test = data.load(str(tmp_path / "shapes"), "test")
    assert train.classes == ["a-circle", "b-square"] and train.name == "shapes"
    assert train.images.shape == (27, 1, 5, 6) and len(test) == 3
    assert first_pixels(train).isdisjoint(first_pixels(test))
    assert first_pixels(train) | first_pixels(test) == set(range(30))
    # a-circle holds pictures 12..29 (sorted by name, it is class 0)
    assert all((label == 0) == (pixel >= 12) for label, pixel in zip(train.labels, train.images[:, 0, 0, 0]))
    again = data.load(str(tmp_path / "shapes"), "test")
    assert np.array_equal(again.images, test.images) and np.array_equal(again.labels, test.labels)


def test_folder_with_splits_and_mixed_modes(tmp_path):
    make_folder(tmp_path / "train", {"x": 2, "y": 2})
    make_folder(tmp_path / "test", {"y": 1}, mode="RGB")
    test = data.load(str(tmp_path), "test")
    assert test.classes == ["x", "y"] and test.labels.tolist() == [1] and test.image_shape == (3, 5, 6)
    assert data.load(str(tmp_path), "train").image_shape == (1, 5, 6)
    Image.new("L", (7, 7)).save(tmp_path / "train" / "y" / "odd.png")
    with pytest.raises(UsageError, match="odd.png' is 7x7 but .*000.png' is 6x5: all images must have one size"):
        data.load(str(tmp_path))


def test_flat_folder_and_empty_folder(tmp_path):
    for k in range(10):
        Image.new("L", (4, 4), k).save(tmp_path / f"{k}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    dataset = data.load(str(tmp_path))
    assert dataset.labels is None and dataset.classes is None and len(dataset) == 9
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no PNG/JPEG images"):
        data.load(str(tmp_path / "empty"))


@pytest.mark.parametrize(
    "layout, shape",
    [("NHW", (20, 5, 6)), ("NHWC", (20, 5, 6, 3)), ("NHW1", (20, 5, 6, 1)), ("NCHW", (20, 3, 5, 6))],
)
def test_npy_layouts(tmp_path, layout, shape):
    array = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    np.save(tmp_path / "pics.npy", array)
    dataset = data.load(str(tmp_path / "pics.npy"))
    channels = 1 if layout in ("NHW", "NHW1") else 3
    assert dataset.images.shape == (18, channels, 5, 6) and dataset.name == "pics"
    expected = array.reshape(20, 5, 6, channels).transpose(0, 3, 1, 2) if layout.startswith("NHW") else array
    holdout = np.sort(np.random.default_rng(0).permutation(20)[2:])
    assert np.array_equal(dataset.images, expected[holdout])


def test_npy_float_and_bad_arrays(tmp_path):
    np.save(tmp_path / "f.npy", np.full((10, 4, 4), 0.5, np.float32))
    assert np.all(data.load(str(tmp_path / "f.npy")).images == 128)
    np.save(tmp_path / "f.npy", np.full((10, 4, 4), 2.0))
    with pytest.raises(UsageError, match=r"float pixels must be in \[0, 1\]"):
        data.load(str(tmp_path / "f.npy"))
    np.save(tmp_path / "f.npy", np.zeros((10, 4, 4, 5), np.uint8))
    with pytest.raises(UsageError, match="is not \\(N, H, W\\)"):
        data.load(str(tmp_path / "f.npy"))
    (tmp_path / "f.npy").write_bytes(b"garbage")
    with pytest.raises(UsageError, match="cannot read"):
        data.load(str(tmp_path / "f.npy"))


def test_npz_layouts(tmp_path):
    x, y = np.zeros((30, 4, 4), np.uint8), np.arange(30) % 3
    np.savez(tmp_path / "s.npz", x_train=x, y_train=y, x_test=x[:5], y_test=np.array([0, 1, 2, 3, 3]))
    train, test = data.load(str(tmp_path / "s.npz")), data.load(str(tmp_path / "s.npz"), "test")
    assert len(train) == 30 and test.labels.tolist() == [0, 1, 2, 3, 3] and train.classes == test.classes == list("0123")
    np.savez(tmp_path / "l.npz", images=x, labels=y)
    assert len(data.load(str(tmp_path / "l.npz"), "test")) == 3
    np.savez(tmp_path / "one.npz", whatever=x)
    assert data.load(str(tmp_path / "one.npz"), limit=4).images.shape == (4, 1, 4, 4)
    np.savez(tmp_path / "bad.npz", a=x, b=x)
    with pytest.raises(UsageError, match="expected x_train"):
        data.load(str(tmp_path / "bad.npz"))
    np.savez(tmp_path / "badlabels.npz", images=x, labels=y[:10])
    with pytest.raises(UsageError, match="labels must be 30"):
        data.load(str(tmp_path / "badlabels.npz"))


def test_an_ambiguous_folder_layout_is_refused(tmp_path):
    """Images at the top level beside class folders would have been dropped silently; an empty class
    folder would have been a class without examples."""
    for where in ("a", "b", "."):
        (tmp_path / "mixed" / where).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "mixed" / where / "x.png")
    with pytest.raises(UsageError, match="both at its top level .* and in class folders"):
        data.load(str(tmp_path / "mixed"))
    (tmp_path / "mixed" / "x.png").unlink()
    assert data.load(str(tmp_path / "mixed")).classes == ["a", "b"]
    (tmp_path / "mixed" / "notes").mkdir()
    with pytest.raises(UsageError, match="the class folder 'notes' holds no PNG/JPEG images"):
        data.load(str(tmp_path / "mixed"))


def test_a_limited_idx_read_stops_at_its_images():
    """`limit` reads the first images of an IDX file only, the same ones as a whole read gives."""
    whole, few = data.load("mnist", "test"), data.load("mnist", "test", 5)
    assert np.array_equal(few.images, whole.images[:5]) and np.array_equal(few.labels, whole.labels[:5])
    path = data._find_idx(data.dataset_dir("mnist"), data.IDX_FILES["test"][0])
    images, total = data._read_idx(path, 3, limit=5)
    assert images.shape == (5, 28, 28) and total == 10_000
