"""The adversarial families (`gan`, `wgan-gp`): their losses, training on MNIST (also under
torchrun), conditional generation, truncation, latent arithmetic, and torch-free sampling."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import gentool, png
from gentool import checkpoint, zoo
from gentool.runtime import latent
from gentool.runtime.artifact import Artifact
from gentool.zoo.gan import discriminator_loss, generator_loss
from gentool.zoo.wgan_gp import gradient_penalty


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
    gentool("train", "gan", "--data", "mnist", "--limit", "1024", "--epochs", "1", "--batch-size", "64", "--width", "16", "--hidden", "64", "--out", run)
    return run


def test_trains_logs_both_players_and_samples_torch_free(gan):
    record = json.loads((gan / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"train_discriminator_loss", "train_generator_loss", "train_discriminator_d_real", "train_discriminator_d_fake", "fid_1k"} <= record.keys()
    assert record["fid_1k"] > 0 and not any(k.startswith("train_seen") for k in record)
    grid = png(gentool("sample", gan, "-n", "16", "--seed", "3", torch_free=True).stdout)
    again = png(gentool("sample", gan, "-n", "16", "--seed", "3", torch_free=True).stdout)
    assert np.array_equal(grid, again) and grid.std() > 0.01
    assert sorted(p.name for p in gan.glob("*.onnx")) == ["generator.onnx"]
    from gentool import runs

    # evaluate of the run, or of its checkpoint file, is the quality of its samples (read from the catalog)
    assert runs.evaluates_samples(gan) and runs.evaluates_samples(gan / "model.safetensors")


def test_every_loss_trains_a_step():
    torch.manual_seed(0)
    for loss in ("ns", "minimax", "lsgan"):
        model = zoo.get("gan")((1, 28, 28), {"loss": loss, "width": 8, "hidden": 16}, 10)
        for phase in model.phases(0):
            losses = model.phase_losses(phase, model.networks(), torch.rand(4, 1, 28, 28), None, 0)
            assert torch.isfinite(losses["loss"])
            losses["loss"].backward()
        assert all(p.grad is not None for p in model.generator.parameters())


def test_the_gradient_penalty_of_a_linear_critic_is_its_weight_norm_against_one():
    """D(x) = w.x has gradient w everywhere: the penalty is (||w|| - 1)^2 at any point."""
    w = torch.randn(1, 1, 4, 4)
    critic = lambda x: (x * w).flatten(1).sum(1)  # noqa: E731
    real, fake = torch.rand(5, 1, 4, 4), torch.rand(5, 1, 4, 4)
    assert float(gradient_penalty(critic, real, fake, ())) == pytest.approx((float(w.norm()) - 1) ** 2, rel=1e-5)


def test_wgan_gp_steps_the_generator_once_per_n_critic_steps():
    model = zoo.get("wgan-gp")((1, 28, 28), {"width": 8, "hidden": 16, "n_critic": 3}, 10)
    assert [model.phases(s) for s in range(4)] == [["critic"], ["critic"], ["critic", "generator"], ["critic"]]
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.critic.modules())


@pytest.fixture(scope="module")
def conditional(tmp_path_factory):
    run = tmp_path_factory.mktemp("cgan") / "run"
    gentool("train", "gan", "--conditional", "--data", "mnist", "--limit", "512", "--epochs", "1", "--batch-size", "64", "--width", "8", "--hidden", "32", "--out", run)
    return run


def test_a_conditional_generator_draws_the_label_asked_for(conditional, gan):
    from gentool import images

    art = Artifact(str(conditional), "cpu")
    assert art.input_names("generator") == ["z", "label"]
    grid = png(gentool("sample", conditional, "-n", "4", "--seed", "1", "--label", "3", "--nrow", "4", torch_free=True).stdout)
    threes = images.make_grid(latent.sample(art, 4, 1, np.full(4, 3)), nrow=4)[0]
    fours = images.make_grid(latent.sample(art, 4, 1, np.full(4, 4)), nrow=4)[0]
    assert np.abs(grid - threes).max() <= 1 / 255 + 1e-6 < np.abs(grid - fours).max()
    for artifact, label, message in ((conditional, "10", "no class '10'"), (conditional, "²", "no class '²'"), (conditional, "٣", "no class '٣'"),
                                     (gan, "3", "not conditional")):
        proc = gentool("sample", artifact, "--label", label, torch_free=True, check=False)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr


def test_truncated_draws_are_the_truncated_normal_in_one_pass(gan):
    """Kolmogorov-Smirnov against scipy's truncated normal, for a wide and a tiny truncation (the
    old redraw loop never ended at 1e-9), the same draws for the same seed."""
    from scipy import stats

    for truncation in (0.5, 2.0, 1e-9):
        eps = latent.standard_normals(np.random.default_rng(0), (500, 100), truncation)
        assert eps.shape == (500, 100) and np.abs(eps).max() <= truncation
        assert stats.kstest(eps.ravel(), stats.truncnorm(-truncation, truncation).cdf).pvalue > 1e-3
        assert np.array_equal(eps, latent.standard_normals(np.random.default_rng(0), (500, 100), truncation))
    assert png(gentool("sample", gan, "-n", "4", "--truncation", "1e-9", torch_free=True).stdout).std() > 0.01
    proc = gentool("sample", gan, "--truncation", "0", torch_free=True, check=False)
    assert proc.returncode == 2 and "--truncation must be a positive number" in proc.stderr
    proc = gentool("sample", gan, "--truncation", "inf", torch_free=True, check=False)
    assert proc.returncode == 2 and "--truncation must be a positive number, got inf" in proc.stderr
    assert png(gentool("sample", gan, "-n", "4", "--truncation", "0.7", torch_free=True).stdout).std() > 0.01


def test_arithmetic_decodes_each_terms_mean_and_their_sum(gan, runs, tmp_path):
    from gentool import images

    art = Artifact(str(gan), "cpu")
    strip = png(gentool("arithmetic", gan, "--plus-seeds", "3,9", "--minus-seeds", "4", "--plus-seeds", "5", torch_free=True).stdout)
    a, b, c = (latent.seed_codes(art, seeds, "test").mean(0) for seeds in ([3, 9], [5], [4]))
    expected = images.make_grid(latent.decode(art, np.stack([a, b, c, a + b - c])), nrow=4)[0]
    assert np.abs(strip - expected).max() <= 1 / 255 + 1e-6
    # image terms, for a model with an encoder: a folder's mean code
    ae = Artifact(str(runs["ae"]), "cpu")
    folder = tmp_path / "threes"
    folder.mkdir()
    x = np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32)
    for i, image in enumerate(x):
        images.write_image(image, str(folder / f"{i}.png"))
    read = np.stack([images.read_images([str(folder / f"{i}.png")], 1, (28, 28))[0][0] for i in range(3)])
    strip = png(gentool("arithmetic", runs["ae"], "--plus", folder, "--minus", folder / "0.png", torch_free=True).stdout)
    mean, first = latent.codes(ae, read).mean(0), latent.codes(ae, read[:1])[0]
    expected = images.make_grid(latent.decode(ae, np.stack([mean, first, mean - first])), nrow=3)[0]
    assert np.abs(strip - expected).max() <= 1 / 255 + 1e-6
    for args, message in ((["--plus", folder, "--plus-seeds", "1"], "not both"), (["--minus-seeds", "1"], "a term to add"),
                          (["--plus-seeds", "x"], "takes one or more seeds")):
        proc = gentool("arithmetic", runs["ae"], *args, torch_free=True, check=False)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr


def test_torchrun_two_processes_train_the_adversarial_weights_of_one(tmp_path):
    """Two players under 2 CPU processes, with the BatchNorm trap (each process would normalise by
    its half of the batch: WorldBatchNorm all-reduces the statistics; WGAN-GP's generator has
    BatchNorms), the gradient penalty (a keyed interpolation per example) and a generator phase that
    runs every n-th step only: the weights of the single-process run."""
    args = ["wgan-gp", "--data", "mnist", "--limit", "192", "--batch-size", "64", "--epochs", "1", "--width", "8", "--hidden", "32", "--device", "cpu",
            "--no-export"]  # the weights are what is compared
    gentool("train", *args, "--out", tmp_path / "one")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "gentool", "train"]
    proc = subprocess.run([*torchrun, *args, "--out", str(tmp_path / "two")], capture_output=True, cwd=tmp_path,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    one, two = (load_file(str(tmp_path / d / checkpoint.WEIGHTS)) for d in ("one", "two"))
    assert one.keys() == two.keys() and max(float((one[k].double() - two[k].double()).abs().max()) for k in one) < 1e-4


def test_the_drawing_generator_is_the_moving_average_of_the_weights():
    model = zoo.get("gan")((1, 28, 28), {"width": 8, "hidden": 16, "ema": 0.9}, 10)
    average = [p.clone() for p in model.generator_ema.parameters()]
    with torch.no_grad():
        for p in model.generator.parameters():
            p.add_(1.0)
    model.after_step(1000)  # decay min(0.9, 1001 / 1010) = 0.9
    for before, now, live in zip(average, model.generator_ema.parameters(), model.generator.parameters()):
        assert torch.allclose(now, 0.9 * before + 0.1 * live)
    assert model.graphs()["generator"].module.generator is model.generator_ema
    last = zoo.get("gan")((1, 28, 28), {"width": 8, "hidden": 16, "ema": 0.0}, 10)
    assert last.graphs()["generator"].module.generator is last.generator and not hasattr(last, "generator_ema")
