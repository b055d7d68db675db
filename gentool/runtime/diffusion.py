"""Torch-free diffusion samplers: numpy steps around a noise network `eps(x_t, t) -> eps`.

Every sampler is a `Stepper` over one schedule (`gentool.schedule`): its `timesteps`, noisiest
first, and `step(x, eps, i, rng)`, which takes x at `timesteps[i]` and the network's noise estimate
there to x at the next entry (after the last, the data). Each step is written against its paper:
- `ddim` (Song et al. 2021, eq. 12): the data estimate x0 and the noise it implies move to the next
  timestep, plus fresh noise of scale `eta` (0: deterministic; 1: the DDPM posterior's variance);
- `ddpm` (Ho et al. 2020, ancestral): every one of the T timesteps with the posterior variance
  beta~_t, which is DDIM with eta = 1 over all T steps (Song et al., eq. 16), so it is that;
- `dpm++` (DPM-Solver++(2M), Lu et al. 2022, Algorithm 2): a second-order multistep solver of the
  probability-flow ODE in log-SNR lambda = log(alpha / sigma) on the data prediction, first order at
  its first step and at the last one (to the data, where sigma = 0).
DDIM and DPM-Solver++ visit the trailing spacing of `schedule.trailing`. With `clip`, the data
estimate is clipped to [-clip, clip] (images live in [-1, 1]) and the noise recomputed from it.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from gentool import schedule
from gentool.errors import UsageError
from gentool.runtime.artifact import Graphs
from gentool.runtime.declaration import Option, Role, Sampler, Tensor, Verb, positive_int

SAMPLERS = ("ddpm", "ddim", "dpm++")


class Stepper:
    """A sampler's walk over the timesteps of `alphas_cumprod` (abar_t, t = 0 .. T-1)."""

    def __init__(self, alphas_cumprod: np.ndarray, timesteps: np.ndarray, clip: float | None):
        self.abar, self.timesteps, self.clip = np.asarray(alphas_cumprod, np.float64), timesteps, clip

    def abar_at(self, i: int) -> float:
        """abar at the i-th visited timestep; 1 past the last (the data)."""
        return float(self.abar[self.timesteps[i]]) if i < len(self.timesteps) else 1.0

    def data_estimate(self, x: np.ndarray, eps: np.ndarray, i: int) -> tuple[np.ndarray, np.ndarray]:
        """x0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar), clipped when asked, and the noise it implies."""
        abar = self.abar_at(i)
        x0 = (x - math.sqrt(1 - abar) * eps) / math.sqrt(abar)
        if self.clip is None:
            return x0, eps
        x0 = np.clip(x0, -self.clip, self.clip)
        return x0, (x - math.sqrt(abar) * x0) / math.sqrt(1 - abar)

    def step(self, x: np.ndarray, eps: np.ndarray, i: int, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError


class DDIM(Stepper):
    def __init__(self, alphas_cumprod, timesteps, clip=None, eta: float = 0.0):
        super().__init__(alphas_cumprod, timesteps, clip)
        self.eta = eta

    def step(self, x, eps, i, rng):
        now, then = self.abar_at(i), self.abar_at(i + 1)
        x0, eps = self.data_estimate(x, eps, i)
        sigma = self.eta * math.sqrt((1 - then) / (1 - now) * (1 - now / then))
        out = math.sqrt(then) * x0 + math.sqrt(max(1 - then - sigma**2, 0.0)) * eps
        return out + sigma * rng.standard_normal(x.shape) if sigma > 0 else out


class DPMSolverPP(Stepper):
    def __init__(self, alphas_cumprod, timesteps, clip=None):
        super().__init__(alphas_cumprod, timesteps, clip)
        self.previous: tuple[np.ndarray, float] | None = None  # the last step's x0 and h

    def _log_snr(self, i: int) -> float:
        abar = self.abar_at(i)
        return 0.5 * math.log(abar / (1 - abar))

    def step(self, x, eps, i, rng):
        x0, _ = self.data_estimate(x, eps, i)
        if i + 1 == len(self.timesteps):  # to the data: sigma = 0, so x = alpha * x0 with alpha = 1
            return x0
        h = self._log_snr(i + 1) - self._log_snr(i)
        estimate = x0
        if self.previous is not None:
            x0_before, h_before = self.previous
            r = h_before / h
            estimate = (1 + 1 / (2 * r)) * x0 - x0_before / (2 * r)
        self.previous = (x0, h)
        now, then = self.abar_at(i), self.abar_at(i + 1)
        return math.sqrt((1 - then) / (1 - now)) * x - math.sqrt(then) * math.expm1(-h) * estimate


def stepper(name: str, alphas_cumprod: np.ndarray, steps: int | None = None, eta: float = 0.0, clip: float | None = 1.0) -> Stepper:
    """The sampler `name` over a schedule of T = len(alphas_cumprod) timesteps, in `steps` steps
    (`ddpm` takes all T)."""
    total = len(alphas_cumprod)
    if name == "ddpm":
        return DDIM(alphas_cumprod, np.arange(total - 1, -1, -1), clip, eta=1.0)
    if name == "ddim":
        return DDIM(alphas_cumprod, schedule.trailing(total, steps), clip, eta=eta)
    if name == "dpm++":
        return DPMSolverPP(alphas_cumprod, schedule.trailing(total, steps), clip)
    raise ValueError(f"unknown sampler '{name}': choose one of {', '.join(SAMPLERS)}")


def run(eps: Callable[[np.ndarray, int], np.ndarray], walk: Stepper, noise: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """From `noise` (x at the first timestep) to the data: one network call per step."""
    x = noise
    for i in range(len(walk.timesteps)):
        x = walk.step(x, eps(x, int(walk.timesteps[i])), i, rng)
    return x


def _eps_network(graphs: Graphs, n: int, labels: np.ndarray | None):
    """The `eps` graph as the samplers' callable: x_t (model space, [-1, 1]) and an integer t."""
    extra = {} if labels is None else {"label": labels}

    def eps(x: np.ndarray, t: int) -> np.ndarray:
        (out,) = graphs.run("eps", {"x": x.astype(np.float32), "t": np.full(n, t, np.int64), **extra}).values()
        return out.astype(np.float64)

    return eps


DEFAULT_STEPS = {"ddim": 50, "dpm++": 20}


def sample(graphs: Graphs, n: int, seed: int, labels: np.ndarray | None = None, sampler: str = "ddim",
           steps: int | None = None, eta: float | None = None) -> np.ndarray:
    """`n` images in [0, 1]: seeded noise taken to the data by `sampler` in `steps` steps
    (default 50 for ddim, 20 for dpm++; ddpm runs all T), `eta` the DDIM noise scale."""
    if sampler not in SAMPLERS:
        raise UsageError(f"--sampler must be one of {', '.join(SAMPLERS)}, got '{sampler}'")
    total = graphs.need("diffusion_steps", "sample")
    if sampler == "ddpm" and steps is not None:
        raise UsageError(f"--sampler ddpm runs every one of the model's {total} steps: drop --steps (or use ddim or dpm++)")
    if eta is not None and sampler != "ddim":
        raise UsageError("--eta is DDIM's noise scale: it goes with --sampler ddim")
    if eta is not None and not 0 <= eta <= 1:
        raise UsageError(f"--eta must be in [0, 1], got {eta}")
    steps = DEFAULT_STEPS.get(sampler) if steps is None else steps
    if steps is not None and not 1 <= steps <= total:
        raise UsageError(f"--steps must be in 1..{total} (the model's diffusion steps), got {steps}")
    abar = schedule.alphas_cumprod(graphs.need("schedule", "sample"), total)
    walk = stepper(sampler, abar, steps, eta or 0.0)
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((n, *graphs.image_shape))
    x = run(_eps_network(graphs, n, labels), walk, noise, rng)
    return ((x + 1) / 2).clip(0, 1).astype(np.float32)


SAMPLER = Sampler(
    name="diffusion",
    roles={"eps": Role(inputs=(Tensor("x", "N C H W"), Tensor("t", "N", "int64"), Tensor("label", "N", "int64", optional=True)),
                       outputs=((Tensor("*", "N C H W"),),))},
    verbs={"sample": Verb(sample, (("eps",),), needs=("schedule", "diffusion_steps"), options=(
        Option("sampler", str, "ddim", f"Diffusion sampler: {', '.join(SAMPLERS)} (ancestral over every step)."),
        Option("steps", int, None, "Sampler steps (default: 50 for ddim, 20 for dpm++; ddpm takes every step)."),
        Option("eta", float, None, "DDIM's noise scale, 0 (deterministic) to 1."),
    ), cheapest={"sampler": "ddim", "steps": 10})},
    metadata={"schedule": lambda v, meta: v in schedule.SCHEDULES,
              "diffusion_steps": lambda v, meta: positive_int(v, 10_000)},
)
