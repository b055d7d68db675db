"""sparse-ae, cae and `ae --arch linear`: penalties, Jacobians, the PCA claim, and the verbs end to end."""

import io
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import gentool, png
from gentool import checkpoint, data as datasets, evaluate, images, train as training, zoo
from gentool.errors import UsageError
from gentool.zoo.cae import JACOBIAN_IMAGES, exact_jacobian_fro
from gentool.zoo.sparse_ae import sparsity_penalty

LINEAR = ("--arch", "linear", "--loss", "mse", "--latent-dim", "8")


def test_families_and_their_options():
    assert {"sparse-ae", "cae"} <= set(zoo.families())
    assert zoo.parse_hparams(zoo.get("ae"), ["--arch", "linear"]) == {"arch": "linear"}
    with pytest.raises(UsageError, match="must be one of"):
        zoo.parse_hparams(zoo.get("vae"), ["--arch", "linear"])
    with pytest.raises(UsageError, match="needs --loss mse"):
        zoo.get("ae")((1, 28, 28), {"arch": "linear"})
    with pytest.raises(UsageError, match="--rho must be in"):
        zoo.get("sparse-ae")((1, 28, 28), {"rho": 1.0})
    sparse = zoo.get("sparse-ae")((1, 28, 28), {})
    assert sparse.hparams["latent_dim"] > 28 * 28 and not hasattr(sparse, "prior_mean")


def test_linear_ae_is_affine_both_ways_and_unclipped():
    torch.manual_seed(0)
    model = zoo.get("ae")((1, 28, 28), {"arch": "linear", "loss": "mse", "latent_dim": 3})
    x, z = torch.rand(2, 1, 28, 28), torch.randn(2, 3)
    with torch.no_grad():
        for f, a in [(model.encode, x), (model.decode, z)]:
            assert torch.allclose(f(3 * a) - f(2 * a), f(a) - f(0 * a), atol=1e-5)
        far = model.decode(100 * z)
        assert far.min() < 0 or far.max() > 1
        graph = model.graphs()["decoder"]
        assert torch.equal(graph.module(z), model.decode(z))
    expected = 0.5 * (x - model.reconstruct(x)).pow(2).flatten(1).sum(1).mean()
    assert torch.allclose(model.losses(x)["loss"], expected)


def test_sparsity_penalties():
    h = torch.tensor([[0.1, 0.5], [0.3, 0.1]])
    assert float(sparsity_penalty(h, "l1", 0.05)) == pytest.approx((0.6 + 0.4) / 2)
    kl = sum(0.05 * math.log(0.05 / q) + 0.95 * math.log(0.95 / (1 - q)) for q in (0.2, 0.3))
    assert float(sparsity_penalty(h, "kl", 0.05)) == pytest.approx(kl, rel=1e-5)
    assert float(sparsity_penalty(torch.full((4, 3), 0.05), "kl", 0.05)) == pytest.approx(0, abs=1e-6)
    assert float(sparsity_penalty(h, "none", 0.05)) == 0

    torch.manual_seed(0)
    model = zoo.get("sparse-ae")((1, 28, 28), {"latent_dim": 32, "sparsity_weight": 2.0})
    losses = model.losses(torch.rand(4, 1, 28, 28))
    assert torch.allclose(losses["loss"], losses["reconstruction"] + 2 * losses["sparsity"])
    with torch.no_grad():
        codes = model.encode(torch.rand(4, 1, 28, 28))
    assert codes.shape == (4, 32) and 0 < float(codes.min()) and float(codes.max()) < 1


def test_cae_closed_form_is_the_squared_jacobian_norm():
    torch.manual_seed(0)
    model = zoo.get("cae")((1, 4, 4), {"latent_dim": 6})
    x = torch.rand(3, 1, 4, 4)
    jacobians = [torch.autograd.functional.jacobian(lambda image: model.encode(image[None])[0], image) for image in x]
    expected = torch.stack([j.pow(2).sum() for j in jacobians])
    assert torch.allclose(model.dense_jacobian_sq(model.encode(x)), expected, rtol=1e-5)
    assert torch.allclose(model.jacobian_fro(x), expected.sqrt(), rtol=1e-5)
    assert torch.allclose(exact_jacobian_fro(model.encode, x), expected.sqrt(), rtol=1e-5)
    losses = model.losses(x)
    assert torch.allclose(losses["contraction"], expected.mean(), rtol=1e-5)
    assert torch.allclose(losses["loss"], losses["reconstruction"] + 0.1 * losses["contraction"])


