"""Generative adversarial network (Goodfellow et al. 2014) with DCGAN networks (Radford et al. 2016).

The generator maps z ~ N(0, I) through a dense layer to 128 maps at a quarter of the image size, then
two 4x4 stride-2 transposed convolutions (BatchNorm, ReLU) to the image (tanh); the discriminator
mirrors it with stride-2 convolutions (LeakyReLU 0.2, BatchNorm on the second) and a dense logit. It
sees images scaled to [-1, 1]; the exported `generator` graph maps its tanh back to [0, 1].

Each step updates the discriminator, then the generator, each on its own fresh z (keyed per
example). `--loss ns` (the default): the generator maximises log D(G(z)), the non-saturating loss
the seeds recommend; `minimax`: it minimises log(1 - D(G(z))), the game's own term, which saturates
when the discriminator wins; `lsgan`: least squares (Mao et al. 2017), targets 1 and 0. Adam with
beta1 = 0.5, rate 2e-4, as DCGAN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gentool.noise import randn_like
from gentool.zoo import register
from gentool.zoo.base import GenerativeModel, Graph
from gentool.zoo.blocks import conv_grid


class Generator(nn.Module):
    """z (N, D) -> image in [-1, 1] (N, C, H, W)."""

    def __init__(self, image_shape, latent_dim: int, width: int):
        super().__init__()
        self.grid = conv_grid(image_shape)
        self.dense = nn.Sequential(nn.Linear(latent_dim, 2 * width * self.grid[0] * self.grid[1]),
                                   nn.BatchNorm1d(2 * width * self.grid[0] * self.grid[1]), nn.ReLU())
        self.up = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.ConvTranspose2d(width, image_shape[0], 4, 2, 1), nn.Tanh(),
        )

    def forward(self, z):
        return self.up(self.dense(z).unflatten(1, (-1, *self.grid)))


class ImageGenerator(nn.Module):
    """The exported graph: z -> image in [0, 1]."""

    def __init__(self, generator: Generator):
        super().__init__()
        self.generator = generator

    def forward(self, z):
        return (self.generator(z) + 1) / 2


class Discriminator(nn.Module):
    """Image in [-1, 1] -> one logit per image, (N,)."""

    def __init__(self, image_shape, width: int):
        super().__init__()
        h, w = conv_grid(image_shape)
        self.net = nn.Sequential(
            nn.Conv2d(image_shape[0], width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.BatchNorm2d(2 * width), nn.LeakyReLU(0.2),
            nn.Flatten(), nn.Linear(2 * width * h * w, 1),
        )

    def forward(self, x):
        return self.net(x).squeeze(1)


def discriminator_loss(loss: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Real logits toward 1, fake ones toward 0 (cross-entropy, or least squares for lsgan)."""
    if loss == "lsgan":
        return 0.5 * ((real - 1) ** 2).mean() + 0.5 * (fake**2).mean()
    return F.softplus(-real).mean() + F.softplus(fake).mean()  # -log D(x) - log(1 - D(G(z)))


def generator_loss(loss: str, fake: torch.Tensor) -> torch.Tensor:
    if loss == "lsgan":
        return 0.5 * ((fake - 1) ** 2).mean()
    if loss == "minimax":
        return -F.softplus(fake).mean()  # log(1 - D(G(z))), minimised
    return F.softplus(-fake).mean()  # -log D(G(z))


@register
class GAN(GenerativeModel):
    name = "gan"
    defaults = {"loss": "ns", "latent_dim": 100, "width": 64}
    choices = {"loss": ("ns", "minimax", "lsgan")}
    train_defaults = {"epochs": 10, "batch_size": 128, "lr": 2e-4, "lr_schedule": "constant"}

    def __init__(self, image_shape, hparams, num_classes=None):
        super().__init__(image_shape, hparams, num_classes)
        self.generator = Generator(self.image_shape, self.hparams["latent_dim"], self.hparams["width"])
        self.discriminator = Discriminator(self.image_shape, self.hparams["width"])

    def networks(self):
        return {"discriminator": self.discriminator, "generator": self.generator}

    def configure_optimizers(self, lr):
        return {name: torch.optim.Adam(net.parameters(), lr=lr, betas=(0.5, 0.999)) for name, net in self.networks().items()}

    def _z(self, x):
        return randn_like(x.new_empty(len(x), self.hparams["latent_dim"]))

    def phase_losses(self, phase, nets, x, y, step):
        loss, real = self.hparams["loss"], x * 2 - 1
        if phase == "discriminator":
            with torch.no_grad():
                fake = nets["generator"](self._z(x))
            d_real, d_fake = nets["discriminator"](real), nets["discriminator"](fake)
            return {"loss": discriminator_loss(loss, d_real, d_fake),
                    "d_real": torch.sigmoid(d_real).mean(), "d_fake": torch.sigmoid(d_fake).mean()}
        return {"loss": generator_loss(loss, nets["discriminator"](nets["generator"](self._z(x))))}

    def losses(self, x, y=None):
        """Both players' losses on one batch (what the per-epoch test loss reports)."""
        d = self.phase_losses("discriminator", self.networks(), x, y, 0)
        return {"loss": d["loss"], "generator_loss": self.phase_losses("generator", self.networks(), x, y, 0)["loss"]}

    def graphs(self, batch=2):
        z = torch.randn(batch, self.hparams["latent_dim"])
        return {"generator": Graph(ImageGenerator(self.generator), (z,), ["z"], ["x"])}

    def graph_metadata(self):
        d = self.hparams["latent_dim"]
        return {"latent_dim": d, "prior": {"mean": [0.0] * d, "cov": [[float(i == j) for j in range(d)] for i in range(d)]}}
