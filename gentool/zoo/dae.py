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
At the default width of 8 it has 23.5k weights and costs 2.9M multiply-adds per 28x28 image, so
10 epochs of MNIST take minutes on two CPU cores.

Training draws the corruption inside `losses` with torch's global RNG (reseeded by the loop each
epoch). With `--blind` (the default) each image gets its own level, uniform in [0, --noise-level],
so one model handles every level up to the maximum without being told which. The loss is minus
the per-image PSNR, 10 log10(MSE + 1e-5), averaged over the batch: the metric `evaluate` reports.
A plain MSE lets the noisiest images dominate a blind model's training: in a short comparison it
gave 1.5 dB more at sigma 0.5 but 1.8 dB less at sigma 0.1, where classic denoisers are strongest.
Evaluation corrupts every image at exactly --noise-level (or `gentool evaluate --noise-level`).
"""

from __future__ import annotations

import torch
from torch import nn

from gentool.errors import UsageError
from gentool.zoo import register
from gentool.zoo.base import GenerativeModel, Graph
from gentool.zoo.blocks import SIZE_MULTIPLE, UNet, check_width, neg_psnr


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


class ClampedDenoiser(nn.Module):
    """The exported graph: noisy image in [0, 1] -> denoised image in [0, 1]."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x).clamp(0, 1)


@register
class DAE(GenerativeModel):
    name = "dae"
    defaults = {"noise": "gaussian", "noise_level": 0.5, "blind": True, "width": 8, "depth": 0}
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
        self.net = UNet(self.image_shape[0], self.hparams["width"], self.hparams["depth"])

    @property
    def noise_level(self) -> float:
        return self.hparams["noise_level"]

    def corrupt(self, x, level: float | None = None):
        """x with the model's kind of noise at `level` (default: --noise-level) for every image."""
        return corrupt(x, self.hparams["noise"], self.noise_level if level is None else level)

    def reconstruct(self, x):
        return self.net(x).clamp(0, 1)

    def losses(self, x, y=None):
        level = self.noise_level
        if self.hparams["blind"]:
            level = level * torch.rand(len(x), 1, 1, 1, device=x.device)
        return {"loss": neg_psnr(self.net(corrupt(x, self.hparams["noise"], level)), x)}

    def graphs(self, batch=2):
        x = torch.rand(batch, *self.image_shape)
        dynamic = {0: 1, 2: SIZE_MULTIPLE, 3: SIZE_MULTIPLE}
        return {"denoiser": Graph(ClampedDenoiser(self.net), (x,), ["x"], ["denoised"], dynamic_axes=dynamic)}

    def graph_metadata(self):
        return {"size_multiple": str(SIZE_MULTIPLE), "noise": self.hparams["noise"], "noise_level": str(self.noise_level)}
