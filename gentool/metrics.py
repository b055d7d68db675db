"""Numpy metric math shared by the torch side and the torch-free side.

All functions take float image batches (N, C, H, W) and return one value per image, shape (N,),
computed in float64.
"""

import numpy as np

from gentool.errors import UsageError

# SSIM's 11-tap Gaussian window, sigma 1.5 (Wang et al. 2004), normalized to sum 1.
_OFFSETS = np.arange(-5, 6)
_WINDOW = np.exp(-(_OFFSETS**2) / (2 * 1.5**2))
_WINDOW /= _WINDOW.sum()


def _pair(x, y) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"expected two (N, C, H, W) batches of one shape, got {x.shape} and {y.shape}")
    return x, y


def mse(x, y) -> np.ndarray:
    """Mean squared error per image."""
    x, y = _pair(x, y)
    return ((x - y) ** 2).mean(axis=(1, 2, 3))


def psnr_db(x, y, data_range: float = 1.0) -> np.ndarray:
    """Peak signal-to-noise ratio per image, in dB.

    The MSE is clamped at 1e-10 * data_range**2, so identical images give a finite 100 dB cap.
    """
    return 10 * np.log10(data_range**2 / np.maximum(mse(x, y), 1e-10 * data_range**2))


def bce_nats(p, x) -> np.ndarray:
    """Binary cross-entropy of targets `x` under Bernoulli means `p`, summed per image, in nats."""
    p, x = _pair(p, x)
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return -(x * np.log(p) + (1 - x) * np.log1p(-p)).sum(axis=(1, 2, 3))


def _blur(a: np.ndarray) -> np.ndarray:
    """Gaussian-filter the last two axes with no padding ("valid"): (..., H, W) -> (..., H-10, W-10)."""
    n = len(_WINDOW)
    h, w = a.shape[-2] - n + 1, a.shape[-1] - n + 1
    a = sum(weight * a[..., :, k : k + w] for k, weight in enumerate(_WINDOW))
    return sum(weight * a[..., k : k + h, :] for k, weight in enumerate(_WINDOW))


def ssim(x, y, data_range: float = 1.0) -> np.ndarray:
    """Structural similarity per image (Wang et al. 2004), averaged over channels and positions.

    Gaussian window 11x11 with sigma 1.5, K1 = 0.01, K2 = 0.03, population (not sample) covariances,
    and only positions where the window fits inside the image. This is what scikit-image's
    structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False) computes.
    """
    x, y = _pair(x, y)
    if min(x.shape[-2:]) < len(_WINDOW):
        raise UsageError(f"SSIM needs images of at least {len(_WINDOW)}x{len(_WINDOW)} pixels")
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x, mu_y = _blur(x), _blur(y)
    var_x = _blur(x * x) - mu_x**2
    var_y = _blur(y * y) - mu_y**2
    cov = _blur(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )
    return ssim_map.mean(axis=(1, 2, 3))


def reconstruction(x, x_hat) -> dict[str, np.ndarray]:
    """The reconstruction metrics of every autoencoder-like model, per image: `mse` per pixel, `bce`
    in nats summed over the pixels (x_hat as Bernoulli means), `psnr_db` and `ssim`."""
    return {"mse": mse(x, x_hat), "bce": bce_nats(x_hat, x), "psnr_db": psnr_db(x, x_hat), "ssim": ssim(x, x_hat)}


