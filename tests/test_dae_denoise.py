"""The denoising autoencoder (`dae`), `evaluate` on corrupted inputs, and the torch-free `denoise` verb."""

import io
import json
import sys

import numpy as np
import onnxruntime
import pytest
import torch
from torch import nn
from PIL import Image

from conftest import gentool, png, psnr
from gentool import data, zoo
from gentool.cli import main
from gentool.errors import UsageError
from gentool.evaluate import evaluate
from gentool.runtime import image_to_image
from gentool.zoo.blocks import FILM_HIDDEN, UNet
from gentool.zoo.dae import BLIND_LEVEL_SPAN, LEVEL_LOSS_WEIGHT

NOISE = 0.3


@pytest.fixture(scope="module")
def dae(tmp_path_factory):
    """A dae trained for 64 steps on MNIST at Gaussian sigma 0.3 (not blind: it learns faster)."""
    run = tmp_path_factory.mktemp("dae") / "run"
    gentool("train", "dae", "--data", "mnist", "--limit", "2048", "--epochs", "1", "--batch-size", "32", "--lr", "3e-3",
            "--noise-level", NOISE, "--no-blind", "--out", run)
    return run


@pytest.fixture(scope="module")
def noisy_digit(tmp_path_factory):
    """A clean MNIST test digit on a 45x37 (H x W) canvas, and a Gaussian-noisy copy saved as PNG."""
    clean = np.zeros((45, 37), np.float32)
    clean[8:36, 4:32] = data.load("mnist", "test", 1).images[0, 0] / 255
    noisy = np.clip(clean + NOISE * np.random.default_rng(0).standard_normal(clean.shape), 0, 1)
    path = tmp_path_factory.mktemp("noisy") / "noisy.png"
    Image.fromarray(np.rint(noisy * 255).astype(np.uint8)).save(path)
    return clean, path


def test_corruptions():
    from gentool.zoo.dae import corrupt

    torch.manual_seed(0)
    x = torch.full((4, 1, 64, 64), 0.5)
    gaussian = corrupt(x, "gaussian", 0.2)
    assert 0 <= float(gaussian.min()) and float(gaussian.max()) <= 1
    assert float((gaussian - x).std()) == pytest.approx(0.2, rel=0.05)
    masked = corrupt(x, "mask", 0.3)
    assert set(masked.unique().tolist()) == {0.0, 0.5} and float((masked == 0).float().mean()) == pytest.approx(0.3, abs=0.02)
    salted = corrupt(x, "salt-pepper", 0.3)
    assert set(salted.unique().tolist()) == {0.0, 0.5, 1.0} and float((salted != 0.5).float().mean()) == pytest.approx(0.3, abs=0.02)
    per_image = corrupt(x, "mask", torch.tensor([0.0, 1.0, 0.0, 1.0]).view(4, 1, 1, 1))
    assert torch.equal(per_image[0], x[0]) and float(per_image[1].abs().max()) == 0


def test_loss_compares_the_output_with_the_clean_image():
    torch.manual_seed(0)
    model = zoo.get("dae")((1, 28, 28), {"width": 4})
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        for p in model.denoiser.unet.out.parameters():  # the correction is zero: the net returns its input
            p.zero_()
    torch.manual_seed(1)
    with torch.no_grad():
        losses = model.losses(x)
    torch.manual_seed(1)
    level = 0.5 * BLIND_LEVEL_SPAN ** -torch.rand(3, 1, 1, 1)  # log-uniform in [0.02, 0.5]
    noisy = model.corrupt(x, level)
    mse = ((noisy - x) ** 2).flatten(1).mean(1)
    assert float(losses["neg_psnr"]) == pytest.approx(float((10 * torch.log10(mse + 1e-5)).mean()), abs=1e-4)
    with torch.no_grad():
        level_mse = ((model.denoiser.level(noisy) - level) ** 2).mean()
    assert float(losses["level_mse"]) == pytest.approx(float(level_mse), rel=1e-5)
    assert float(losses["loss"]) == pytest.approx(float(losses["neg_psnr"] + LEVEL_LOSS_WEIGHT * level_mse), rel=1e-5)
    for hparams in ({"blind": False}, {"estimate_level": False}):
        plain = zoo.get("dae")((1, 28, 28), {"width": 4, **hparams})
        assert plain.denoiser.estimator is None and plain.losses(x).keys() == {"loss"}
    with pytest.raises(UsageError, match="divisible by 4"):
        zoo.get("dae")((1, 30, 30), {})


