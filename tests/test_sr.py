"""The super-resolution autoencoder (`sr`), its `evaluate` metrics, and the torch-free `upscale` verb."""

import io
import json
import sys

import numpy as np
import onnxruntime
import pytest
import torch
from PIL import Image

from conftest import gentool, png, psnr
from gentool import data, zoo
from gentool.cli import main
from gentool.errors import UsageError
from gentool.runtime import image_to_image


@pytest.fixture(scope="module")
def sr(tmp_path_factory):
    """An sr model (factor 2) trained for 64 steps on MNIST."""
    run = tmp_path_factory.mktemp("sr") / "run"
    gentool("train", "sr", "--data", "mnist", "--limit", "2048", "--epochs", "1", "--batch-size", "32", "--lr", "3e-3",
            "--width", "4", "--out", run)
    return run


@pytest.fixture(scope="module")
def digit_pair(tmp_path_factory):
    """A 46x38 canvas with an MNIST test digit, and its half-size (23x19) PIL-bicubic version as PNG."""
    canvas = np.zeros((46, 38), np.uint8)
    canvas[9:37, 5:33] = data.load("mnist", "test", 1).images[0, 0]
    small = Image.fromarray(canvas).resize((19, 23), Image.BICUBIC)
    path = tmp_path_factory.mktemp("small") / "small.png"
    small.save(path)
    return canvas / 255.0, path


def test_shrink_is_8_bit_and_an_untrained_correction_is_bicubic():
    torch.manual_seed(0)
    model = zoo.get("sr")((1, 28, 28), {"width": 4})
    x = torch.rand(3, 1, 28, 28)
    small = model.shrink(x)
    assert small.shape == (3, 1, 14, 14) and torch.equal(small, (small * 255).round() / 255)
    with torch.no_grad():
        for p in model.upscaler.net.out.parameters():  # the correction is zero: upscaling is bicubic
            p.zero_()
        assert torch.allclose(model.reconstruct(x), model.bicubic(x))
        loss = model.losses(x)["loss"]
    mse = ((model.bicubic(x) - x) ** 2).flatten(1).mean(1)
    assert float(loss) == pytest.approx(float((10 * torch.log10(mse + 1e-5)).mean()), abs=1e-3)
    assert zoo.get("sr")((1, 28, 28), {"factor": 4}).input_multiple == 1
    with pytest.raises(UsageError, match="divisible by 4"):
        zoo.get("sr")((1, 30, 30), {})
    with pytest.raises(UsageError, match="--factor must be one of 2, 4"):
        zoo.parse_hparams(zoo.get("sr"), ["--factor", "3"])


def test_graph_upscales_any_even_size(sr):
    session = onnxruntime.InferenceSession(str(sr / "upscaler.onnx"), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["gentool.role"] == '"upscaler"' and meta["gentool.factor"] == "2" and meta["gentool.size_multiple"] == "2"
    out = session.run(None, {"x": np.random.default_rng(0).random((2, 1, 8, 12), np.float32)})[0]
    assert out.shape == (2, 1, 16, 24) and out.min() >= 0 and out.max() <= 1


def test_evaluate_compares_with_bicubic(sr):
    result = json.loads(gentool("evaluate", sr, "--limit", "500", "--json").stdout)
    assert result["factor"] == 2 and result["n"] == 500 and {"ssim", "bicubic_ssim"} <= result.keys()
    assert result["psnr_gain_db"] == pytest.approx(result["psnr_db"] - result["bicubic_psnr_db"])
    assert 15 < result["bicubic_psnr_db"] < 25 and result["psnr_gain_db"] > 0.5


def test_upscale_any_size_from_stdin_to_stdout(sr, digit_pair):
    big, path = digit_pair
    out = png(gentool("upscale", "-", "--model", sr, stdin=path.read_bytes(), torch_free=True).stdout)
    assert out.shape == big.shape
    bicubic = np.asarray(Image.open(path).resize((38, 46), Image.BICUBIC), np.float64) / 255
    assert psnr(big, out) > psnr(big, bicubic)


def test_upscale_colour_channel_by_channel(sr, digit_pair, tmp_path):
    _, path = digit_pair
    gray = np.asarray(Image.open(path))
    Image.fromarray(np.stack([gray, gray[::-1], np.zeros_like(gray)], axis=-1)).save(tmp_path / "rgb.png")
    gentool("upscale", tmp_path / "rgb.png", "--model", sr / "upscaler.onnx", "--factor", "2", "-o", tmp_path / "out.png",
            torch_free=True)
    out = np.asarray(Image.open(tmp_path / "out.png"))
    alone = np.asarray(Image.open(io.BytesIO(gentool("upscale", path, "--model", sr, torch_free=True).stdout)))
    assert out.shape == (46, 38, 3) and np.abs(out[..., 0].astype(int) - alone).max() <= 1


def test_upscale_bad_input(sr, runs, digit_pair):
    _, path = digit_pair
    proc = gentool("upscale", path, "--model", sr, "--factor", "4", torch_free=True, check=False)
    assert proc.returncode == 2 and "upscales by 2, not 4" in proc.stderr
    proc = gentool("upscale", path, "--factor", "1", torch_free=True, check=False)
    assert proc.returncode == 2 and "--factor must be at least 2, got 1" in proc.stderr
    proc = gentool("upscale", path, "--model", runs["ae"], torch_free=True, check=False)
    assert proc.returncode == 2 and "'upscale' needs an upscaler graph; this ae artifact has decoder, encoder" in proc.stderr
    proc = gentool("sample", sr, torch_free=True, check=False)
    assert proc.returncode == 2 and "this sr artifact has upscaler" in proc.stderr


def test_upscale_without_the_bundled_model_asks_for_one(monkeypatch, capsys, tmp_path, digit_pair):
    monkeypatch.setattr(image_to_image, "BUNDLED_UPSCALERS", {2: tmp_path / "upscaler-x2.onnx"})
    monkeypatch.setattr(sys, "argv", ["gentool", "upscale", str(digit_pair[1])])
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "no bundled upscaler for --factor 2" in err and "pass --model" in err


def test_bundled_upscaler_beats_bicubic(digit_pair):
    big, path = digit_pair
    out = png(gentool("upscale", path, torch_free=True).stdout)
    bicubic = np.asarray(Image.open(path).resize((38, 46), Image.BICUBIC), np.float64) / 255
    assert psnr(big, out) > psnr(big, bicubic) + 2
