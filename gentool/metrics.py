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
