"""Undercomplete autoencoder: x -> code -> x, trained on reconstruction error alone.

`--arch linear` is the linear autoencoder: one dense layer each way and no nonlinearity anywhere,
not even on the output, trained on the squared error. Its optimum spans the top principal subspace
of the centered data (Baldi & Hornik 1989), so it is PCA learned by gradient descent.
`SigmoidCodeAE` is the base of the wide sigmoid-code families (sparse-ae, cae).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from gentool import metrics
from gentool.errors import UsageError
from gentool.zoo import register
from gentool.zoo.base import GenerativeModel, Graph
from gentool.zoo.blocks import encoder_decoder


def reconstruction_nll(logits: torch.Tensor, x: torch.Tensor, kind: str, log_sigma=None, output=torch.sigmoid) -> torch.Tensor:
    """Per-example negative log-likelihood (nats) of x under the decoder output, summed over pixels.

    `bernoulli`/`bce`: cross-entropy against sigmoid(logits); `gaussian`: N(x; output(logits), sigma^2)
    with sigma = exp(log_sigma); `mse`: half the squared error (a unit-variance Gaussian up to a constant).
    `output` maps decoder outputs to pixel values: the sigmoid, or the identity for a linear decoder.
    """
    if kind in ("bernoulli", "bce"):
        nll = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    elif kind == "gaussian":
        nll = 0.5 * ((x - output(logits)) / log_sigma.exp()) ** 2 + log_sigma + 0.5 * math.log(2 * math.pi)
    else:
        nll = 0.5 * (x - output(logits)) ** 2
    return nll.flatten(1).sum(1)


@register
class AE(GenerativeModel):
    """Undercomplete autoencoder; a Gaussian fitted to its training codes lets it sample."""

    name = "ae"
    defaults = {"arch": "conv", "latent_dim": 32, "hidden": 400, "loss": "bce"}
    choices = {"arch": ("conv", "mlp", "linear"), "loss": ("bce", "mse")}
    # Fit a full-covariance Gaussian to the training codes after each epoch so that `sample` works.
    # Families with very wide codes (sparse, overcomplete) turn it off: the matrix would not fit.
    code_prior = True

    def __init__(self, image_shape, hparams, num_classes=None):
        super().__init__(image_shape, hparams, num_classes)
        linear = self.hparams["arch"] == "linear"
        if linear and self.hparams["loss"] == "bce":
            raise UsageError("--arch linear needs --loss mse (cross-entropy needs a sigmoid on the output)")
        d = self.hparams["latent_dim"]
        self.encoder, self.decoder = self.build_networks()
        # Decoder outputs -> pixel values; the linear autoencoder keeps them as they are (no clipping either).
        self.output = nn.Identity() if linear else nn.Sigmoid()
        if self.code_prior:
            self.register_buffer("prior_mean", torch.zeros(d))
            self.register_buffer("prior_cov", torch.eye(d))

    def build_networks(self) -> tuple[nn.Module, nn.Module]:
        """The (encoder, decoder) pair; the decoder emits logits for `self.output`."""
        h = self.hparams
        return encoder_decoder(h["arch"], self.image_shape, self.code_features(), h["latent_dim"], h["hidden"])

    def code_features(self) -> int:
        return self.hparams["latent_dim"]

    def encode(self, x):
        return self.encoder(x)

    def decode(self, z):
        """Codes -> images; the exported decoder graph computes the same."""
        return self.output(self.decoder(z))

    def posterior_mean(self, x):
        return self.encode(x)

    def reconstruct(self, x):
        return self.decode(self.posterior_mean(x))

    def nll(self, logits, x):
        return reconstruction_nll(logits, x, self.hparams["loss"], output=self.output)

    def losses(self, x, y=None):
        rec = self.nll(self.decoder(self.encode(x)), x).mean()
        return {"loss": rec, "reconstruction": rec}

    @torch.no_grad()
    def after_epoch(self, batches) -> None:
        """Fit the code prior: a full-covariance Gaussian over the codes of the training images."""
        if not self.code_prior:
            return
        codes = torch.cat([self.posterior_mean(x) for x in batches]).double()
        self.prior_mean.copy_(codes.mean(0))
        cov = torch.cov(codes.T).reshape_as(self.prior_cov)
        # A ridge keeps the covariance positive-definite (so it has a Cholesky factor) when there are
        # fewer training codes than dimensions.
        ridge = 1e-6 * (cov.diagonal().mean() + 1e-6)
        self.prior_cov.copy_(cov + ridge * torch.eye(len(cov), dtype=cov.dtype, device=cov.device))

    def graphs(self, batch=2):
        x = torch.rand(batch, *self.image_shape)
        z = torch.randn(batch, self.hparams["latent_dim"])
        return {
            "encoder": Graph(self.encoder, (x,), ["x"], ["code"]),
            "decoder": Graph(nn.Sequential(self.decoder, self.output), (z,), ["z"], ["x"]),
        }

    def graph_metadata(self):
        meta = {"latent_dim": self.hparams["latent_dim"]}
        if self.code_prior:
            meta["prior"] = {"mean": self.prior_mean.tolist(), "cov": self.prior_cov.tolist()}
        return meta

    def metrics(self, x, y, settings):
        return metrics.reconstruction(x.cpu().numpy(), self.reconstruct(x).cpu().numpy())

    def summary(self, means, vectors, settings):
        """`compression_ratio`: the bytes of a uint8 image over those of its float32 code."""
        return {"compression_ratio": math.prod(self.image_shape) / (4 * self.hparams["latent_dim"])}


class SigmoidCodeAE(AE):
    """Base of the families whose code is a wide layer of sigmoid activations in (0, 1).

    `--arch mlp` is the classic one-hidden-layer network: the code is h = sigmoid(Wx + b) and the
    decoder is one dense layer back (`--hidden` only sizes the conv networks' dense layer);
    `--arch conv` puts the sigmoid on the conv encoder's output. The default code (1024 units) is
    wider than a 28x28 image, too wide for a fitted Gaussian prior, so these models do not `sample`.
    """

    defaults = {"arch": "mlp", "latent_dim": 1024, "hidden": 400, "loss": "bce"}
    choices = {"arch": ("mlp", "conv"), "loss": ("bce", "mse")}
    code_prior = False

    def build_networks(self):
        h = self.hparams
        arch = "linear" if h["arch"] == "mlp" else h["arch"]
        encoder, decoder = encoder_decoder(arch, self.image_shape, self.code_features(), h["latent_dim"], h["hidden"])
        return nn.Sequential(encoder, nn.Sigmoid()), decoder
