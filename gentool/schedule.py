"""Diffusion noise schedules in numpy: the one copy that the torch loss and the torch-free samplers
both read (Ho et al. 2020; Nichol & Dhariwal 2021).

The forward process is q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I) for t = 0 .. T-1, with
abar_t the cumulative product of 1 - beta over steps 0 .. t: x_0 is the data, and after the last
step x_{T-1} is nearly N(0, I). A sampler of K steps visits K of the T timesteps, from the noisiest
down, and ends at the data ("t = -1", abar = 1).
"""

from __future__ import annotations

import math

import numpy as np

STEPS = 1000  # T, the diffusion steps a model is trained over
SCHEDULES = ("linear", "cosine")


def betas(schedule: str, steps: int = STEPS) -> np.ndarray:
    """beta_t for t = 0 .. steps-1: `linear` from 1e-4 to 0.02 at T = 1000 (Ho et al.; scaled so
    that another T keeps the same total noise), or `cosine` (Nichol & Dhariwal: abar_t follows
    cos^2 of a slightly shifted time, each beta capped at 0.999)."""
    if schedule == "linear":
        scale = 1000 / steps
        return np.linspace(scale * 1e-4, scale * 0.02, steps, dtype=np.float64)
    if schedule == "cosine":
        shift = 0.008
        f = np.cos((np.arange(steps + 1) / steps + shift) / (1 + shift) * math.pi / 2) ** 2
        return np.minimum(1 - f[1:] / f[:-1], 0.999)
    raise ValueError(f"unknown schedule '{schedule}': choose one of {', '.join(SCHEDULES)}")


def alphas_cumprod(schedule: str, steps: int = STEPS) -> np.ndarray:
    """abar_t = prod_{s <= t} (1 - beta_s), t = 0 .. steps-1."""
    return np.cumprod(1 - betas(schedule, steps))


def trailing(steps: int, visited: int) -> np.ndarray:
    """The `visited` timesteps a sampler of that many steps runs through, noisiest first, spaced
    evenly and ending at the last timestep ("trailing", Lin et al. 2024, Table 2): for T = 1000 and
    10 steps, 999, 899, ..., 99. Its first step then starts from the noise the model was trained on
    at t = T-1; the "leading" spacing of DDIM's code starts at t = T - T/K + 1, noise the model
    never saw as the start. Each step goes to the next entry (the last to the data), never to
    t - T/K, which is wrong when T/K is not a whole number (huggingface/diffusers#12633)."""
    if not 1 <= visited <= steps:
        raise ValueError(f"a sampler of {visited} steps cannot run over {steps} timesteps")
    return (np.round(np.linspace(steps, 0, visited, endpoint=False)) - 1).astype(np.int64)
