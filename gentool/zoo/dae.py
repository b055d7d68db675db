"""Denoising autoencoder: maps a corrupted image back to the clean one.

The network is a small fully convolutional U-Net with a global residual (`blocks.UNet`), so one
model denoises images of any size (sides padded to a multiple of 4). Training draws the corruption
inside `losses` with torch's global RNG (reseeded by the loop each epoch); with `--blind` (the
default) each image gets its own level, log-uniform from --noise-level / BLIND_LEVEL_SPAN to
--noise-level, so one model serves every level up to the maximum. The loss is minus the per-image
PSNR, 10 log10(MSE + 1e-5), averaged over the batch: the metric `evaluate` reports. A blind model
also estimates each image's level (`--estimate-level`, the default) with a small in-graph net
trained on the true level; the U-Net takes the estimate as an input plane and through FiLM. Why
each of these choices, with the measurements behind them: the README's architecture section.
At the default width of 8 it has 46.2k weights (4.8k in the level estimator, 17.8k in FiLM) and
costs 3.3M multiply-adds per 28x28 image. Evaluation corrupts every image at exactly --noise-level
(or `gentool evaluate --noise-level`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gentool import metrics
from gentool.noise import rand_like, randn_like
from gentool.errors import UsageError
from gentool.runtime import image_to_image
from gentool.runtime.declaration import Option
from gentool.zoo import register
from gentool.zoo.base import GenerativeModel, Graph
from gentool.zoo.blocks import SIZE_MULTIPLE, UNet, check_sides, check_width, conv_relu, neg_psnr


def corrupt(x: torch.Tensor, noise: str, level) -> torch.Tensor:
    """x corrupted by `noise` at `level` (a float, or one value per image shaped (N, 1, 1, 1)).

    gaussian: add N(0, level^2) and clip to [0, 1]; mask: set a `level` fraction of pixels to 0;
    salt-pepper: set a `level` fraction of pixels to 0 or 1 (even odds).
    """
    if noise == "gaussian":
        return (x + level * randn_like(x)).clamp(0, 1)
    hit = rand_like(x) < level
    if noise == "mask":
        return x.masked_fill(hit, 0.0)
    return torch.where(hit, (rand_like(x) < 0.5).to(x.dtype), x)


# A blind model trains on levels log-uniform from --noise-level / BLIND_LEVEL_SPAN to --noise-level.
BLIND_LEVEL_SPAN = 25.0

# The level's squared error is about 1e-3 while minus PSNR is about -25 dB: this weight makes the
# estimator learn at the U-Net's pace without pulling on the shared training rate.
LEVEL_LOSS_WEIGHT = 100.0


class LevelEstimator(nn.Module):
    """Noisy image (N,C,H,W) -> a map of logits (N,1,H/4,W/4): a 1x1 head over features at a
    quarter of the resolution. The level is the softplus of the map's mean (`Denoiser.level`), so
    any size works. The head is linear, so applying it before the average changes nothing; it lets
    the runtime estimate a large image tile by tile, exactly (the `level_estimator` graph).
    """

    # what a map position sees beyond its 4x4 input block: three 3x3 convs, two of stride 2
    RADIUS = 7

    def __init__(self, channels: int, width: int = 16):
        super().__init__()
        self.features = nn.Sequential(conv_relu(channels, width, 2), conv_relu(width, width, 2), conv_relu(width, width))
        self.head = nn.Conv2d(width, 1, 1)

    def forward(self, x):
        return self.head(self.features(x))


class Denoiser(nn.Module):
    """Noisy image in [0, 1] -> denoised image in [0, 1], at the given level (N,1,1,1) or, for a
    model with an estimator and no level given, at the estimated one."""

    def __init__(self, unet: UNet, estimator: LevelEstimator | None):
        super().__init__()
        self.unet, self.estimator = unet, estimator

    def level(self, x):
        """The estimated noise level (N,1,1,1), or None for a denoiser without an estimator."""
        return None if self.estimator is None else F.softplus(self.estimator(x).mean((2, 3), keepdim=True))

    def unclamped(self, x):
        """The output before clamping, which training compares with the clean image."""
        return self.unet(x, self.level(x))

    def forward(self, x, level=None):
        return self.unet(x, self.level(x) if level is None else level).clamp(0, 1)


@register
class DAE(GenerativeModel):
    """Denoising autoencoder: a fully convolutional U-Net from corrupted to clean images, any size."""

    name = "dae"
    defaults = {"noise": "gaussian", "noise_level": 0.5, "blind": True, "estimate_level": True, "width": 8, "depth": 0}
    choices = {"noise": ("gaussian", "mask", "salt-pepper")}
    least = {"depth": 0}
    train_defaults = {**GenerativeModel.train_defaults, "lr_schedule": "cosine"}
    evaluation_options = (Option("noise_level", float, None, "Corrupt the split at this level (default: the model's).", lambda v: 0 <= v <= 1, "in [0, 1]"),)

    def __init__(self, image_shape, hparams, num_classes=None):
        super().__init__(image_shape, hparams, num_classes)
        check_sides(self.image_shape, SIZE_MULTIPLE, "dae")
        if not 0 < self.noise_level <= 1:
            raise UsageError(f"--noise-level must be in (0, 1], got {self.noise_level}")
        check_width(self.hparams["width"])
        if self.hparams["depth"] < 0:
            raise UsageError(f"--depth must be at least 0, got {self.hparams['depth']}")
        c = self.image_shape[0]
        estimates = self.hparams["blind"] and self.hparams["estimate_level"]
        unet = UNet(c, self.hparams["width"], self.hparams["depth"], conditions=int(estimates))
        self.denoiser = Denoiser(unet, LevelEstimator(c) if estimates else None)

    @property
    def noise_level(self) -> float:
        return self.hparams["noise_level"]

    def corrupt(self, x, level: float | None = None):
        """x with the model's kind of noise at `level` (default: --noise-level) for every image."""
        return corrupt(x, self.hparams["noise"], self.noise_level if level is None else level)

    def losses(self, x, y=None):
        level = self.noise_level
        if self.hparams["blind"]:
            level = level * BLIND_LEVEL_SPAN ** -rand_like(x.new_empty(len(x), 1, 1, 1))
        noisy = corrupt(x, self.hparams["noise"], level)
        estimate = self.denoiser.level(noisy)
        denoising = neg_psnr(self.denoiser.unet(noisy, estimate), x)
        if estimate is None:
            return {"loss": denoising}
        level_error = ((estimate - level) ** 2).mean()
        return {"loss": denoising + LEVEL_LOSS_WEIGHT * level_error, "neg_psnr": denoising, "level_mse": level_error}

    def graphs(self, batch=2):
        """`denoiser` (x -> denoised); with an estimator it also takes the level, and the
        `level_estimator` graph gives the map whose mean's softplus is the level (x -> logits)."""
        x = torch.rand(batch, *self.image_shape)
        dynamic = {"x": {2: SIZE_MULTIPLE, 3: SIZE_MULTIPLE}}
        if self.denoiser.estimator is None:
            return {"denoiser": Graph(self.denoiser, (x,), ["x"], ["denoised"], dynamic_axes=dynamic)}
        level = torch.rand(batch, 1, 1, 1)
        return {"denoiser": Graph(self.denoiser, (x, level), ["x", "level"], ["denoised"], dynamic_axes=dynamic),
                "level_estimator": Graph(self.denoiser.estimator, (x,), ["x"], ["logits"], dynamic_axes=dynamic)}

    def graph_metadata(self):
        radius = max(self.denoiser.unet.radius, LevelEstimator.RADIUS if self.denoiser.estimator else 0)
        return {"size_multiple": SIZE_MULTIPLE, "halo": radius}

    def preview(self, graphs, images, seed):
        """Test images corrupted at --noise-level (seeded) above their denoised versions."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            noisy = self.corrupt(torch.from_numpy(images)).numpy()
        return {"reconstructions": np.concatenate([noisy, image_to_image.denoise_batch(graphs, noisy)])}

    def metrics(self, x, y, settings):
        """The reconstruction metrics of the denoised split against the clean one, and
        `noisy_psnr_db`, the corrupted split's (at the `noise_level` setting, else the model's)."""
        clean, noisy = x.cpu().numpy(), self.corrupt(x, settings["noise_level"])
        return {"noisy_psnr_db": metrics.psnr_db(clean, noisy.cpu().numpy()),
                **metrics.reconstruction(clean, self.denoiser(noisy).cpu().numpy())}

    def summary(self, means, vectors, settings):
        return {"noise_level": self.noise_level if settings["noise_level"] is None else settings["noise_level"]}
