"""Contractive autoencoder (Rifai et al. 2011): reconstruction + lambda * ||J_f(x)||_F^2.

J_f(x) is the Jacobian of the code h = f(x) with respect to the input; penalising it makes the code
insensitive to small changes of the input. For `--arch mlp`, h = sigmoid(Wx + b), so
J = diag(h (1 - h)) W and the penalty is exact and as cheap as a forward pass:
sum_j (h_j (1 - h_j))^2 sum_i W_ji^2. For `--arch conv` it is an unbiased estimate from
`--projections` random directions v ~ N(0, I), since E ||J v||^2 = ||J||_F^2; each J v is one
forward-mode product (torch.func.jvp, cheaper than a double backward), which training
differentiates like any other output.
"""

from __future__ import annotations

import torch

from gentool import noise
from gentool.errors import UsageError
from gentool.runtime.declaration import Option
from gentool.zoo import register
from gentool.zoo.ae import SigmoidCodeAE
from gentool.zoo.base import evenly_spaced, subset_size

# `jacobian_fro` is measured on an evenly spaced subset of about this many images unless `evaluate
# --full`: an exact conv Jacobian costs a forward-mode pass per pixel (about 0.4 s an image on two CPU cores).
JACOBIAN_IMAGES = 250

def exact_jacobian_fro(encode, x: torch.Tensor, chunk: int = 16) -> torch.Tensor:
    """Per-image ||d encode(x) / dx||_F from each image's full Jacobian (forward mode: one pass per pixel)."""
    jacobian = torch.func.vmap(torch.func.jacfwd(lambda image: encode(image[None])[0]))
    return torch.cat([jacobian(part).flatten(1).norm(dim=1) for part in x.split(chunk)])


@register
class CAE(SigmoidCodeAE):
    """Contractive autoencoder: a sigmoid code and the Frobenius norm of the encoder's Jacobian."""

    name = "cae"
    defaults = {**SigmoidCodeAE.defaults, "contraction_weight": 0.1, "projections": 4}
    evaluation_options = (Option("full", bool, False, "jacobian_fro on the whole split (default: 250 evenly spaced images)."),)

    def __init__(self, image_shape, hparams, num_classes=None):
        super().__init__(image_shape, hparams, num_classes)
        if self.hparams["projections"] < 1:
            raise UsageError(f"--projections must be at least 1, got {self.hparams['projections']}")

    def dense_jacobian_sq(self, code: torch.Tensor) -> torch.Tensor:
        """Exact per-image ||J||_F^2 of the mlp code h = sigmoid(Wx + b), given h."""
        weight = self.encoder[0][-1].weight  # W of the one dense layer (Flatten, Linear), then the sigmoid
        return (code * (1 - code)).pow(2) @ weight.pow(2).sum(1)

    def projected_jacobian_sq(self, x: torch.Tensor) -> torch.Tensor:
        """Unbiased per-image estimate of ||J||_F^2: the mean of ||J v||^2 over random v ~ N(0, I)."""
        k = self.hparams["projections"]
        copies = x.repeat(k, *[1] * (x.dim() - 1))
        _, jv = torch.func.jvp(self.encode, (copies,), (noise.randn_like(copies),))
        return jv.pow(2).sum(1).view(k, len(x)).mean(0)

    def jacobian_fro(self, x):
        """Exact per-image ||J_f(x)||_F."""
        if self.hparams["arch"] == "mlp":
            return self.dense_jacobian_sq(self.encode(x)).sqrt()
        return exact_jacobian_fro(self.encode, x)

    def metrics(self, x, y, settings):
        """Also `jacobian_fro`, over the split's evenly spaced JACOBIAN_IMAGES unless `full`."""
        out = super().metrics(x, y, settings)
        subset = evenly_spaced(x, settings, JACOBIAN_IMAGES)
        if len(subset):
            out["jacobian_fro"] = self.jacobian_fro(subset)
        return out

    def summary(self, means, vectors, settings):
        """Also `jacobian_images`, how many images `jacobian_fro` was measured on."""
        return {**super().summary(means, vectors, settings), "jacobian_images": subset_size(settings, JACOBIAN_IMAGES)}

    def losses(self, x, y=None):
        code = self.encode(x)
        rec = self.nll(self.decoder(code), x).mean()
        mlp = self.hparams["arch"] == "mlp"
        contraction = (self.dense_jacobian_sq(code) if mlp else self.projected_jacobian_sq(x)).mean()
        return {"loss": rec + self.hparams["contraction_weight"] * contraction, "reconstruction": rec,
                "contraction": contraction}