def test_cae_conv_estimate_is_unbiased_and_trains():
    torch.manual_seed(0)
    model = zoo.get("cae")((1, 8, 8), {"arch": "conv", "latent_dim": 5, "hidden": 16, "projections": 4000})
    x = torch.rand(2, 1, 8, 8)
    # ||Jv||^2 has relative spread at most sqrt(2 / projections) = 2%
    assert torch.allclose(model.projected_jacobian_sq(x), exact_jacobian_fro(model.encode, x) ** 2, rtol=0.1)
    model.hparams["projections"] = 2
    model.losses(x)["loss"].backward()
    first_conv = model.encoder[0].net[0].weight
    assert first_conv.grad is not None and torch.isfinite(first_conv.grad).all()


def principal_angle_degrees(a: np.ndarray, b: np.ndarray) -> float:
    """The largest principal angle between the column spaces of a and b."""
    cosines = np.linalg.svd(np.linalg.qr(a)[0].T @ np.linalg.qr(b)[0], compute_uv=False)
    return math.degrees(math.acos(min(1.0, cosines.min())))


def test_linear_ae_learns_the_pca_subspace():
    """Baldi & Hornik: the linear autoencoder's optimum spans the top principal subspace (Adam, 1,500 steps)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # steps this small run faster on one thread, and far faster on a busy machine
    try:
        angle = train_linear_ae_against_pca(m=4, n=3000)
    finally:
        torch.set_num_threads(threads)
    assert angle < 5


def train_linear_ae_against_pca(m: int, n: int) -> float:
    """Train a linear ae with m codes on n MNIST images; the angle between its decoder's and PCA's subspaces."""
    x = torch.from_numpy(datasets.load("mnist", "train", n).images).float() / 255
    centered = (x.flatten(1) - x.flatten(1).mean(0)).double().numpy()
    top = np.linalg.svd(centered, full_matrices=False)[2][:m].T
    torch.manual_seed(0)
    model = zoo.get("ae")(tuple(x.shape[1:]), {"arch": "linear", "loss": "mse", "latent_dim": m})
    optimizer = torch.optim.Adam(model.parameters())
    for lr, epochs in [(1e-2, 12), (3e-3, 2), (1e-3, 2)]:
        optimizer.param_groups[0]["lr"] = lr
        for _ in range(epochs):
            for idx in torch.randperm(n).split(32):
                loss = model.losses(x[idx])["loss"]
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    return principal_angle_degrees(model.decoder[0].weight.detach().double().numpy(), top)


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """One-epoch runs on 256 MNIST images: sparse-ae, cae and the linear ae."""
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for name, model, args in [("sparse-ae", "sparse-ae", ()), ("cae", "cae", ()), ("linear", "ae", LINEAR)]:
        out[name] = training.run(training.Options(model=model, data="mnist", epochs=1, batch_size=64, limit=256,
                                                  out=root / name, device="cpu", hparam_args=args))
    return out


BASIC = {"mse", "bce", "psnr_db", "ssim"}
SPARSITY, JACOBIAN = {"mean_activation", "fraction_active"}, {"jacobian_fro"}


def test_evaluate_reports_sparsity_and_the_jacobian(tiny_runs):
    sparse = evaluate.evaluate(tiny_runs["sparse-ae"], limit=300, device="cpu")
    assert BASIC | SPARSITY <= set(sparse) and not JACOBIAN & set(sparse)
    assert 0 < sparse["mean_activation"] < 1 and 0 <= sparse["fraction_active"] <= 1
    cae = evaluate.evaluate(tiny_runs["cae"], limit=2 * JACOBIAN_IMAGES + 1, device="cpu")
    assert BASIC | JACOBIAN <= set(cae) and not SPARSITY & set(cae)
    model, _ = checkpoint.load(tiny_runs["cae"])
    every_other = torch.from_numpy(datasets.load("mnist", "test", 2 * JACOBIAN_IMAGES + 1).images[::2]).float() / 255
    with torch.no_grad():
        assert cae["jacobian_fro"] == pytest.approx(float(model.jacobian_fro(every_other).mean()), rel=1e-5)
    assert cae["jacobian_images"] == len(every_other) == JACOBIAN_IMAGES + 1
    linear = set(evaluate.evaluate(tiny_runs["linear"], limit=300, device="cpu"))
    assert BASIC <= linear and not (SPARSITY | JACOBIAN) & linear


@pytest.mark.parametrize("name", ["sparse-ae", "cae", "linear"])
def test_runtime_verbs_without_torch(tiny_runs, digits, tmp_path, name):
    run = tiny_runs[name]
    gentool("encode", run, *digits, "-o", tmp_path / "codes.npy", torch_free=True)
    codes = np.load(tmp_path / "codes.npy")
    model, meta = checkpoint.load(run)
    assert codes.shape == (2, meta["hparams"]["latent_dim"])
    if name != "linear":
        assert 0 < codes.min() and codes.max() < 1
    decoded = gentool("decode", run, tmp_path / "codes.npy", torch_free=True).stdout
    assert np.array_equal(png(decoded), png(gentool("reconstruct", run, *digits, torch_free=True).stdout))
    # the runtime's reconstruction is the torch model's, clipped only when written as an image
    x = images.read_images([str(d) for d in digits], 1)[0]
    with torch.no_grad():
        expected = images.make_grid(model.reconstruct(torch.from_numpy(x)).numpy(), nrow=2)
    got = np.asarray(Image.open(io.BytesIO(decoded)), float) / 255
    assert np.abs(got - np.clip(expected, 0, 1).squeeze()).max() <= 1 / 255 + 1e-6


def test_sparsity_weight_defaults_by_kind_and_is_recorded(tiny_runs):
    sparse_ae = zoo.get("sparse-ae")
    weights = {kind: sparse_ae((1, 28, 28), zoo.parse_hparams(sparse_ae, ["--sparsity", kind])).hparams["sparsity_weight"]
               for kind in ("kl", "l1", "none")}
    assert weights == {"kl": 3.0, "l1": 0.1, "none": 0.0}
    given = zoo.parse_hparams(sparse_ae, ["--sparsity", "l1", "--sparsity-weight", "2"])
    assert sparse_ae((1, 28, 28), given).hparams["sparsity_weight"] == 2.0
    assert checkpoint.read_meta(tiny_runs["sparse-ae"])["hparams"]["sparsity_weight"] == 3.0


def test_wide_codes_have_no_prior_to_sample(tiny_runs):
    proc = gentool("sample", tiny_runs["sparse-ae"], "-n", "4", torch_free=True, check=False)
    assert proc.returncode == 2 and "has none" in proc.stderr


def train_and_evaluate(tmp_path, name, *args):
    run = tmp_path / name
    gentool("train", *args, "--data", "mnist", "--out", run)
    return json.loads(gentool("evaluate", run, "--json").stdout)


@pytest.mark.slow
def test_sparse_ae_floors(tmp_path):
    kl = train_and_evaluate(tmp_path, "kl", "sparse-ae", "--sparsity", "kl", "--rho", "0.05")
    assert abs(kl["mean_activation"] - 0.05) <= 0.02
    l1 = train_and_evaluate(tmp_path, "l1", "sparse-ae", "--sparsity", "l1")
    plain = train_and_evaluate(tmp_path, "none", "sparse-ae", "--sparsity", "none")
    assert l1["fraction_active"] < plain["fraction_active"]


@pytest.mark.slow
def test_contraction_shrinks_the_jacobian(tmp_path):
    cae = train_and_evaluate(tmp_path, "cae", "cae")
    plain = train_and_evaluate(tmp_path, "plain", "cae", "--contraction-weight", "0")
    assert cae["jacobian_fro"] < plain["jacobian_fro"]
