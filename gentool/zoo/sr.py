"""Super-resolution autoencoder: a low-resolution image -> the image `--factor` times larger.

The exported `upscaler` graph upsamples its input with bicubic interpolation (ONNX Resize, cubic,
a = -0.75, half-pixel centres: what torch's `interpolate(mode="bicubic")` does) and adds the
correction of the same U-Net the denoiser uses (VDSR's global residual: the network only has to
restore the detail bicubic blurs away). Being fully convolutional it upscales images of any size.

Training pairs are made from the training images themselves: the low-resolution input is the image
shrunk by antialiased bicubic resampling (what PIL's `resize(..., BICUBIC)` does) and rounded to
8-bit levels like a PNG, the target is the image. The loss is minus the per-image PSNR.
`evaluate` reports the PSNR/SSIM of the upscaled test split and of plain bicubic upscaling of the
same low-resolution images (`bicubic_psnr_db`, `bicubic_ssim`) and their difference, `psnr_gain_db`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

import numpy as np

from gentool import metrics
from gentool.zoo import register
from gentool.zoo.base import GenerativeModel, Graph
from gentool.zoo.blocks import SIZE_MULTIPLE, UNet, check_sides, check_width, neg_psnr


def bicubic_upscale(x: torch.Tensor, factor: int) -> torch.Tensor:
    return F.interpolate(x, scale_factor=factor, mode="bicubic", align_corners=False)


class Upscaler(nn.Module):
    """The exported graph: low-resolution image in [0, 1] -> upscaled image in [0, 1]."""

    def __init__(self, net: nn.Module, factor: int):
        super().__init__()
        self.net, self.factor = net, factor

    def unclamped(self, x):
        """The output before clamping, which training compares with the target (its gradient is never cut)."""
        return self.net(bicubic_upscale(x, self.factor))

    def forward(self, x):
        return self.unclamped(x).clamp(0, 1)


@register
class SR(GenerativeModel):
    """Super-resolution: bicubic upsampling plus a learned U-Net correction (x2 or x4)."""

    name = "sr"
    defaults = {"factor": 2, "width": 8}
    choices = {"factor": (2, 4)}

    def __init__(self, image_shape, hparams, num_classes=None):
        super().__init__(image_shape, hparams, num_classes)
        check_sides(self.image_shape, math.lcm(SIZE_MULTIPLE, self.factor), f"sr --factor {self.factor}")
        check_width(self.hparams["width"])
        self.upscaler = Upscaler(UNet(self.image_shape[0], self.hparams["width"]), self.factor)

    @property
    def factor(self) -> int:
        return self.hparams["factor"]

    @property
    def input_multiple(self) -> int:
        """Low-resolution sides must be multiples of this for the U-Net to see multiples of 4."""
        return SIZE_MULTIPLE // math.gcd(SIZE_MULTIPLE, self.factor)

    def shrink(self, x):
        """The low-resolution version of x: antialiased bicubic, clamped and rounded to 8 bits."""
        _, _, h, w = x.shape
        small = F.interpolate(x, size=(h // self.factor, w // self.factor), mode="bicubic", antialias=True)
        return (small.clamp(0, 1) * 255).round() / 255

    def reconstruct(self, x):
        return self.upscaler(self.shrink(x))

    def bicubic(self, x):
        """The baseline evaluate compares with: plain bicubic upscaling of the same shrunk x."""
        return bicubic_upscale(self.shrink(x), self.factor).clamp(0, 1)

    def losses(self, x, y=None):
        return {"loss": neg_psnr(self.upscaler.unclamped(self.shrink(x)), x)}

    def graphs(self, batch=2):
        _, h, w = self.image_shape
        x = torch.rand(batch, self.image_shape[0], h // self.factor, w // self.factor)
        m = self.input_multiple
        return {"upscaler": Graph(self.upscaler, (x,), ["x"], ["upscaled"], dynamic_axes={"x": {2: m, 3: m}})}

    def graph_metadata(self):
        # bicubic taps reach 2 input pixels; the U-Net's radius is in output pixels
        return {"factor": self.factor, "size_multiple": self.input_multiple, "halo": 2 + -(-self.upscaler.net.radius // self.factor)}

    def preview(self, graphs, images, seed):
        """Test images above their upscaled half-size versions."""
        small = self.shrink(torch.from_numpy(images)).numpy()
        return {"reconstructions": np.concatenate([images, graphs.run("upscaler", {"x": small})["upscaled"]])}

    def metrics(self, x, y, settings):
        """The reconstruction metrics of the upscaled shrunk split, and `bicubic_psnr_db`,
        `bicubic_ssim` of plain bicubic upscaling of the same shrunk images."""
        clean, bicubic = x.cpu().numpy(), self.bicubic(x).cpu().numpy()
        return {**metrics.reconstruction(clean, self.reconstruct(x).cpu().numpy()),
                "bicubic_psnr_db": metrics.psnr_db(clean, bicubic), "bicubic_ssim": metrics.ssim(clean, bicubic)}

    def summary(self, means, vectors, settings):
        return {"psnr_gain_db": means["psnr_db"] - means["bicubic_psnr_db"], "factor": self.factor}
