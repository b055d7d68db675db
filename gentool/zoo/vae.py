"""Variational autoencoder (Kingma & Welling 2014): Gaussian encoder, Bernoulli or Gaussian decoder.

Loss = reconstruction NLL + beta * KL(q(z|x) || N(0, I)), the KL in closed form:
-1/2 * sum(1 + log s^2 - m^2 - s^2). `--arch mlp` is the classic 784-400-20 network.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gentool import noise
from gentool.runtime.declaration import Option
from gentool.zoo import register
from gentool.zoo.ae import AE, reconstruction_nll
from gentool.zoo.base import Graph, evenly_spaced, subset_size

# `evaluate` takes the IW bound on an evenly spaced subset of about this many images unless --full:
# K = 100 decoder passes an image cost about 13 ms on two CPU cores, over two minutes for the 10,000
# MNIST test images.
IW_IMAGES = 1_000


class GaussianEncoder(nn.Module):
    """The exported encoder graph: x -> (mean, logvar)."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, x):
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar


def kl_standard_normal(mean, logvar):
    return -0.5 * (1 + logvar - mean.pow(2) - logvar.exp()).sum(1)


def log_normal(z, mean, logvar):
    return -0.5 * (((z - mean) ** 2) / logvar.exp() + logvar + math.log(2 * math.pi)).sum(1)


@register
class VAE(AE):
    """Variational autoencoder (Bernoulli or Gaussian decoder, beta-weighted KL)."""

    name = "vae"
    defaults = {"arch": "conv", "latent_dim": 20, "hidden": 400, "likelihood": "bernoulli", "beta": 1.0}
    choices = {"arch": ("conv", "mlp"), "likelihood": ("bernoulli", "gaussian")}
    evaluation_options = (
        Option("iw_samples", int, 100, "Importance samples K for iw_nll_nats (0 skips it).", lambda k: k >= 0, "0 or more"),
        Option("full", bool, False, "iw_nll_nats on the whole split (default: 1,000 evenly spaced images, reported as iw_images)."),
    )

    def __init__(self, image_shape, hparams, num_classes=None):
        super().__init__(image_shape, hparams, num_classes)
        # Learned decoder noise scale for the Gaussian likelihood (one scalar for all pixels).
        self.log_sigma = nn.Parameter(torch.zeros(())) if self.hparams["likelihood"] == "gaussian" else None
        # Per latent dimension, the variance of the posterior means over training images (Burda et
        # al.'s activity): `manifold` sweeps the two most active dimensions by default.
        self.register_buffer("activity", torch.zeros(self.hparams["latent_dim"]))

    def code_features(self):
        return 2 * self.hparams["latent_dim"]

    def encode(self, x):
        return self.encoder(x).chunk(2, dim=1)

    def posterior_mean(self, x):
        return self.encode(x)[0]

    def nll(self, logits, x):
        return reconstruction_nll(logits, x, self.hparams["likelihood"], self.log_sigma)

    def elbo_terms(self, x) -> dict[str, torch.Tensor]:
        """Per-example reconstruction NLL, KL and -ELBO (beta = 1), one posterior sample."""
        mean, logvar = self.encode(x)
        z = mean + noise.randn_like(mean) * (0.5 * logvar).exp()
        rec = self.nll(self.decoder(z), x)
        kl = kl_standard_normal(mean, logvar)
        return {"reconstruction": rec, "kl": kl, "neg_elbo": rec + kl}

    def losses(self, x, y=None):
        t = {k: v.mean() for k, v in self.elbo_terms(x).items()}
        return {"loss": t["reconstruction"] + self.hparams["beta"] * t["kl"], **t}

    @torch.no_grad()
    def iw_nll(self, x, samples: int) -> torch.Tensor:
        """Importance-weighted bound on -log p(x) (Burda et al. 2016) with `samples` posterior draws."""
        mean, logvar = self.encode(x)
        log_w = []
        for _ in range(samples):
            z = mean + torch.randn_like(mean) * (0.5 * logvar).exp()
            log_pz = log_normal(z, torch.zeros_like(z), torch.zeros_like(z))
            log_w.append(-self.nll(self.decoder(z), x) + log_pz - log_normal(z, mean, logvar))
        return -(torch.logsumexp(torch.stack(log_w, 1), 1) - math.log(samples))

    @torch.no_grad()
    def after_epoch(self, batches) -> None:
        """The prior is N(0, I) by construction; only the dimensions' activity is measured."""
        self.activity.copy_(torch.cat([self.posterior_mean(x) for x in batches]).var(0))

    def graph_metadata(self):
        """Also the decoder likelihood (`gentool score` computes the -ELBO only for a Bernoulli one)
        and the dimensions' activity."""
        return {**super().graph_metadata(), "likelihood": self.hparams["likelihood"],
                "activity": [round(v, 6) for v in self.activity.tolist()]}

    def metrics(self, x, y, settings):
        """Also `neg_elbo_nats` and `kl_nats` (one posterior sample), `iw_nll_nats` (K = `iw_samples`
        importance samples, on the split's evenly spaced IW_IMAGES unless `full`; K = 0 skips it)
        and the posterior means, for `active_units`."""
        out = super().metrics(x, y, settings)
        terms = self.elbo_terms(x)
        out.update(neg_elbo_nats=terms["neg_elbo"], kl_nats=terms["kl"])
        subset = evenly_spaced(x, settings, IW_IMAGES)
        if settings["iw_samples"] and len(subset):
            out["iw_nll_nats"] = self.iw_nll(subset, settings["iw_samples"])
        out["posterior_mean"] = self.posterior_mean(x)
        return out

    def summary(self, means, vectors, settings):
        """Also `active_units`: dimensions whose posterior mean varies over the split with variance
        above 0.01 (Burda et al.'s criterion), and what the IW bound was taken on: `iw_samples` (K)
        and `iw_images`."""
        out = {**super().summary(means, vectors, settings),
               "active_units": int((vectors["posterior_mean"].var(0, ddof=1) > 0.01).sum())}
        if settings["iw_samples"]:
            out.update(iw_samples=settings["iw_samples"], iw_images=subset_size(settings, IW_IMAGES))
        return out

    def graphs(self, batch=2):
        graphs = super().graphs(batch)
        graphs["encoder"] = Graph(GaussianEncoder(self.encoder), graphs["encoder"].inputs, ["x"], ["mean", "logvar"])
        return graphs
