"""The adversarial family (`gan`): its losses, training on MNIST, and torch-free sampling."""

import json

import numpy as np
import pytest
import torch

from conftest import gentool, png
from gentool import zoo
from gentool.zoo.gan import discriminator_loss, generator_loss


def test_losses_are_the_seeds_terms():
    """ns: -log D(G(z)); minimax: log(1 - D(G(z))); D: -log D(x) - log(1 - D(G(z))); lsgan: squares."""
    real, fake = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])
    d = torch.sigmoid
    assert float(discriminator_loss("ns", real, fake)) == pytest.approx(float(-(d(real).log().mean() + (1 - d(fake)).log().mean())), rel=1e-6)
    assert float(generator_loss("ns", fake)) == pytest.approx(float(-d(fake).log().mean()), rel=1e-6)
    assert float(generator_loss("minimax", fake)) == pytest.approx(float((1 - d(fake)).log().mean()), rel=1e-6)
    assert float(generator_loss("lsgan", fake)) == pytest.approx(float(0.5 * ((fake - 1) ** 2).mean()))
    assert float(discriminator_loss("lsgan", real, fake)) == pytest.approx(float(0.5 * ((real - 1) ** 2).mean() + 0.5 * (fake**2).mean()))


def test_minimax_gradient_vanishes_when_the_discriminator_wins():
    """The seeds' claim in one line: at D(G(z)) near 0, log(1 - D) is flat, -log D is not."""
    confident = torch.tensor([-8.0], requires_grad=True)
    grads = {loss: torch.autograd.grad(generator_loss(loss, confident), confident)[0].abs().item() for loss in ("minimax", "ns")}
    assert grads["minimax"] < 1e-3 < 0.9 < grads["ns"]


@pytest.fixture(scope="module")
def gan(tmp_path_factory):
    run = tmp_path_factory.mktemp("gan") / "run"
    gentool("train", "gan", "--data", "mnist", "--limit", "1024", "--epochs", "1", "--batch-size", "64", "--width", "16", "--out", run)
    return run


def test_trains_logs_both_players_and_samples_torch_free(gan):
    record = json.loads((gan / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"train_discriminator_loss", "train_generator_loss", "train_discriminator_d_real", "train_discriminator_d_fake"} <= record.keys()
    grid = png(gentool("sample", gan, "-n", "16", "--seed", "3", torch_free=True).stdout)
    again = png(gentool("sample", gan, "-n", "16", "--seed", "3", torch_free=True).stdout)
    assert np.array_equal(grid, again) and grid.std() > 0.01
    assert sorted(p.name for p in gan.glob("*.onnx")) == ["generator.onnx"]


def test_every_loss_trains_a_step():
    torch.manual_seed(0)
    for loss in ("ns", "minimax", "lsgan"):
        model = zoo.get("gan")((1, 28, 28), {"loss": loss, "width": 8}, 10)
        for phase in model.phases(0):
            losses = model.phase_losses(phase, model.networks(), torch.rand(4, 1, 28, 28), None, 0)
            assert torch.isfinite(losses["loss"])
            losses["loss"].backward()
        assert all(p.grad is not None for p in model.generator.parameters())
