"""ddpm: a denoising diffusion model (Ho et al. 2020) for small images.

A compact U-Net learns the noise eps in x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, for x_0 the
image in [-1, 1] and t uniform over the T = 1000 steps of `--schedule` (linear or cosine, read from
`gentool.schedule`, as the samplers read it), with loss_simple = E ||eps - eps_theta(x_t, t)||^2.
The U-Net (for sides divisible by 4: 28 -> 14 -> 7, or 32 -> 16 -> 8) has one residual block per
level with group norm and the sinusoidal time embedding added inside it, self-attention at the
lowest resolution and skip connections across; widths w, 2w, 2w (`--width`). The exported graph is
the noise network alone (role `eps`: x_t, t -> eps), drawn from an exponential moving average of
the weights (`--ema`); the schedule goes in its metadata, and `gentool.runtime.diffusion` samples
it (DDPM, DDIM, DPM-Solver++), torch-free.

`--conditional` adds a class embedding to the time embedding, with one more class, the "null
label", in place of the true one for a `--label-dropout` share of the training images, so that one
network learns both the conditional and the unconditional noise: classifier-free guidance (Ho &
Salimans 2022) mixes the two at sampling (`--guidance`). The graph then takes (x_t, t, label) and
its metadata names the null label.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from gentool import schedule
from gentool.errors import UsageError
from gentool.noise import rand_like, randn_like
from gentool.zoo import register
from gentool.runtime.declaration import Option
from gentool.zoo.base import GenerativeModel, Graph, evenly_spaced, subset_size
from gentool.zoo.blocks import check_sides, ema_update


LOSS_BANDS = 10  # `evaluate` reports the test loss in this many equal ranges of t
LOSS_IMAGES = 1_000  # ... on this many evenly spaced test images unless --full


def time_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of the timestep (Vaswani et al. 2017): (N,) -> (N, dim)."""
    half = dim // 2
    frequencies = torch.exp(-math.log(10_000) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t.float()[:, None] * frequencies[None]
    return torch.cat([angles.sin(), angles.cos()], 1)


def norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(8, channels)


class ResBlock(nn.Module):
    """GroupNorm, SiLU, conv; plus the time embedding's projection; GroupNorm, SiLU, dropout, conv;
    added to the input (1x1-projected when the width changes)."""

    def __init__(self, c_in: int, c_out: int, time_dim: int, dropout: float):
        super().__init__()
        self.first = nn.Sequential(norm(c_in), nn.SiLU(), nn.Conv2d(c_in, c_out, 3, padding=1))
        self.time = nn.Sequential(nn.SiLU(), nn.Linear(time_dim, c_out))
        self.second = nn.Sequential(norm(c_out), nn.SiLU(), nn.Dropout(dropout), nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x, emb):
        return self.skip(x) + self.second(self.first(x) + self.time(emb)[:, :, None, None])


class Attention(nn.Module):
    """Single-head self-attention over the positions of a feature map, added to it."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm, self.qkv, self.out = norm(channels), nn.Conv2d(channels, 3 * channels, 1), nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        n, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(n, 3, c, h * w).unbind(1)
        weights = torch.softmax(q.transpose(1, 2) @ k / math.sqrt(c), dim=-1)  # (n, hw, hw)
        return x + self.out((v @ weights.transpose(1, 2)).reshape(n, c, h, w))


class UNet(nn.Module):
    """(x_t in [-1, 1], t [, label]) -> the noise estimate, both (N, C, H, W)."""

    def __init__(self, channels: int, width: int, dropout: float, labels: int = 0):
        super().__init__()
        self.width, time_dim, wide = width, 4 * width, 2 * width
        self.time = nn.Sequential(nn.Linear(width, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim))
        self.label = nn.Embedding(labels, time_dim) if labels else None
        self.inp = nn.Conv2d(channels, width, 3, padding=1)
        self.down = nn.ModuleList([ResBlock(width, width, time_dim, dropout), ResBlock(width, wide, time_dim, dropout),
                                   ResBlock(wide, wide, time_dim, dropout)])
        self.shrink = nn.ModuleList([nn.Conv2d(width, width, 3, 2, 1), nn.Conv2d(wide, wide, 3, 2, 1)])
        self.down_attention = Attention(wide)
        self.middle = nn.ModuleList([ResBlock(wide, wide, time_dim, dropout), ResBlock(wide, wide, time_dim, dropout)])
        self.middle_attention = Attention(wide)
        self.up = nn.ModuleList([ResBlock(2 * wide, wide, time_dim, dropout), ResBlock(2 * wide, wide, time_dim, dropout),
                                 ResBlock(wide + width, width, time_dim, dropout)])
        self.up_attention = Attention(wide)
        self.grow = nn.ModuleList([nn.Conv2d(wide, wide, 3, padding=1), nn.Conv2d(wide, wide, 3, padding=1)])
        self.out = nn.Sequential(norm(width), nn.SiLU(), nn.Conv2d(width, channels, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)  # starts as the zero estimate: the loss starts at 1
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, x, t, label=None):
        emb = self.time(time_embedding(t, self.width))
        if self.label is not None:
            emb = emb + self.label(label)
        h0 = self.down[0](self.inp(x), emb)
        h1 = self.down[1](self.shrink[0](h0), emb)
        h2 = self.down_attention(self.down[2](self.shrink[1](h1), emb))
        h = self.middle[1](self.middle_attention(self.middle[0](h2, emb)), emb)
        h = self.up_attention(self.up[0](torch.cat([h, h2], 1), emb))
        h = self.up[1](torch.cat([self.grow[0](F.interpolate(h, scale_factor=2.0, mode="nearest")), h1], 1), emb)
        h = self.up[2](torch.cat([self.grow[1](F.interpolate(h, scale_factor=2.0, mode="nearest")), h0], 1), emb)
        return self.out(h)


@register
class DDPM(GenerativeModel):
    """Denoising diffusion model: a U-Net noise network, sampled by DDPM, DDIM or DPM-Solver++."""

    name = "ddpm"
    defaults = {"width": 32, "schedule": "linear", "dropout": 0.0, "ema": 0.999, "conditional": False, "label_dropout": 0.1}
    choices = {"schedule": schedule.SCHEDULES}
    train_defaults = {"epochs": 10, "batch_size": 128, "lr": 1e-3, "lr_schedule": "cosine", "precision": "bf16"}
    evaluation_options = (Option("full", bool, False, "the loss by range of t on the whole split (default: 1,000 evenly spaced images)."),)
    preview_samples = 16  # each of the per-epoch grid and quick FID drawn in the cheapest sampler's 10 network calls
    quick_fid_samples = 500

    def __init__(self, image_shape, hparams, num_classes=None):
        super().__init__(image_shape, hparams, num_classes)
        check_sides(self.image_shape, 4, "ddpm")
        width = self.hparams["width"]
        if width % 8:
            raise UsageError(f"--width must be a multiple of 8 (the group norm's groups), got {width}")
        for key in ("dropout", "ema", "label_dropout"):
            if not 0 <= self.hparams[key] < 1:
                raise UsageError(f"--{key.replace('_', '-')} must be in [0, 1), got {self.hparams[key]}")
        self.null_label = None  # the class index that stands for "no label", when conditional
        if self.hparams["conditional"]:
            if not num_classes:
                raise UsageError("--conditional needs labelled data (mnist, fashion-mnist, a folder of class folders, ...)")
            self.null_label = num_classes
        self.net = UNet(self.image_shape[0], width, self.hparams["dropout"], 0 if self.null_label is None else self.null_label + 1)
        if self.hparams["ema"]:
            self.net_ema = copy.deepcopy(self.net).requires_grad_(False)
        abar = schedule.alphas_cumprod(self.hparams["schedule"])
        self.register_buffer("abar", torch.tensor(abar, dtype=torch.float32), persistent=False)

    def drawing_net(self) -> UNet:
        """The network that draws the images (exported, previewed): the weights' moving average."""
        return self.net_ema if self.hparams["ema"] else self.net

    def losses(self, x, y=None):
        x0 = 2 * x - 1
        steps = len(self.abar)
        t = (rand_like(x0[:, 0, 0, 0]) * steps).long().clamp_(max=steps - 1)
        eps = randn_like(x0)
        abar = self.abar[t].view(-1, 1, 1, 1)
        x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
        label = ()
        if self.null_label is not None:
            dropped = rand_like(x0[:, 0, 0, 0]) < self.hparams["label_dropout"]
            label = (torch.where(dropped, self.null_label, y),)
        return {"loss": ((self.net(x_t, t, *label) - eps) ** 2).mean()}

    @torch.no_grad()
    def metrics(self, x, y, settings):
        """loss_simple of the drawing network (the exported one) in LOSS_BANDS equal ranges of t
        (`loss_t000_099`, ...: t uniform in the range, the labels as given), and their mean `loss`,
        on the split's evenly spaced LOSS_IMAGES unless `full`."""
        keep = evenly_spaced(torch.arange(len(x)), settings, LOSS_IMAGES)
        if not len(keep):
            return {}
        x0, net, steps = 2 * x[keep] - 1, self.drawing_net(), len(self.abar)
        label = () if self.null_label is None else (y[keep],)
        width, found = steps // LOSS_BANDS, {}
        for start in range(0, steps - width + 1, width):
            t = start + (rand_like(x0[:, 0, 0, 0]) * width).long().clamp_(max=width - 1)
            eps, abar = randn_like(x0), self.abar[t].view(-1, 1, 1, 1)
            found[f"loss_t{start:03d}_{start + width - 1:03d}"] = ((net(abar.sqrt() * x0 + (1 - abar).sqrt() * eps, t, *label) - eps) ** 2).mean((1, 2, 3))
        found["loss"] = torch.stack(list(found.values())).mean(0)
        return found

    def summary(self, means, vectors, settings):
        return {"loss_images": subset_size(settings, LOSS_IMAGES)}

    def after_step(self, step):
        if self.hparams["ema"]:
            ema_update(self.net_ema, self.net, step, self.hparams["ema"])

    def graphs(self, batch=2):
        steps = len(self.abar)
        inputs, names, bounds = (torch.randn(batch, *self.image_shape), torch.arange(batch) * 397 % steps), ["x", "t"], {"t": steps}
        if self.null_label is not None:
            inputs, names, bounds = (*inputs, torch.arange(batch) % (self.null_label + 1)), [*names, "label"], {**bounds, "label": self.null_label + 1}
        return {"eps": Graph(self.drawing_net(), inputs, names, ["eps"], int_bounds=bounds)}

    def graph_metadata(self):
        guidance = {} if self.null_label is None else {"null_label": self.null_label}
        return {"schedule": self.hparams["schedule"], "diffusion_steps": len(self.abar), **guidance}
