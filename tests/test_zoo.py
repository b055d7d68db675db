import math

import pytest
import torch

from gentool import zoo
from gentool.errors import UsageError
from gentool.zoo.vae import kl_standard_normal


def test_registry_and_unknown_model():
    assert {"ae", "vae"} <= set(zoo.families())
    with pytest.raises(UsageError, match="unknown model 'nope'"):
        zoo.get("nope")


def test_parse_hparams_types_choices_and_flags():
    vae = zoo.get("vae")
    parsed = zoo.parse_hparams(vae, ["--beta", "4", "--likelihood=gaussian", "--latent-dim", "2"])
    assert parsed == {"beta": 4.0, "likelihood": "gaussian", "latent_dim": 2}
    with pytest.raises(UsageError, match="must be one of"):
        zoo.parse_hparams(vae, ["--likelihood", "poisson"])
    with pytest.raises(UsageError, match="expects a float"):
        zoo.parse_hparams(vae, ["--beta", "much"])
    with pytest.raises(UsageError, match="has no option --epoch"):
        zoo.parse_hparams(vae, ["--epoch", "3"])
    with pytest.raises(UsageError, match="needs a value"):
        zoo.parse_hparams(vae, ["--beta"])


def test_classic_mlp_vae_is_784_400_20():
    model = zoo.get("vae")((1, 28, 28), {"arch": "mlp"})
    sizes = [p.shape for p in model.parameters()]
    assert sizes == [(400, 784), (400,), (40, 400), (40,), (400, 20), (400,), (784, 400), (784,)]
    assert sum(p.numel() for p in model.parameters()) == 652824


def test_kl_closed_form_matches_monte_carlo():
    torch.manual_seed(0)
    mean, logvar = torch.randn(1, 3), torch.randn(1, 3)
    z = mean + torch.randn(200_000, 3) * (0.5 * logvar).exp()
    log_q = (-0.5 * ((z - mean) ** 2 / logvar.exp() + logvar + math.log(2 * math.pi))).sum(1)
    log_p = (-0.5 * (z**2 + math.log(2 * math.pi))).sum(1)
    assert float(kl_standard_normal(mean, logvar)) == pytest.approx(float((log_q - log_p).mean()), rel=0.02)


@pytest.mark.parametrize("name", ["ae", "vae"])
@pytest.mark.parametrize("arch", ["conv", "mlp"])
def test_losses_backprop_and_graph_shapes(name, arch):
    torch.manual_seed(0)
    model = zoo.get(name)((1, 28, 28), {"arch": arch})
    losses = model.losses(torch.rand(4, 1, 28, 28))
    losses["loss"].backward()
    assert all(torch.isfinite(v) for v in losses.values())
    graphs = model.graphs()
    assert set(graphs) == {"encoder", "decoder"}
    x = graphs["decoder"].module(*graphs["decoder"].inputs).detach()
    assert x.shape == (2, 1, 28, 28) and 0 <= float(x.min()) and float(x.max()) <= 1


def test_gaussian_likelihood_learns_its_scale():
    model = zoo.get("vae")((1, 28, 28), {"likelihood": "gaussian", "arch": "mlp"})
    assert model.log_sigma is not None and model.log_sigma.requires_grad
    model.losses(torch.rand(4, 1, 28, 28))["loss"].backward()
    assert model.log_sigma.grad is not None


def test_importance_weighted_bound_is_tighter_than_the_elbo():
    torch.manual_seed(0)
    model = zoo.get("vae")((1, 28, 28), {"arch": "mlp"}).eval()
    x = torch.rand(16, 1, 28, 28)
    with torch.no_grad():
        neg_elbo = torch.stack([model.elbo_terms(x)["neg_elbo"] for _ in range(20)]).mean()
        iw = model.iw_nll(x, 50).mean()
    assert iw < neg_elbo


def test_ae_prior_fits_the_codes():
    torch.manual_seed(0)
    model = zoo.get("ae")((1, 28, 28), {"arch": "mlp", "latent_dim": 4}).eval()
    x = torch.rand(256, 1, 28, 28)
    model.after_epoch([x[:128], x[128:]])
    codes = model.posterior_mean(x).detach()
    assert torch.allclose(model.prior_mean.float(), codes.mean(0), atol=1e-5)
    assert torch.allclose(model.prior_cov.float(), torch.cov(codes.T), atol=1e-5)


def test_conv_arch_needs_sides_divisible_by_four():
    with pytest.raises(UsageError, match="divisible by 4"):
        zoo.get("ae")((1, 30, 30), {})
