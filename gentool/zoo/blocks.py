"""Network pieces shared by the model families: linear, MLP and conv encoder/decoder stacks, and the
image-to-image U-Net of the denoising and super-resolution families."""

from __future__ import annotations

import math

import torch
from torch import nn

from gentool.errors import UsageError


def mlp(sizes: list[int], activation=nn.ReLU) -> nn.Sequential:
    """Linear layers of the given widths with `activation` between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


@torch.no_grad()
def ema_update(average: nn.Module, live: nn.Module, step: int, decay: float) -> None:
    """One step of an exponential moving average of `live`'s weights into `average` (Yazici et al.
    2019), its decay ramped up from 0.1 over the first steps, so that a short run averages its
    recent steps; buffers (BatchNorm statistics) are the live network's."""
    decay = min(decay, (1 + step) / (10 + step))
    for mean, current in zip(average.parameters(), live.parameters()):
        mean.lerp_(current, 1 - decay)
    for mean, current in zip(average.buffers(), live.buffers()):
        mean.copy_(current)


def check_sides(image_shape: tuple[int, int, int], multiple: int, what: str, hint: str = "") -> None:
    """A usage error, suggesting the `train --size` that would fit, unless the image's sides are
    multiples of `multiple`."""
    _, h, w = image_shape
    if h % multiple or w % multiple:
        fits = f"{max(multiple, h // multiple * multiple)}x{max(multiple, w // multiple * multiple)}"
        raise UsageError(f"{what} needs image sides divisible by {multiple} (got {h}x{w}): resize them as they load with --size {fits}{hint}")


def conv_grid(image_shape: tuple[int, int, int], downsamplings: int = 2, hint: str = ", or use --arch mlp") -> tuple[int, int]:
    """Spatial size after `downsamplings` stride-2 convs; the image must divide evenly."""
    f = 2**downsamplings
    check_sides(image_shape, f, "the conv architecture", hint)
    return image_shape[1] // f, image_shape[2] // f


class ConvEncoder(nn.Module):
    """x (N,C,H,W) -> features (N, out_features): two stride-2 convs, then a hidden dense layer."""

    def __init__(self, image_shape, out_features: int, channels=(32, 64), hidden: int = 512):
        super().__init__()
        c = image_shape[0]
        gh, gw = conv_grid(image_shape, len(channels))
        layers: list[nn.Module] = []
        for c_out in channels:
            layers += [nn.Conv2d(c, c_out, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            c = c_out
        self.net = nn.Sequential(
            *layers,
            nn.Flatten(),
            nn.Linear(c * gh * gw, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, out_features),
        )

    def forward(self, x):
        return self.net(x)


class ConvDecoder(nn.Module):
    """z (N, in_features) -> logits (N,C,H,W): the mirror image of ConvEncoder."""

    def __init__(self, image_shape, in_features: int, channels=(64, 32), hidden: int = 512):
        super().__init__()
        c_img = image_shape[0]
        self.grid = conv_grid(image_shape, len(channels))
        self.c0 = channels[0]
        self.fc = nn.Sequential(
            nn.Linear(in_features, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, channels[0] * math.prod(self.grid)),
            nn.LeakyReLU(0.2),
        )
        layers: list[nn.Module] = []
        outs = list(channels[1:]) + [c_img]
        for i, (c_in, c_out) in enumerate(zip(channels, outs)):
            layers.append(nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1))
            if i < len(outs) - 1:
                layers.append(nn.LeakyReLU(0.2))
        self.deconv = nn.Sequential(*layers)

    def forward(self, z):
        # unflatten keeps the batch axis symbolic for ONNX export (no Python-int batch size)
        h = self.fc(z).unflatten(1, (self.c0, *self.grid))
        return self.deconv(h)


class MLPEncoder(nn.Module):
    """x (N,C,H,W) -> features: flatten then an MLP."""

    def __init__(self, image_shape, out_features: int, hidden: int, activation=nn.ReLU):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), mlp([math.prod(image_shape), hidden, out_features], activation))

    def forward(self, x):
        return self.net(x)


class MLPDecoder(nn.Module):
    """z -> logits (N,C,H,W): an MLP then unflatten."""

    def __init__(self, image_shape, in_features: int, hidden: int, activation=nn.ReLU):
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.net = mlp([in_features, hidden, math.prod(image_shape)], activation)

    def forward(self, z):
        return self.net(z).unflatten(1, self.image_shape)


def linear_encoder_decoder(image_shape, code_features: int, latent_dim: int):
    """One dense layer each way, x (N,C,H,W) -> code -> (N,C,H,W), with no nonlinearity."""
    pixels = math.prod(image_shape)
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(pixels, code_features))
    return encoder, nn.Sequential(nn.Linear(latent_dim, pixels), nn.Unflatten(1, tuple(image_shape)))


