"""What each inference verb computes, in numpy over an Artifact's graphs.

All randomness is drawn here with a seeded numpy Generator, never inside a graph, so a seed gives
the same images on every provider.
"""

from __future__ import annotations

import json
from pathlib import Path
from statistics import NormalDist

import numpy as np

from gentool import metrics
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


def most_active_dims(artifact: Artifact) -> tuple[int, int]:
    """The two latent dimensions whose posterior means vary most over the training images (a VAE's
    `gentool.activity`), most active first; 0 and 1 for a model that does not record it."""
    if "gentool.activity" not in artifact.meta:
        return 0, 1
    first, second = np.argsort(-np.asarray(json.loads(artifact.meta["gentool.activity"])), kind="stable")[:2]
    return int(first), int(second)


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


# Models trained by this project on MNIST + Fashion-MNIST, shipped as package data (the README says
# how each is built): a dae, and sr models by factor.
ASSETS = Path(__file__).resolve().parents[1] / "assets"
BUNDLED_DENOISER = ASSETS / "denoiser.onnx"
BUNDLED_UPSCALERS = {2: ASSETS / "upscaler-x2.onnx"}


def bundled_denoiser() -> Path:
    if not BUNDLED_DENOISER.is_file():
        raise UsageError(f"this gentool has no bundled denoiser ({BUNDLED_DENOISER} is missing): pass --model with a dae run or .onnx")
    return BUNDLED_DENOISER


def _image_to_image(artifact: Artifact, role: str, image: np.ndarray, factor: int = 1) -> np.ndarray:
    """One (C, H, W) image of any size through a fully convolutional graph that scales sides by `factor`.

    A grayscale model takes each channel on its own. Sides are padded by reflection to a multiple of
    the graph's `gentool.size_multiple` (what its stride-2 layers need) and the output cropped back.
    """
    c, h, w = image.shape
    batch = image[:, None] if artifact.image_shape[0] == 1 else image[None]
    m = int(artifact.meta.get("gentool.size_multiple", 1))
    padded = np.pad(batch, ((0, 0), (0, 0), (0, -h % m), (0, -w % m)), mode="reflect")
    (out,) = artifact.run(role, padded).values()
    return out[:, :, : h * factor, : w * factor].reshape(c, h * factor, w * factor)


def denoise(artifact: Artifact, image: np.ndarray) -> np.ndarray:
    """One (C, H, W) image of any size, denoised."""
    artifact.require("denoiser", "denoise")
    return _image_to_image(artifact, "denoiser", image)


def bundled_upscaler(factor: int) -> Path:
    path = BUNDLED_UPSCALERS.get(factor)
    if path is None or not path.is_file():
        have = ", ".join(str(f) for f, p in BUNDLED_UPSCALERS.items() if p.is_file()) or "none"
        raise UsageError(f"this gentool has no bundled upscaler for --factor {factor} (bundled: {have}): pass --model with an sr run or .onnx")
    return path


def upscale(artifact: Artifact, image: np.ndarray, factor: int | None = None) -> np.ndarray:
    """One (C, H, W) image of any size, `factor` times larger (the model's own factor; another is an error)."""
    artifact.require("upscaler", "upscale")
    own = int(artifact.meta["gentool.factor"])
    if factor not in (None, own):
        raise UsageError(f"this sr model upscales by {own}, not {factor}: train one with `gentool train sr --factor {factor}`")
    return _image_to_image(artifact, "upscaler", image, own)


def anomaly_scores(artifact: Artifact, images: np.ndarray, seed: int | None, samples: int = 1) -> tuple[np.ndarray, str]:
    """One score per image, higher meaning more anomalous, and the score's kind:

    - `neg_elbo_nats`, for a VAE with a Bernoulli decoder: the Bernoulli NLL of the image under the
      decoder's output (probabilities clipped to [1e-7, 1 - 1e-7]), averaged over `samples` posterior
      draws z = mean + exp(logvar / 2) * eps (eps seeded, drawn for the whole batch in input order),
      plus the closed-form KL(q(z|x) || N(0, I));
    - `reconstruction_mse` otherwise: the per-image mean squared error between the image and its
      reconstruction (decoded code or posterior mean), or the denoiser's output for a denoiser alone.
    """
    x = np.asarray(images, np.float32)
    if "denoiser" in artifact.files and not {"encoder", "decoder"} <= artifact.files.keys():
        (denoised,) = artifact.run("denoiser", x).values()
        return metrics.mse(x, denoised), "reconstruction_mse"
    artifact.require("encoder", "score")
    artifact.require("decoder", "score")
    encoded = encode(artifact, x)
    if "logvar" not in encoded or artifact.meta.get("gentool.likelihood") != "bernoulli":
        return metrics.mse(x, decode(artifact, _code(encoded))), "reconstruction_mse"
    mean, logvar = encoded["mean"].astype(np.float64), encoded["logvar"].astype(np.float64)
    rng = np.random.default_rng(seed)
    nll = sum(
        metrics.bce_nats(decode(artifact, mean + np.exp(0.5 * logvar) * rng.standard_normal(mean.shape)), x)
        for _ in range(samples)
    ) / samples
    kl = -0.5 * (1 + logvar - mean**2 - np.exp(logvar)).sum(1)
    return nll + kl, "neg_elbo_nats"
