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

from gentool import progress, schedule
from gentool.errors import UsageError
from gentool.runtime.artifact import Graphs
from gentool.runtime.declaration import Option, Role, Sampler, Tensor, Verb, positive_int
from gentool.runtime.latent import between

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


def walk_schedule(graphs: Graphs, verb: str) -> np.ndarray:
    """abar_t over the model's own T steps and schedule, read from its metadata."""
    return schedule.alphas_cumprod(graphs.need("schedule", verb), graphs.need("diffusion_steps", verb))


def checked_steps(steps: int, total: int) -> int:
    if not 1 <= steps <= total:
        raise UsageError(f"--steps must be in 1..{total} (the model's diffusion steps), got {steps}")
    return steps


def to_image(x: np.ndarray) -> np.ndarray:
    """Model space [-1, 1] to pixels [0, 1], float32."""
    return ((x + 1) / 2).clip(0, 1).astype(np.float32)


def unconditional(graphs: Graphs, n: int, verb: str) -> np.ndarray | None:
    """The null label for each of `n` images of a conditional network (None for another)."""
    return np.full(n, graphs.need("null_label", verb), np.int64) if "label" in graphs.input_names("eps") else None


def run(eps: Callable[[np.ndarray, int], np.ndarray], walk: Stepper, noise: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """From `noise` (x at the first timestep) to the data: one network call per step."""
    x = noise
    for i in progress.steps(len(walk.timesteps), "denoising steps"):
        x = walk.step(x, eps(x, int(walk.timesteps[i])), i, rng)
    return x


def conditioning(graphs: Graphs, n: int, labels: np.ndarray | None, guidance: float | None) -> tuple[np.ndarray | None, float]:
    """The labels the network sees (cycling through the classes unless given) and the guidance
    weight, for a conditional noise network; (None, 1) for an unconditional one."""
    if "label" not in graphs.input_names("eps"):
        if labels is not None or guidance is not None:
            raise UsageError(f"this {graphs.model} model is not conditional: it takes no --label or --guidance")
        return None, 1.0
    classes = len(graphs.need("classes", "sample"))
    return (np.arange(n) % classes if labels is None else np.asarray(labels, np.int64)), DEFAULT_GUIDANCE if guidance is None else guidance


def eps_network(graphs: Graphs, labels: np.ndarray | None = None, guidance: float = 1.0) -> Callable[[np.ndarray, int], np.ndarray]:
    """The `eps` graph as the samplers' callable of x_t (model space, [-1, 1]) and an integer t.
    With labels, classifier-free guidance of weight w: eps_null + w (eps_label - eps_null), the
    null label's estimate and the labels' from one call on both (w = 1: the labels' alone; 0: the
    null label's alone)."""

    def call(x: np.ndarray, t: int, label: np.ndarray | None) -> np.ndarray:
        extra = {} if label is None else {"label": label}
        (out,) = graphs.run("eps", {"x": x.astype(np.float32), "t": np.full(len(x), t, np.int64), **extra}).values()
        return out.astype(np.float64)

    if labels is None:
        return lambda x, t: call(x, t, None)
    null = np.full_like(labels, graphs.need("null_label", "--guidance"))
    if guidance == 1:
        return lambda x, t: call(x, t, labels)
    if guidance == 0:
        return lambda x, t: call(x, t, null)

    def guided(x: np.ndarray, t: int) -> np.ndarray:
        both = call(np.concatenate([x, x]), t, np.concatenate([labels, null]))
        conditional, unconditional = both[: len(x)], both[len(x) :]
        return unconditional + guidance * (conditional - unconditional)

    return guided


DEFAULT_STEPS = {"ddim": 50, "dpm++": 20}
DEFAULT_GUIDANCE = 2.0


def sample(graphs: Graphs, n: int, seed: int, labels: np.ndarray | None = None, sampler: str = "ddim",
           steps: int | None = None, eta: float | None = None, guidance: float | None = None) -> np.ndarray:
    """`n` images in [0, 1]: seeded noise taken to the data by `sampler` in `steps` steps
    (default 50 for ddim, 20 for dpm++; ddpm runs all T), `eta` the DDIM noise scale; a conditional
    model draws `labels` (cycling through the classes unless given) with classifier-free `guidance`."""
    if sampler not in SAMPLERS:
        raise UsageError(f"--sampler must be one of {', '.join(SAMPLERS)}, got '{sampler}'")
    total = graphs.need("diffusion_steps", "sample")
    if sampler == "ddpm" and steps is not None:
        raise UsageError(f"--sampler ddpm runs every one of the model's {total} steps: drop --steps (or use ddim or dpm++)")
    if eta is not None and sampler != "ddim":
        raise UsageError("--eta is DDIM's noise scale: it goes with --sampler ddim")
    if eta is not None and not 0 <= eta <= 1:
        raise UsageError(f"--eta must be in [0, 1], got {eta}")
    steps = DEFAULT_STEPS.get(sampler) if steps is None else checked_steps(steps, total)
    walk = stepper(sampler, walk_schedule(graphs, "sample"), steps, eta or 0.0)
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((n, *graphs.image_shape))
    return to_image(run(eps_network(graphs, *conditioning(graphs, n, labels, guidance)), walk, noise, rng))


def repaint_path(visited: int, jump: int, resamples: int) -> list[int]:
    """The order in which RePaint (Lugmayr et al. 2022, Algorithm 1 and its jumps) visits the
    positions 0 .. `visited` of a walk (0 the noisiest timestep, `visited` the data): down one at a
    time, and after every `jump` steps down (the data excepted), back up `jump` positions and down
    again, `resamples` - 1 times, so the unknown region is re-harmonised with the pasted known one."""
    path = [0]
    for i in range(1, visited + 1):
        path.append(i)
        if i % jump == 0 and i < visited:
            for _ in range(resamples - 1):
                path += [*range(i - 1, i - jump - 1, -1), *range(i - jump + 1, i + 1)]
    return path


def inpaint(eps: Callable[[np.ndarray, int], np.ndarray], walk: Stepper, known: np.ndarray, keep: np.ndarray, path: list[int],
            rng: np.random.Generator) -> np.ndarray:
    """RePaint over `walk` along `path`: each step down is the walk's reverse step on the whole image,
    after which the known pixels (`keep`, broadcast over `known`) are replaced by the known image
    noised to the new position; each step up re-noises the whole image by the forward process from
    one position to the one before it. Returns the data: `known` where kept."""
    def noised(i: int) -> np.ndarray:
        abar = walk.abar_at(i)
        return math.sqrt(abar) * known + math.sqrt(1 - abar) * rng.standard_normal(known.shape)

    x = np.where(keep, noised(0), rng.standard_normal(known.shape))
    for k in progress.steps(len(path) - 1, "RePaint steps"):
        here, there = path[k], path[k + 1]
        if there > here:
            x = np.where(keep, noised(there), walk.step(x, eps(x, int(walk.timesteps[here])), here, rng))
        else:
            kept = walk.abar_at(there) / walk.abar_at(here)  # the forward process from here up to there keeps this share
            x = math.sqrt(kept) * x + math.sqrt(1 - kept) * rng.standard_normal(x.shape)
    return x


def complete(graphs: Graphs, images: np.ndarray, keep: np.ndarray, n: int, seed: int, steps: int | None = None, jump: int = 1,
             resamples: int = 4) -> np.ndarray:
    """`n` completions of each image (N, C, H, W) in [0, 1], keeping its pixels where `keep` (any
    shape that broadcasts to the images) and drawing the rest by RePaint over DDPM posterior steps
    (DDIM with eta 1) on `steps` timesteps of the trailing spacing: (N * n, C, H, W), each image's
    completions together. A conditional model completes with its null label (unconditionally)."""
    abar = walk_schedule(graphs, "complete")
    steps = checked_steps(DEFAULT_STEPS["ddim"] if steps is None else steps, len(abar))
    if not 1 <= jump <= steps:
        raise UsageError(f"--jump must be in 1..{steps} (the steps), got {jump}")
    walk = DDIM(abar, schedule.trailing(len(abar), steps), 1.0, eta=1.0)
    known = np.repeat(2 * np.asarray(images, np.float64) - 1, n, axis=0)
    keep = np.broadcast_to(np.repeat(np.broadcast_to(keep, images.shape), n, axis=0), known.shape)
    eps = eps_network(graphs, unconditional(graphs, len(known), "complete"))
    return to_image(inpaint(eps, walk, known, keep, repaint_path(steps, jump, resamples), np.random.default_rng(seed)))


def noise_level(image: np.ndarray) -> float:
    """The standard deviation of white noise in an image (C, H, W), estimated from the finest
    diagonal Haar detail (Donoho & Johnstone 1994): median |HH| / 0.6745, HH being 0 on smooth
    regions and noise of the same deviation elsewhere."""
    h, w = image.shape[-2] // 2 * 2, image.shape[-1] // 2 * 2
    x = image[..., :h, :w]
    detail = (x[..., 0::2, 0::2] - x[..., 0::2, 1::2] - x[..., 1::2, 0::2] + x[..., 1::2, 1::2]) / 2
    return float(np.median(np.abs(detail)) / 0.6745)


def denoise(graphs: Graphs, image: np.ndarray, sigma: float | None = None, steps: int | None = None) -> np.ndarray:
    """An image (C, H, W) in [0, 1] with Gaussian noise of deviation `sigma` (estimated when not
    given) taken as x_t at the timestep whose noise matches it, then to the data: in one network call
    by the posterior mean (Tweedie's formula), or with `steps` by DDIM (eta 0) from there."""
    if tuple(image.shape) != tuple(graphs.image_shape):
        shape = "x".join(map(str, graphs.image_shape[1:]))
        raise UsageError(f"a diffusion model denoises images of its own size, {shape}; this one is {image.shape[-2]}x{image.shape[-1]}")
    abar = walk_schedule(graphs, "denoise")
    sigma = noise_level(image) if sigma is None else sigma
    # y = 2x - 1 holds noise of 2 sigma; x_t / sqrt(abar_t) = y_0 + sqrt((1 - abar_t) / abar_t) eps
    t = int(np.argmin(np.abs(np.sqrt((1 - abar) / abar) - 2 * sigma)))
    steps = 1 if steps is None else steps
    if not 1 <= steps <= t + 1:
        raise UsageError(f"--steps must be in 1..{t + 1} (the timesteps below the noise's, {t}), got {steps}")
    walk = DDIM(abar, schedule.trailing(t + 1, steps), 1.0)
    x_t = math.sqrt(abar[t]) * (2 * np.asarray(image, np.float64)[None] - 1)
    return to_image(run(eps_network(graphs, unconditional(graphs, 1, "denoise")), walk, x_t, np.random.default_rng(0)))[0]


def interpolate(graphs: Graphs, images: np.ndarray | None, seeds: list[int] | None, count: int, slerp: bool = False,
                labels: np.ndarray | None = None, sampler: str = "ddim", guidance: float | None = None) -> np.ndarray:
    """`count` images between the draws of two seeds, both ends included: their initial noise
    interpolated on the great circle (Gaussian noise keeps its typical norm there, whatever
    `slerp` says), each taken to the data by a deterministic sampler (DDIM with eta 0, or
    DPM-Solver++) at its default steps, so that neighbouring noise gives neighbouring images and
    each end is what `sample --seed` draws first. A conditional model draws `labels` (its null label
    when none are given: unconditionally)."""
    if images is not None or seeds is None:
        raise UsageError("a diffusion model interpolates between the draws of two seeds: --seeds A,B (it has no encoder for images)")
    if sampler not in ("ddim", "dpm++"):
        raise UsageError(f"interpolate needs a deterministic sampler: --sampler ddim or dpm++, got '{sampler}'")
    a, b = (np.random.default_rng(s).standard_normal(graphs.image_shape).ravel() for s in seeds)
    noise = between(a, b, count, slerp=True)
    walk = stepper(sampler, walk_schedule(graphs, "interpolate"), DEFAULT_STEPS[sampler])
    if "label" in graphs.input_names("eps") and labels is None:
        if guidance is not None:
            raise UsageError("interpolate --guidance needs a --label: without one the strip is drawn unconditionally")
        labels, guidance = np.zeros(count, np.int64), 0.0  # the null label's estimate alone
    eps = eps_network(graphs, *conditioning(graphs, count, labels, guidance))
    return to_image(run(eps, walk, noise.reshape(count, *graphs.image_shape), np.random.default_rng(0)))


EPS, NEEDS = (("eps",),), ("schedule", "diffusion_steps")
SAMPLER_CHOICE = Option("sampler", str, "ddim", f"Diffusion sampler: {', '.join(SAMPLERS)} (ancestral over every step).")
STEPS = Option("steps", int, None, "Sampler steps (default: 50 for ddim, 20 for dpm++; ddpm takes every step).")
ETA = Option("eta", float, None, "DDIM's noise scale, 0 (deterministic) to 1.")
GUIDANCE = Option("guidance", float, None, f"Classifier-free guidance weight of a conditional model: 0 unconditional, 1 the label alone, more "
                  f"follows the label harder (default {DEFAULT_GUIDANCE:g}).", valid=lambda w: math.isfinite(w) and 0 <= w <= 100,
                  expects="a number in 0..100")

SAMPLER = Sampler(
    name="diffusion",
    roles={"eps": Role(inputs=(Tensor("x", "N C H W"), Tensor("t", "N", "int64"), Tensor("label", "N", "int64", optional=True)),
                       outputs=((Tensor("*", "N C H W"),),))},
    verbs={
        "sample": Verb(sample, EPS, needs=NEEDS, options=(SAMPLER_CHOICE, STEPS, ETA, GUIDANCE), cheapest={"sampler": "ddim", "steps": 10}),
        "interpolate": Verb(interpolate, EPS, needs=NEEDS, options=(
            Option("sampler", str, "ddim", "Diffusion sampler: ddim or dpm++ (deterministic, at its default steps)."), GUIDANCE)),
        "complete": Verb(complete, EPS, needs=NEEDS, options=(
            Option("steps", int, None, "Diffusion steps of the completion (default 50).", valid=lambda k: k >= 1, expects="at least 1"),
            Option("jump", int, 1, "RePaint's jump: after every this many steps down, go back up as many and down again.", valid=lambda k: k >= 1, expects="at least 1"),
            Option("resamples", int, 4, "RePaint's resampling: each jump's stretch is walked this many times (1: pasting alone, no going back).", valid=lambda k: 1 <= k <= 100, expects="in 1..100"),
        ), cheapest={"steps": 10, "resamples": 2}),
        "denoise": Verb(denoise, EPS, needs=NEEDS, options=(
            Option("sigma", float, None, "Noise deviation in pixel values 0..1 (default: estimated from the image).",
                   valid=lambda v: math.isfinite(v) and 0 < v <= 10, expects="a number in (0, 10]"),
            Option("steps", int, None, "Diffusion steps from the noise's level to the image (default 1: the posterior mean).",
                   valid=lambda k: k >= 1, expects="at least 1"),
        )),
    },
    metadata={"schedule": lambda v, meta: v in schedule.SCHEDULES,
              "diffusion_steps": lambda v, meta: positive_int(v, 10_000),
              "null_label": lambda v, meta: isinstance(meta.get("classes"), list) and v == len(meta["classes"])},
)
