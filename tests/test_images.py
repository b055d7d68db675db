import io
import sys

import numpy as np
import pytest
from PIL import Image

from gentool import images
from gentool.errors import UsageError


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def save(tmp_path, name, pil_image, **options):
    path = tmp_path / name
    pil_image.save(path, **options)
    return str(path)


def random_uint8(*shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.mark.parametrize("channels", [1, 3])
def test_png_roundtrip(tmp_path, channels):
    pixels = random_uint8(channels, 5, 7)
    dest = str(tmp_path / "a.png")
    images.write_image(pixels.astype(np.float32) / 255, dest)
    image, notes = images.read_image(dest, channels)
    assert image.dtype == np.float32 and image.shape == (channels, 5, 7)
    assert np.array_equal(images.to_uint8(image), pixels) and notes == []


def test_sixteen_bit_grayscale_keeps_its_precision(tmp_path):
    values = np.array([[0, 1000, 32768, 65535]], np.uint16)
    image, _ = images.read_image(save(tmp_path, "a.png", Image.fromarray(values)), 1)
    assert np.allclose(image[0], values / 65535)


def test_alpha_is_composited_onto_black(tmp_path):
    rgba = np.array([[[255, 0, 0, 255], [0, 255, 0, 0], [255, 255, 255, 128]]], np.uint8)
    image, notes = images.read_image(save(tmp_path, "a.png", Image.fromarray(rgba)), 3)
    assert np.allclose(image[:, 0].T, [[1, 0, 0], [0, 0, 0], [128 / 255] * 3], atol=1 / 255)
    assert notes == [f"{tmp_path / 'a.png'}: alpha composited onto black"]


def test_palette_with_transparency(tmp_path):
    palette_image = Image.fromarray(np.array([[0, 1, 2]], np.uint8), "P")
    palette_image.putpalette([10, 20, 30, 200, 100, 0, 255, 255, 255])
    path = save(tmp_path, "p.png", palette_image, transparency=2)
    image, _ = images.read_image(path, 3)
    assert np.array_equal(images.to_uint8(image)[:, 0].T, [[10, 20, 30], [200, 100, 0], [0, 0, 0]])


def test_jpeg_roundtrip(tmp_path):
    i, j = np.mgrid[:16, :16]
    smooth = np.stack([i / 15, j / 15, (i + j) / 30]).astype(np.float32)
    dest = str(tmp_path / "a.jpg")
    images.write_image(smooth, dest)
    assert Image.open(dest).format == "JPEG"
    image, _ = images.read_image(dest, 3)
    assert np.abs(image - smooth).mean() < 0.02


def test_rgb_to_gray_uses_pil_luma(tmp_path):
    rgb = Image.fromarray(random_uint8(6, 6, 3))
    image, notes = images.read_image(save(tmp_path, "c.png", rgb), 1)
    assert np.array_equal(images.to_uint8(image)[0], np.asarray(rgb.convert("L")))
    assert notes == [f"{tmp_path / 'c.png'}: RGB converted to grayscale"]


def test_gray_to_rgb_repeats(tmp_path):
    image, notes = images.read_image(save(tmp_path, "g.png", Image.fromarray(random_uint8(4, 4))), 3)
    assert image.shape == (3, 4, 4) and np.array_equal(image[0], image[2])
    assert notes[0].endswith("grayscale repeated to RGB")


def test_resize_is_noted(tmp_path):
    path = save(tmp_path, "big.png", Image.fromarray(random_uint8(64, 48)))
    image, notes = images.read_image(path, 1, (28, 28))
    assert image.shape == (1, 28, 28) and 0 <= image.min() and image.max() <= 1
    assert notes == [f"{path}: resized 48x64 -> 28x28"]


def test_read_from_stdin(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(images.encode_png(random_uint8(1, 8, 8)))))
    image, notes = images.read_image("-", 1, (4, 4))
    assert image.shape == (1, 4, 4) and notes[0].startswith("<stdin>: resized")


def test_read_images_stacks_and_reads_stdin_once(tmp_path):
    paths = [save(tmp_path, f"{k}.png", Image.fromarray(random_uint8(8, 8, seed=k))) for k in range(3)]
    batch, _ = images.read_images(paths, 1)
    assert batch.shape == (3, 1, 8, 8)
    with pytest.raises(UsageError, match="only once"):
        images.read_images(["-", "-"], 1)


@pytest.mark.parametrize("content", [b"not an image at all", b"", "truncated"])
def test_bad_image_data(tmp_path, content):
    if content == "truncated":
        content = images.encode_png(random_uint8(3, 32, 32))[:100]
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(UsageError, match="cannot read image|empty input"):
        images.read_image(str(path), 1)


def test_make_grid():
    batch = np.stack([np.full((1, 4, 4), k, np.float32) for k in range(5)])
    grid = images.make_grid(batch, pad_value=-1)
    assert grid.shape == (1, 2 + 2 * 6, 2 + 3 * 6)  # default 3 per row -> 2 rows
    assert grid[0, 0, 0] == -1 and grid[0, 2, 2] == 0 and grid[0, 8, 2] == 3 and grid[0, 8, 8] == 4
    assert grid[0, 8, 14] == -1  # the empty sixth slot
    assert images.make_grid(batch, nrow=5, pad=0).shape == (1, 4, 20)


def test_write_unwritable_destinations(tmp_path):
    image = np.zeros((1, 2, 2), np.float32)
    (tmp_path / "dir.png").mkdir()
    for dest in ("missing/a.png", "dir.png"):
        with pytest.raises(UsageError, match="cannot write"):
            images.write_image(image, str(tmp_path / dest))
    with pytest.raises(UsageError, match=r"unsupported output format '\.gif'"):
        images.write_image(image, str(tmp_path / "a.gif"))
    assert [p.name for p in tmp_path.iterdir()] == ["dir.png"]


def test_write_to_stdout(monkeypatch, capsysbinary):
    images.write_image(np.ones((3, 2, 2), np.float32), None)
    assert capsysbinary.readouterr().out.startswith(b"\x89PNG")
    monkeypatch.setattr(sys, "stdout", FakeTerminal())
    with pytest.raises(UsageError, match="terminal"):
        images.write_image(np.ones((1, 2, 2), np.float32), "-")