def auroc(scores, positive) -> float:
    """Area under the ROC curve: the probability that a positive scores above a negative, ties
    counting one half. Computed from ranks (the Mann-Whitney U statistic), tied scores sharing
    their average rank."""
    scores, positive = np.asarray(scores, np.float64), np.asarray(positive, bool)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if not n_pos or not n_neg:
        raise UsageError("AUROC needs both positive (anomalous) and negative (normal) examples")
    order = np.argsort(scores, kind="stable")
    _, first, counts = np.unique(scores[order], return_index=True, return_counts=True)
    ranks = np.empty(len(scores))
    ranks[order] = np.repeat(first + (counts + 1) / 2, counts)  # 1-based average rank of each tie group
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_curve(scores, positive) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rates, true positive rates) as the threshold falls through each distinct
    score, from (0, 0) to (1, 1); the trapezoidal area under it is `auroc`."""
    scores, positive = np.asarray(scores, np.float64), np.asarray(positive, bool)
    order = np.argsort(-scores, kind="stable")
    ends = np.r_[np.flatnonzero(np.diff(scores[order])), len(scores) - 1]  # the last index of each tie group
    found = np.cumsum(positive[order])[ends]
    flagged = ends + 1 - found
    return np.r_[0.0, flagged / max((~positive).sum(), 1)], np.r_[0.0, found / max(positive.sum(), 1)]


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def nmi(labels_a, labels_b) -> float:
    """Normalized mutual information of two labelings, I(A; B) / ((H(A) + H(B)) / 2) (the arithmetic
    mean normalization); 1 when both put everything in one group."""
    _, a = np.unique(np.asarray(labels_a), return_inverse=True)
    _, b = np.unique(np.asarray(labels_b), return_inverse=True)
    joint = np.bincount(a * (b.max() + 1) + b, minlength=(a.max() + 1) * (b.max() + 1)).reshape(a.max() + 1, -1)
    h_a, h_b = _entropy(joint.sum(1)), _entropy(joint.sum(0))
    mutual = h_a + h_b - _entropy(joint.ravel())
    return 1.0 if h_a == h_b == 0 else float(max(mutual, 0.0) / ((h_a + h_b) / 2))


# Sample quality: statistics of feature vectors (N, D) of real and generated images ----------------

# Rows of a distance matrix computed at once: 1,000 x 10,000 float64 distances are 80 MB.
_ROWS = 1000


def gaussian_stats(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (sample) covariance of feature vectors (N, D), in float64."""
    f = np.asarray(features, np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise UsageError(f"sample statistics need at least two feature vectors (N, D), got shape {f.shape}")
    return f.mean(0), np.cov(f, rowvar=False)


def frechet_distance(mean_a, cov_a, mean_b, cov_b) -> float:
    """The Frechet distance of two Gaussians: |m_a - m_b|^2 + tr(C_a + C_b - 2 (C_a C_b)^(1/2)).

    The trace of the square root is taken without scipy and stably: C_a C_b is similar to the
    symmetric positive semi-definite S C_b S, with S = C_a^(1/2) (from a symmetric eigendecomposition),
    so the trace is the sum of the square roots of S C_b S's eigenvalues (negative rounding clipped).
    """
    values, vectors = np.linalg.eigh(cov_a)
    root = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    inner = root @ cov_b @ root
    trace_root = np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0, None)).sum()
    return float(((mean_a - mean_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root)


def kernel_inception_distance(real, fake, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """KID (Binkowski et al. 2018): the unbiased MMD^2 with the cubic kernel (x.y / D + 1)^3, averaged
    over `subsets` random subsets of min(N, subset_size) of each set; its mean and standard deviation."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    d, m = real.shape[1], min(len(real), len(fake), subset_size)
    if m < 2:
        raise UsageError("KID needs at least two feature vectors in each set")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(subsets):
        x, y = real[rng.choice(len(real), m, replace=False)], fake[rng.choice(len(fake), m, replace=False)]
        k_xx, k_yy, k_xy = ((x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3)
        off_diagonal = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
        values.append(off_diagonal - 2 * k_xy.mean())
    return float(np.mean(values)), float(np.std(values))


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between the rows of a and of b (float64)."""
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.clip(squared, 0, None))


def neighbour_radii(x, ks: tuple[int, ...]) -> dict[int, np.ndarray]:
    """For each k, every row's distance to its k-th nearest other row."""
    x = np.asarray(x, np.float64)
    if len(x) <= max(ks):
        raise UsageError(f"k-nearest-neighbour metrics need more than {max(ks)} feature vectors per set")
    radii = {k: np.empty(len(x)) for k in ks}
    for i in range(0, len(x), _ROWS):
        d = _distances(x[i : i + _ROWS], x)
        d[np.arange(len(d)), np.arange(i, i + len(d))] = -1  # itself: first in order, and skipped
        nearest = np.partition(d, max(ks), axis=1)
        for k in ks:
            radii[k][i : i + len(d)] = nearest[:, k]
    return radii


K_PR, K_DC = 3, 5  # the neighbours of precision/recall and of density/coverage


def real_radii(real) -> dict[int, np.ndarray]:
    """The real set's part of `manifold_metrics`, to compute once for several generated sets."""
    return neighbour_radii(real, (K_PR, K_DC))


def manifold_metrics(real, fake, radii: dict[int, np.ndarray] | None = None) -> dict[str, float]:
    """`precision` and `recall` (Kynkaanniemi et al. 2019, k = 3): the fraction of generated samples
    inside the real manifold (the union of balls reaching each real point's k-th neighbour), and of
    real samples inside the generated one; `density` and `coverage` (Naeem et al. 2020, k = 5): the
    mean number of real balls holding a generated sample, over k, and the fraction of real balls
    holding at least one. `radii`: the real set's `real_radii`, when already known."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    balls, fake_radii = radii or real_radii(real), neighbour_radii(fake, (K_PR,))[K_PR]
    precise, density = 0, 0
    recalled, covered = np.zeros(len(real), bool), np.zeros(len(real), bool)
    for i in range(0, len(fake), _ROWS):
        d = _distances(fake[i : i + _ROWS], real)  # (fakes, reals)
        precise += int((d <= balls[K_PR][None, :]).any(1).sum())
        inside = d <= balls[K_DC][None, :]
        density += int(inside.sum())
        covered |= inside.any(0)
        recalled |= (d <= fake_radii[i : i + _ROWS, None]).any(0)
    return {"precision": precise / len(fake), "recall": float(recalled.mean()),
            "density": density / (K_DC * len(fake)), "coverage": float(covered.mean())}


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(1, keepdims=True))


def classifier_score(logits) -> float:
    """The Inception Score's analogue on the feature network's classes: exp E_x KL(p(y|x) || p(y))."""
    log_p = _log_softmax(np.asarray(logits, np.float64))
    p = np.exp(log_p)
    log_marginal = np.log(p.mean(0))
    return float(np.exp((p * (log_p - log_marginal[None, :])).sum(1).mean()))


def label_accuracy(logits, labels) -> float:
    """The fraction of samples drawn for a label that the feature network classifies as that label."""
    return float((np.asarray(logits).argmax(1) == np.asarray(labels)).mean())
