"""Undercomplete autoencoder: x -> code -> x, trained on reconstruction error alone."""

from __future__ import annotations

import json
import math

import torch
import torch.nn.functional as F
from torch import nn

from gentool.zoo import register
from gentool.zoo.base import GenerativeModel, Graph
from gentool.zoo.blocks import encoder_decoder


def reconstruction_nll(logits: torch.Tensor, x: torch.Tensor, kind: str, log_sigma=None) -> torch.Tensor:
    """Per-example negative log-likelihood (nats) of x under the decoder output, summed over pixels.

    `bernoulli`/`bce`: cross-entropy against sigmoid(logits); `gaussian`: N(x; sigmoid(logits), sigma^2)
    with sigma = exp(log_sigma); `mse`: half the squared error (a unit-variance Gaussian up to a constant).
    """
    if kind in ("bernoulli", "bce"):
        nll = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    elif kind == "gaussian":
        nll = 0.5 * ((x - torch.sigmoid(logits)) / log_sigma.exp()) ** 2 + log_sigma + 0.5 * math.log(2 * math.pi)
    else:
        nll = 0.5 * (x - torch.sigmoid(logits)) ** 2
    return nll.flatten(1).sum(1)


class SigmoidDecoder(nn.Module):
    """The exported decoder graph: z -> image in [0, 1]."""

    def __init__(self, decoder: nn.Module):
        super().__init__()
        self.decoder = decoder

    def forward(self, z):
        return torch.sigmoid(self.decoder(z))


@register
class AE(GenerativeModel):
    name = "ae"
    defaults = {"arch": "conv", "latent_dim": 32, "hidden": 400, "loss": "bce"}
    choices = {"arch": ("conv", "mlp"), "loss": ("bce", "mse")}
    # Fit a full-covariance Gaussian to the training codes after each epoch so that `sample` works.
    # Families with very wide codes (sparse, overcomplete) turn it off: the matrix would not fit.
    code_prior = True

    def __init__(self, image_shape, hparams):
        super().__init__(image_shape, hparams)
        d = self.hparams["latent_dim"]
        self.encoder, self.decoder = encoder_decoder(
            self.hparams["arch"], self.image_shape, self.code_features(), d, self.hparams["hidden"]
        )
        if self.code_prior:
            self.register_buffer("prior_mean", torch.zeros(d))
            self.register_buffer("prior_cov", torch.eye(d))

    def code_features(self) -> int:
        return self.hparams["latent_dim"]

    def encode(self, x):
        return self.encoder(x)

    def posterior_mean(self, x):
        return self.encode(x)

    def reconstruct(self, x):
        return torch.sigmoid(self.decoder(self.posterior_mean(x)))

    def losses(self, x, y=None):
        rec = reconstruction_nll(self.decoder(self.encode(x)), x, self.hparams["loss"]).mean()
        return {"loss": rec, "reconstruction": rec}

    @torch.no_grad()
    def fit_prior(self, batches) -> None:
        if not self.code_prior:
            return
        codes = torch.cat([self.posterior_mean(x) for x in batches]).double()
        self.prior_mean.copy_(codes.mean(0))
        self.prior_cov.copy_(torch.cov(codes.T).reshape_as(self.prior_cov))

    def graphs(self, batch=2):
        x = torch.rand(batch, *self.image_shape)
        z = torch.randn(batch, self.hparams["latent_dim"])
        return {
            "encoder": Graph(self.encoder, (x,), ["x"], ["code"]),
            "decoder": Graph(SigmoidDecoder(self.decoder), (z,), ["z"], ["x"]),
        }

    def graph_metadata(self):
        meta = {"latent_dim": str(self.hparams["latent_dim"])}
        if self.code_prior:
            meta["prior"] = json.dumps({"mean": self.prior_mean.tolist(), "cov": self.prior_cov.tolist()})
        return meta
