"""Denoising autoencoder: maps a corrupted image back to the clean one.

The network is a small fully convolutional U-Net with a global residual: 3x3 convs at full, half and
quarter resolution (widths w, 2w, 4w; stride-2 convs down, 2x2 transposed convs up), the encoder's
features added to the decoder's at each scale, and the output `noisy + correction`, clamped to
[0, 1] outside training. Why this shape:
- no dense layer, so one model denoises images of any size (sides padded to a multiple of 4);
- the lower resolutions give a receptive field of about 30 pixels (a whole digit), which a stack
  of full-resolution 3x3 convs (DnCNN) reaches only with 15 layers and many times the compute;
- full-resolution layers at both ends keep stroke edges: folding the image into 2x2 pixel blocks
  first (as FFDNet does) was up to 0.4 dB worse at equal training time in a short comparison;
- additive skips cost half of concatenated ones, and the global residual makes weak noise (an
  almost-identity map) the easy case.
At the default width of 8 it has 46.2k weights (4.8k in the level estimator below, 17.8k in FiLM)
and costs 3.3M multiply-adds per 28x28 image, so 10 epochs of MNIST take minutes on two CPU cores.

Training draws the corruption inside `losses` with torch's global RNG (reseeded by the loop each
epoch). With `--blind` (the default) each image gets its own level, log-uniform from
--noise-level / 25 to --noise-level (0.02 to 0.5 by default), so one model handles every level up to
the maximum without being told which. Equal odds per octave, as diffusion models sample their noise
scales: half the images fall below a fifth of the maximum, where the classic denoisers are strongest
and a denoiser serving every level loses most against one trained for a single level. Against
levels uniform in [0, --noise-level] it gained 0.4 dB at sigma 0.1 and lost 0.15 / 0.45 / 0.5 dB at
0.2 / 0.3 / 0.5 (Fashion-MNIST, width 8, 4 epochs). The loss is minus the per-image PSNR,
10 log10(MSE + 1e-5), averaged over the batch: the metric `evaluate` reports.
A plain MSE lets the noisiest images dominate a blind model's training: in a short comparison it
gave 1.5 dB more at sigma 0.5 but 1.8 dB less at sigma 0.1, where classic denoisers are strongest.
Evaluation corrupts every image at exactly --noise-level (or `gentool evaluate --noise-level`).

A blind model also estimates each image's level (`--estimate-level`, the default) with a small
strided conv net, global average and softplus (as CBDNet does), trained with the squared error to
the true level (weight LEVEL_LOSS_WEIGHT) next to the denoising loss. The U-Net takes the estimate
as a constant input plane (FFDNet's noise level map) and in every conv through FiLM (blocks.UNet).
Left to infer the level implicitly, the U-Net was 0.9 dB worse at sigma 0.1 and 0.5 dB worse at 0.2
to 0.5 on Fashion-MNIST (width 8, 4 epochs, input plane only), and the estimate matched being told
the true level within 0.05 dB. The exported graph stays noisy -> denoised: the estimator is inside it.
"""

from __future__ import annotations

import torch
from torch import nn

from gentool.errors import UsageError
from gentool.zoo import register
from gentool.zoo.base import GenerativeModel, Graph
from gentool.zoo.blocks import SIZE_MULTIPLE, UNet, check_width, conv_relu, neg_psnr


def corrupt(x: torch.Tensor, noise: str, level) -> torch.Tensor:
    """x corrupted by `noise` at `level` (a float, or one value per image shaped (N, 1, 1, 1)).

    gaussian: add N(0, level^2) and clip to [0, 1]; mask: set a `level` fraction of pixels to 0;
    salt-pepper: set a `level` fraction of pixels to 0 or 1 (even odds).
    """
    if noise == "gaussian":
        return (x + level * torch.randn_like(x)).clamp(0, 1)
    hit = torch.rand_like(x) < level
    if noise == "mask":
        return x.masked_fill(hit, 0.0)
    return torch.where(hit, (torch.rand_like(x) < 0.5).to(x.dtype), x)


# A blind model trains on levels log-uniform from --noise-level / BLIND_LEVEL_SPAN to --noise-level.
BLIND_LEVEL_SPAN = 25.0

# The level's squared error is about 1e-3 while minus PSNR is about -25 dB: this weight makes the
# estimator learn at the U-Net's pace without pulling on the shared training rate.
LEVEL_LOSS_WEIGHT = 100.0


class LevelEstimator(nn.Module):
    """Noisy image (N,C,H,W) -> its noise level (N,1,1,1), from features at a quarter of the
    resolution averaged over the whole image (so any size works)."""

    def __init__(self, channels: int, width: int = 16):
        super().__init__()
        self.net = nn.Sequential(
            conv_relu(channels, width, 2), conv_relu(width, width, 2), conv_relu(width, width),
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(width, 1, 1), nn.Softplus(),
        )

    def forward(self, x):
        return self.net(x)


class Denoiser(nn.Module):
    """The exported graph: noisy image in [0, 1] -> denoised image in [0, 1], estimating the level
    first when it has an estimator."""

    def __init__(self, unet: UNet, estimator: LevelEstimator | None):
        super().__init__()
        self.unet, self.estimator = unet, estimator

    def level(self, x):
        """The estimated noise level (N,1,1,1), or None for a denoiser without an estimator."""
        return None if self.estimator is None else self.estimator(x)

    def unclamped(self, x):
        """The output before clamping, which training compares with the clean image."""
        return self.unet(x, self.level(x))

    def forward(self, x):
        return self.unclamped(x).clamp(0, 1)


@register
class DAE(GenerativeModel):
    name = "dae"
    defaults = {"noise": "gaussian", "noise_level": 0.5, "blind": True, "estimate_level": True, "width": 8, "depth": 0}
    choices = {"noise": ("gaussian", "mask", "salt-pepper")}
    train_defaults = {**GenerativeModel.train_defaults, "lr_schedule": "cosine"}

    def __init__(self, image_shape, hparams):
        super().__init__(image_shape, hparams)
        _, h, w = self.image_shape
        if h % SIZE_MULTIPLE or w % SIZE_MULTIPLE:
            raise UsageError(f"dae trains on image sides divisible by {SIZE_MULTIPLE} (got {h}x{w})")
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

    def reconstruct(self, x):
        return self.denoiser(x)

    def losses(self, x, y=None):
        level = self.noise_level
        if self.hparams["blind"]:
            level = level * BLIND_LEVEL_SPAN ** -torch.rand(len(x), 1, 1, 1, device=x.device)
        noisy = corrupt(x, self.hparams["noise"], level)
        estimate = self.denoiser.level(noisy)
        denoising = neg_psnr(self.denoiser.unet(noisy, estimate), x)
        if estimate is None:
            return {"loss": denoising}
        level_error = ((estimate - level) ** 2).mean()
        return {"loss": denoising + LEVEL_LOSS_WEIGHT * level_error, "neg_psnr": denoising, "level_mse": level_error}

    def graphs(self, batch=2):
        x = torch.rand(batch, *self.image_shape)
        dynamic = {0: 1, 2: SIZE_MULTIPLE, 3: SIZE_MULTIPLE}
        return {"denoiser": Graph(self.denoiser, (x,), ["x"], ["denoised"], dynamic_axes=dynamic)}

    def graph_metadata(self):
        return {"size_multiple": str(SIZE_MULTIPLE), "noise": self.hparams["noise"], "noise_level": str(self.noise_level)}
