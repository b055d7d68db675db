"""The latent sampler: images from codes through a `decoder` (autoencoders) or `generator` (GANs).

Every verb here takes `Graphs` (an onnxruntime `Artifact` or the torch side's `TorchGraphs`) and
draws all randomness with a seeded numpy Generator, so one seed gives the same codes, and the same
images within float tolerance, from a run's per-epoch grids, from `gentool sample` and on every
provider. Codes come from the model's prior (`prior` metadata: mean and covariance; N(0, I) for a
VAE, a Gaussian fitted to the training codes for an AE). A z-graph with a `label` input is
conditional: labels run through the classes (`classes` metadata) unless given.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

from gentool import metrics
from gentool.errors import UsageError, check_count
from gentool.runtime.artifact import Graphs
from gentool.runtime.declaration import Option, Role, Sampler, Tensor, Verb, positive_int

Z_ROLES = ("decoder", "generator")
MAX_SAMPLES = 10_000  # posterior draws per image `score` takes at most


def z_role(graphs: Graphs) -> str:
    return next(r for r in Z_ROLES if r in graphs.roles)


def prior(graphs: Graphs, verb: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of the Gaussian codes are drawn from."""
    p, d = graphs.need("prior", verb), graphs.need("latent_dim", verb)
    try:
        mean, cov = np.asarray(p["mean"], np.float64), np.asarray(p["cov"], np.float64)
        if mean.shape != (d,) or cov.shape != (d, d) or not (np.isfinite(mean).all() and np.isfinite(cov).all()):
            raise ValueError
        np.linalg.cholesky(cov)
    except (ValueError, TypeError, KeyError, np.linalg.LinAlgError):
        raise UsageError(f"this {graphs.model} model's prior is not a Gaussian over its {d} latent dimensions") from None
    return mean, cov


_INVERSE_CDF = np.vectorize(NormalDist().inv_cdf, otypes=[float])


def standard_normals(rng: np.random.Generator, shape: tuple[int, int], truncation: float | None = None) -> np.ndarray:
    """N(0, I) draws; with `truncation`, draws of the normal truncated to +-truncation (the
    truncation trick of Brock et al. 2019: fewer, more typical images), exactly and in one pass:
    the inverse CDF of uniforms between the CDF's values at the bounds (no redraws, whose number
    grows without bound as the truncation shrinks)."""
    if truncation is None:
        return rng.standard_normal(shape)
    if not 0 < truncation < math.inf:
        raise UsageError(f"--truncation must be a positive number, got {truncation}")
    low = max(0.5 * math.erfc(truncation / math.sqrt(2)), 1e-300)  # P(Z < -truncation), kept above 0
    return _INVERSE_CDF(rng.uniform(low, 1 - low, shape))


def prior_draws(graphs: Graphs, n: int, seed: int | None, verb: str = "sample", truncation: float | None = None) -> np.ndarray:
    mean, cov = prior(graphs, verb)
    eps = standard_normals(np.random.default_rng(seed), (n, len(mean)), truncation)
    return mean + eps @ np.linalg.cholesky(cov).T


def label_index(graphs: Graphs, name: str) -> int:
    """A class given by name or index, as its index."""
    from gentool.values import class_index

    return class_index("--label", graphs.need("classes", "--label"), name)


def decode(graphs: Graphs, codes: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
    """Codes (N, latent_dim) [and labels] -> images in [0, 1]."""
    role = z_role(graphs)
    d = graphs.need("latent_dim", "decode")
    with np.errstate(over="ignore"):
        codes = np.asarray(codes, np.float32)
    if codes.ndim != 2 or codes.shape[1] != d:
        raise UsageError(f"codes must have shape (N, {d}); got {codes.shape}")
    if not np.isfinite(codes).all():
        raise UsageError("codes must be finite numbers within float32's range")
    feeds = {"z": codes}
    if "label" in graphs.input_names(role):
        classes = graphs.need("classes", "decode")
        labels = np.arange(len(codes)) % len(classes) if labels is None else np.asarray(labels)
        if labels.shape != (len(codes),) or labels.min() < 0 or labels.max() >= len(classes):
            raise UsageError(f"labels must be one class index in 0..{len(classes) - 1} per code")
        feeds["label"] = labels
    elif labels is not None:
        raise UsageError(f"this {graphs.model} model is not conditional: it takes no labels")
    (x,) = graphs.run(role, feeds).values()
    return x


def sample(graphs: Graphs, n: int, seed: int | None, labels: np.ndarray | None = None, truncation: float | None = None) -> np.ndarray:
    return decode(graphs, prior_draws(graphs, n, seed, truncation=truncation), labels)


def encode(graphs: Graphs, images: np.ndarray) -> dict[str, np.ndarray]:
    return graphs.run("encoder", {"x": images})


def code_of(outputs: dict[str, np.ndarray]) -> np.ndarray:
    """The deterministic code of an encoder's outputs: the posterior mean, or the code itself."""
    return outputs["mean"] if "mean" in outputs else outputs["code"]


def codes(graphs: Graphs, images: np.ndarray) -> np.ndarray:
    return code_of(encode(graphs, images))


def reconstruct(graphs: Graphs, images: np.ndarray) -> np.ndarray:
    return decode(graphs, codes(graphs, images))


def seed_codes(graphs: Graphs, seeds: list[int], verb: str) -> np.ndarray:
    """One prior draw per seed: the first code `sample --seed S` draws."""
    return np.stack([prior_draws(graphs, 1, s, verb)[0] for s in seeds])


def between(start: np.ndarray, end: np.ndarray, count: int, slerp: bool) -> np.ndarray:
    """`count` points from `start` to `end` (vectors), both included: on the straight line, or with
    `slerp` on the great circle (White 2016), which keeps Gaussian draws at a typical norm all the
    way (the line where the ends point the same way)."""
    t = np.linspace(0.0, 1.0, count)[:, None]
    a, b = np.asarray(start, np.float64)[None], np.asarray(end, np.float64)[None]
    if slerp:
        cos = float(np.dot(a[0], b[0]) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))
        omega = np.arccos(np.clip(cos, -1.0, 1.0))
        if omega > 1e-6:
            return (np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega)
    return (1 - t) * a + t * b