def test_level_estimator_learns_the_noise_level():
    """A blind dae trained briefly estimates low and high Gaussian levels apart, on any image size."""
    torch.manual_seed(0)
    model = zoo.get("dae")((1, 28, 28), {"width": 4})
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    x = torch.from_numpy(data.load("mnist", "train", 512).images).float() / 255
    for step in range(240):
        optimizer.zero_grad()
        model.losses(x[step % 16 * 32 :][:32])["loss"].backward()
        optimizer.step()
    clean = torch.from_numpy(data.load("mnist", "test", 64).images).float() / 255
    with torch.no_grad():
        low, high = (float(model.denoiser.level(model.corrupt(clean, s)).mean()) for s in (0.05, 0.4))
        wide = model.denoiser.level(model.corrupt(torch.cat([clean[:1]] * 3, 3), 0.4))
    assert low == pytest.approx(0.05, abs=0.05) and high == pytest.approx(0.4, abs=0.08)
    assert wide.shape == (1, 1, 1, 1)


def test_film_gives_the_condition_to_every_conv():
    torch.manual_seed(0)
    unet = UNet(1, 4, 1, conditions=1)
    x, level = torch.rand(2, 1, 8, 8), torch.full((2, 1, 1, 1), 0.3)
    with torch.no_grad():
        unet.level0[0][0].weight[:, 1:] = 0  # the level plane says nothing: only FiLM can
        assert torch.equal(unet(x, level), unet(x, 2 * level))  # FiLM starts as the identity
        nn.init.normal_(unet.film[-1].weight)
        assert not torch.allclose(unet(x, level), unet(x, 2 * level))
    convs = [m for m in unet.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert sum(unet.film_sizes) == sum(c.out_channels for c in convs) and unet.film[-1].out_features == 2 * sum(unet.film_sizes)


def test_depth_adds_full_resolution_convs():
    shallow, deep = (zoo.get("dae")((1, 28, 28), {"width": 4, "depth": d}) for d in (0, 2))
    # four 3x3 convs of 4 -> 4 channels with biases, and their FiLM scales and shifts
    extra = 4 * (4 * 9 * 4 + 4) + 4 * 2 * 4 * (FILM_HIDDEN + 1)
    assert sum(p.numel() for p in deep.parameters()) - sum(p.numel() for p in shallow.parameters()) == extra
    x = torch.rand(2, 1, 12, 20)
    assert deep.denoiser(x).shape == x.shape


def test_graph_has_dynamic_batch_height_and_width(dae):
    session = onnxruntime.InferenceSession(str(dae / "denoiser.onnx"), providers=["CPUExecutionProvider"])
    (x,) = session.get_inputs()
    assert isinstance(x.shape[0], str) and x.shape[1] == 1 and all(isinstance(s, str) for s in x.shape[2:])
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["gentool.role"] == '"denoiser"' and meta["gentool.size_multiple"] == "4"
    out = session.run(None, {"x": np.random.default_rng(0).random((2, 1, 12, 40), np.float32)})[0]
    assert out.shape == (2, 1, 12, 40) and out.min() >= 0 and out.max() <= 1
    assert sorted(p.name for p in dae.glob("*.onnx")) == ["denoiser.onnx"]


def test_evaluate_reports_noisy_and_denoised_psnr(dae, runs):
    own = evaluate(dae, limit=200, device="cpu")
    assert own["noise_level"] == NOISE and own["n"] == 200 and {"mse", "bce", "ssim"} <= own.keys()
    assert own["psnr_db"] > own["noisy_psnr_db"] + 3
    weaker = json.loads(gentool("evaluate", dae, "--limit", "200", "--noise-level", "0.1", "--json").stdout)
    assert weaker["noise_level"] == 0.1 and weaker["noisy_psnr_db"] > own["noisy_psnr_db"] + 5
    with pytest.raises(UsageError, match="--noise-level is for dae models, not .ae."):
        evaluate(runs["ae"], noise_level=0.2, device="cpu")


def test_denoise_any_size_from_stdin_to_stdout(dae, noisy_digit):
    clean, path = noisy_digit
    out = gentool("denoise", "-", "--model", dae, stdin=path.read_bytes(), torch_free=True).stdout
    denoised = png(out)
    assert denoised.shape == clean.shape
    assert psnr(clean, denoised) > psnr(clean, png(path.read_bytes())) + 3


def test_denoise_colour_channel_by_channel(dae, noisy_digit, tmp_path):
    _, path = noisy_digit
    gray = np.asarray(Image.open(path))
    rgb = np.stack([gray, gray[::-1], np.zeros_like(gray)], axis=-1)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    gentool("denoise", tmp_path / "rgb.png", "--model", dae / "denoiser.onnx", "-o", tmp_path / "out.png", torch_free=True)
    out = np.asarray(Image.open(tmp_path / "out.png"))
    assert out.shape == (45, 37, 3)
    alone = np.asarray(Image.open(io.BytesIO(gentool("denoise", path, "--model", dae, torch_free=True).stdout)))
    assert np.abs(out[..., 0].astype(int) - alone).max() <= 1
    assert np.abs(out[..., 1].astype(int) - alone).max() > 10


def test_denoiser_has_no_encoder_or_decoder(dae, digits):
    for args, role in ((["sample"], "a decoder"), (["encode", digits[0]], "an encoder"), (["reconstruct", digits[0]], "an encoder")):
        proc = gentool(args[0], dae, *args[1:], torch_free=True, check=False)
        assert proc.returncode == 2 and f"needs {role}" in proc.stderr and "this dae artifact has denoiser" in proc.stderr


def test_denoise_bad_input(dae, runs, tmp_path):
    (tmp_path / "notimage.png").write_text("hello")
    proc = gentool("denoise", tmp_path / "notimage.png", "--model", dae, torch_free=True, check=False)
    assert proc.returncode == 2 and "not a readable PNG/JPEG image" in proc.stderr
    proc = gentool("denoise", tmp_path / "notimage.png", "--model", runs["vae"], torch_free=True, check=False)
    assert proc.returncode == 2 and "'denoise' needs a denoiser graph or an eps graph; this vae artifact has decoder, encoder" in proc.stderr


def test_denoise_without_the_bundled_model_asks_for_one(monkeypatch, capsys, tmp_path, digits):
    monkeypatch.setattr(image_to_image, "BUNDLED_DENOISER", tmp_path / "denoiser.onnx")
    monkeypatch.setattr(sys, "argv", ["gentool", "denoise", str(digits[0])])
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "no bundled denoiser" in err and "pass --model" in err


def test_joined_datasets():
    joined = data.load("mnist+fashion-mnist", "test")
    assert len(joined) == 20000 and len(joined.classes) == 20 and joined.name == "mnist+fashion-mnist"
    assert joined.labels[:10000].max() == 9 and joined.labels[10000:].min() == 10
    with pytest.raises(UsageError, match="name a source on each side"):
        data.load("mnist+")


def test_bundled_denoiser(noisy_digit):
    clean, path = noisy_digit
    denoised = png(gentool("denoise", path, torch_free=True).stdout)
    assert psnr(clean, denoised) > psnr(clean, png(path.read_bytes())) + 5
