"""What each inference verb computes, in numpy over an Artifact's graphs.

All randomness is drawn here with a seeded numpy Generator, never inside a graph, so a seed gives
the same images on every provider.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np

from gentool.errors import UsageError
from gentool.runtime.artifact import Artifact


def _code(outputs: dict[str, np.ndarray]) -> np.ndarray:
    """The deterministic code of an encoder: the posterior mean, or the code itself."""
    return outputs["mean"] if "mean" in outputs else outputs["code"]


def latent_draws(artifact: Artifact, n: int, seed: int | None, verb: str = "sample") -> np.ndarray:
    """n draws from the model's prior (N(0, I) for a VAE, the fitted code Gaussian for an AE)."""
    mean, cov = artifact.prior(verb)
    eps = np.random.default_rng(seed).standard_normal((n, len(mean)))
    return mean + eps @ np.linalg.cholesky(cov).T


def sample(artifact: Artifact, n: int, seed: int | None) -> np.ndarray:
    artifact.require("decoder", "sample")
    return decode(artifact, latent_draws(artifact, n, seed))


def encode(artifact: Artifact, images: np.ndarray) -> dict[str, np.ndarray]:
    artifact.require("encoder", "encode")
    return artifact.run("encoder", images)


def decode(artifact: Artifact, codes: np.ndarray) -> np.ndarray:
    artifact.require("decoder", "decode")
    codes = np.asarray(codes, np.float32)
    if codes.ndim != 2 or codes.shape[1] != artifact.latent_dim:
        raise UsageError(f"codes must have shape (N, {artifact.latent_dim}); got {codes.shape}")
    return artifact.run("decoder", codes)["x"]


def reconstruct(artifact: Artifact, images: np.ndarray) -> np.ndarray:
    artifact.require("encoder", "reconstruct")
    artifact.require("decoder", "reconstruct")
    return decode(artifact, _code(encode(artifact, images)))


def interpolate(artifact: Artifact, start: np.ndarray, end: np.ndarray, steps: int) -> np.ndarray:
    """Decoded points on the straight line between two codes, both ends included."""
    t = np.linspace(0.0, 1.0, steps)[:, None]
    return decode(artifact, (1 - t) * start[None] + t * end[None])


def codes_of(artifact: Artifact, images: np.ndarray) -> np.ndarray:
    return _code(encode(artifact, images))


def manifold(artifact: Artifact, size: int, dims: tuple[int, int]) -> np.ndarray:
    """Kingma & Welling's Figure 4: a size x size grid of evenly spaced points of the unit square,
    mapped through the prior's inverse CDF along two latent dimensions (the others at the prior mean)
    and decoded. Rows run down the second dimension, columns along the first."""
    d = artifact.latent_dim
    if len(set(dims)) != 2 or not all(0 <= k < d for k in dims):
        raise UsageError(f"--dims must name two different latent dimensions in 0..{d - 1}")
    if size < 2:
        raise UsageError("--size must be at least 2")
    mean, cov = artifact.prior("manifold")
    quantiles = np.array([NormalDist().inv_cdf(p) for p in np.linspace(0, 1, size + 2)[1:-1]])
    cols, rows = np.meshgrid(quantiles, quantiles[::-1])
    z = np.tile(mean, (size * size, 1))
    for k, values in zip(dims, (cols, rows)):
        z[:, k] = mean[k] + np.sqrt(cov[k, k]) * values.ravel()
    return decode(artifact, z)