def encoder_decoder(arch: str, image_shape, code_features: int, latent_dim: int, hidden: int):
    """The (encoder, decoder) pair for an architecture name; the encoder emits `code_features`."""
    if arch == "linear":
        return linear_encoder_decoder(image_shape, code_features, latent_dim)
    if arch == "conv":
        return ConvEncoder(image_shape, code_features, hidden=hidden), ConvDecoder(image_shape, latent_dim, hidden=hidden)
    if arch == "mlp":
        return MLPEncoder(image_shape, code_features, hidden), MLPDecoder(image_shape, latent_dim, hidden)
    raise UsageError(f"unknown architecture '{arch}'")


# The U-Net halves the sides twice, so its images have sides that are multiples of 4.
SIZE_MULTIPLE = 4
MSE_FLOOR = 1e-5
FILM_HIDDEN = 64


def conv_relu(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.ReLU())


class UNet(nn.Module):
    """x (N,C,H,W), H and W multiples of 4 -> x + correction (not clamped).

    3x3 convs at full, half and quarter resolution (widths w, 2w, 4w; stride-2 convs down, 2x2
    transposed convs up), the encoder's features added to the decoder's at each scale. `depth` adds
    that many 3x3 convs to each full-resolution stage: fine texture is only seen at full resolution.

    With `conditions` > 0, forward also takes that many per-image values (N, conditions, 1, 1), e.g.
    the noise level. They enter twice: as constant input planes (FFDNet's noise level map), and
    through FiLM (Perez et al. 2018), as diffusion U-Nets take their time step: a small MLP maps them
    to a per-channel scale and shift for every 3x3 conv, applied before its ReLU. The planes alone
    reach only the first conv; FiLM gave +0.5 dB at every noise level on top of them (blind
    Fashion-MNIST denoiser, width 8, 4 epochs). The MLP's last layer starts at zero (scale 1, shift 0).
    """

    def __init__(self, channels: int, width: int, depth: int = 0, conditions: int = 0):
        super().__init__()
        w = width
        self.level0 = nn.Sequential(conv_relu(channels + conditions, w), *(conv_relu(w, w) for _ in range(1 + depth)))
        self.level1 = nn.Sequential(conv_relu(w, 2 * w, 2), conv_relu(2 * w, 2 * w))
        self.level2 = nn.Sequential(conv_relu(2 * w, 4 * w, 2), conv_relu(4 * w, 4 * w))
        self.up1 = nn.ConvTranspose2d(4 * w, 2 * w, 2, stride=2)
        self.mix1 = nn.Sequential(conv_relu(2 * w, 2 * w))
        self.up0 = nn.ConvTranspose2d(2 * w, w, 2, stride=2)
        self.mix0 = nn.Sequential(*(conv_relu(w, w) for _ in range(1 + depth)))
        self.out = nn.Conv2d(w, channels, 1)
        self.film = None
        if conditions:
            self.film_sizes = [block[0].out_channels for stage in self._stages() for block in stage]
            self.film = nn.Sequential(nn.Linear(conditions, FILM_HIDDEN), nn.ReLU(), nn.Linear(FILM_HIDDEN, 2 * sum(self.film_sizes)))
            nn.init.zeros_(self.film[-1].weight)
            nn.init.zeros_(self.film[-1].bias)

    def _stages(self):
        return self.level0, self.level1, self.level2, self.mix1, self.mix0

    @property
    def radius(self) -> int:
        """How many pixels beyond itself an output pixel sees on each side: 1 per full-resolution
        3x3 conv, 14 for the half and quarter resolution path (a test measures it from gradients).
        A tile needs that much context for its core to come out as from the whole image."""
        return len(self.level0) + len(self.mix0) + 14

    def forward(self, x, condition=None):
        planes, film = x, None
        if condition is not None:
            planes = torch.cat([x, condition.expand(-1, -1, *x.shape[2:])], 1)
            scales, shifts = self.film(condition.flatten(1))[..., None, None].chunk(2, 1)
            film = zip(scales.split(self.film_sizes, 1), shifts.split(self.film_sizes, 1))
        # The stages run in _stages order, which is the order of the FiLM pairs.
        f0 = _through(self.level0, planes, film)
        f1 = _through(self.level1, f0, film)
        f2 = _through(self.level2, f1, film)
        h = _through(self.mix1, self.up1(f2) + f1, film)
        return x + self.out(_through(self.mix0, self.up0(h) + f0, film))


def _through(stage: nn.Sequential, h: torch.Tensor, film) -> torch.Tensor:
    """Run a stage of conv_relu blocks; with `film` (an iterator of (scale, shift) pairs, one value
    per image and channel), each conv's output is scaled by 1 + scale and shifted before its ReLU."""
    if film is None:
        return stage(h)
    for conv, relu in stage:
        scale, shift = next(film)
        h = relu(conv(h) * (1 + scale) + shift)
    return h


def check_width(width: int) -> None:
    if width < 1:
        raise UsageError(f"--width must be at least 1, got {width}")


def neg_psnr(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Minus the per-image PSNR (dB, range 1) averaged over the batch: the metric `evaluate` reports.

    Unlike a plain MSE, it weighs every image alike, so easy images (weak noise, flat regions) are
    not drowned out by the hard ones.
    """
    mse = ((output - target) ** 2).flatten(1).mean(1)
    return (10 * torch.log10(mse + MSE_FLOOR)).mean()