def interpolate(graphs: Graphs, images: np.ndarray | None, seeds: list[int] | None, steps: int, slerp: bool = False,
                labels: np.ndarray | None = None) -> np.ndarray:
    """Decoded points `between` the codes of two images or of two seeds' prior draws (`end_codes`),
    both ends included."""
    return decode(graphs, between(*end_codes(graphs, images, seeds), steps, slerp), labels)


def arithmetic(graphs: Graphs, plus: list[np.ndarray], minus: list[np.ndarray], labels: np.ndarray | None = None) -> np.ndarray:
    """Latent vector arithmetic (Radford et al. 2016, Figure 7): each term is a set of codes (N, D),
    taken at its mean; decoded are the plus terms' means, the minus terms' means, and last their sum
    plus - minus."""
    if not plus:
        raise UsageError("arithmetic needs at least one --plus term")
    if labels is None and "label" in graphs.input_names(z_role(graphs)):
        raise UsageError("this model is conditional: give the --label its terms are drawn as")
    means = [np.asarray(term, np.float64).mean(0) for term in plus + minus]
    result = sum(means[: len(plus)]) - sum(means[len(plus) :], np.zeros_like(means[0]))
    return decode(graphs, np.stack([*means, result]), labels)


def most_active_dims(graphs: Graphs) -> tuple[int, int]:
    """The two latent dimensions whose posterior means vary most over the training images (a VAE's
    `activity`), most active first; 0 and 1 for a model that does not record it."""
    if graphs.meta.get("activity") is None:
        return 0, 1
    first, second = np.argsort(-np.asarray(graphs.meta["activity"]), kind="stable")[:2]
    return int(first), int(second)


def manifold(graphs: Graphs, size: int, dims: tuple[int, int]) -> np.ndarray:
    """Kingma & Welling's Figure 4: a size x size grid of evenly spaced points of the unit square,
    mapped through the prior's inverse CDF along two latent dimensions (the others at the prior mean)
    and decoded. Rows run down the second dimension, columns along the first."""
    mean, cov = prior(graphs, "manifold")
    d = len(mean)
    if len(set(dims)) != 2 or not all(0 <= k < d for k in dims):
        raise UsageError(f"--dims must name two different latent dimensions in 0..{d - 1}")
    if size < 2:
        raise UsageError("--size must be at least 2")
    quantiles = np.array([NormalDist().inv_cdf(p) for p in np.linspace(0, 1, size + 2)[1:-1]])
    cols, rows = np.meshgrid(quantiles, quantiles[::-1])
    z = np.tile(mean, (size * size, 1))
    for k, values in zip(dims, (cols, rows)):
        z[:, k] = mean[k] + np.sqrt(cov[k, k]) * values.ravel()
    return decode(graphs, z)


def image_normals(seed: int, images: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Standard normals of `shape` for each image, drawn from (seed, a hash of the image's values):
    an image's draws do not depend on the other images of the batch or on their order."""
    import hashlib

    def key(image) -> int:
        return int.from_bytes(hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=8).digest(), "little")

    return np.stack([np.random.default_rng([seed % 2**64, key(image)]).standard_normal(shape) for image in images])


def score(graphs: Graphs, images: np.ndarray, seed: int | None, samples: int = 1) -> tuple[np.ndarray, str]:
    """One anomaly score per image (higher: more anomalous) and its kind; it depends on the image,
    the graphs and the seed only.

    - `neg_elbo_nats`, for a VAE with a Bernoulli decoder: the Bernoulli NLL of the image under the
      decoder's output (probabilities clipped to [1e-7, 1 - 1e-7]), averaged over `samples` posterior
      draws z = mean + exp(logvar / 2) * eps (eps from `image_normals`), plus the closed-form
      KL(q(z|x) || N(0, I));
    - `reconstruction_mse` otherwise: the per-image mean squared error between the image and the
      decoded code (or posterior mean).
    """
    check_count("--samples", samples, MAX_SAMPLES)
    x = np.asarray(images, np.float32)
    encoded = encode(graphs, x)
    if "logvar" not in encoded or graphs.meta.get("likelihood") != "bernoulli":
        return metrics.mse(x, decode(graphs, code_of(encoded))), "reconstruction_mse"
    mean, logvar = encoded["mean"].astype(np.float64), encoded["logvar"].astype(np.float64)
    eps = image_normals(seed or 0, x, (samples, mean.shape[1]))
    nll = sum(metrics.bce_nats(decode(graphs, mean + np.exp(0.5 * logvar) * eps[:, k]), x) for k in range(samples)) / samples
    kl = -0.5 * (1 + logvar - mean**2 - np.exp(logvar)).sum(1)
    return nll + kl, "neg_elbo_nats"


def truncation_settings(text: str | None) -> list[dict]:
    """`evaluate --truncation 0.5,1,none` as the sample options of each row: [{"truncation": 0.5},
    {"truncation": 1.0}, {"truncation": None}]; no option: one row of the sampler's defaults."""
    if text is None:
        return [{}]
    try:
        values = [None if item.strip().lower() == "none" else float(item) for item in text.split(",")]
    except ValueError:
        raise UsageError(f"--truncation takes positive numbers or 'none', comma-separated, got '{text}'") from None
    if any(v is not None and not 0 < v < math.inf for v in values):
        raise UsageError(f"--truncation values must be positive numbers, got '{text}'")
    return [{"truncation": v} for v in values]


def end_codes(graphs: Graphs, images: np.ndarray | None, seeds: list[int] | None) -> np.ndarray:
    """The two codes `interpolate` goes between: of two images, or the prior draws of two seeds."""
    from gentool.runtime import verbs

    if images is not None and seeds is not None:
        raise UsageError("give two images or --seeds, not both")
    if seeds is not None:
        return seed_codes(graphs, seeds, "interpolate --seeds")
    if images is None or len(images) != 2:
        raise UsageError("interpolate needs two images A B (or --seeds A,B)")
    return code_of(verbs.find(graphs, "encode", "interpolate A B")(graphs, images))


def arithmetic_terms(graphs: Graphs, plus: list[str], minus: list[str], plus_seeds: list[list[int]],
                     minus_seeds: list[list[int]]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The codes of each plus and minus term: of its images (one file, or a set: a folder, .npy/.npz,
    a dataset split), or the prior draws of its seeds."""
    from gentool import inputs
    from gentool.runtime import verbs

    if (plus or minus) and (plus_seeds or minus_seeds):
        raise UsageError("give image terms (--plus/--minus) or seed terms (--plus-seeds/--minus-seeds), not both")
    if plus_seeds or minus_seeds:
        terms = tuple([seed_codes(graphs, seeds, "arithmetic") for seeds in group] for group in (plus_seeds, minus_seeds))
    else:
        encode = verbs.find(graphs, "encode", "arithmetic --plus/--minus IMAGES")
        terms = tuple([code_of(encode(graphs, inputs.image_set(graphs, spec))) for spec in group] for group in (plus, minus))
    if not terms[0]:
        raise UsageError("arithmetic needs a term to add: --plus IMAGES or --plus-seeds A,B")
    return terms


def _activity(value, meta: dict) -> bool:
    return isinstance(value, list) and len(value) == meta.get("latent_dim") and all(isinstance(a, (int, float)) for a in value)


_Z_GRAPH = Role(inputs=(Tensor("z", "N latent_dim"), Tensor("label", "N", "int64", optional=True)),
                outputs=((Tensor("*", "N C H W"),),))
_CODES = (("decoder",), ("generator",))
TRUNCATION = Option("truncation", float, None, "Draw latent values from the normal truncated to +-T (e.g. 1.0): more typical, less varied images.")
SAMPLER = Sampler(
    name="latent",
    roles={
        "encoder": Role(inputs=(Tensor("x", "N C H W"),),
                        outputs=((Tensor("code", "N latent_dim"),), (Tensor("mean", "N latent_dim"), Tensor("logvar", "N latent_dim")))),
        "decoder": _Z_GRAPH,
        "generator": _Z_GRAPH,
    },
    verbs={
        "sample": Verb(sample, _CODES, needs=("prior",), options=(TRUNCATION,)),
        "decode": Verb(decode, _CODES),
        "interpolate": Verb(interpolate, _CODES),
        "manifold": Verb(manifold, _CODES, needs=("prior",)),
        "arithmetic": Verb(arithmetic, _CODES),
        "encode": Verb(encode, (("encoder",),)),
        "reconstruct": Verb(reconstruct, (("encoder", "decoder"),)),
        "score": Verb(score, (("encoder", "decoder"),), options=(
            Option("samples", int, 1, "Posterior samples the -ELBO's reconstruction term is averaged over (a VAE's)."),)),
    },
    metadata={
        "latent_dim": lambda v, meta: positive_int(v),
        "likelihood": lambda v, meta: v in ("bernoulli", "gaussian"),
        "activity": _activity,
    },
)
