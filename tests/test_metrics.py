import numpy as np
import pytest

from gentool import metrics
from gentool.errors import UsageError


def pattern() -> np.ndarray:
    """A deterministic two-channel (1, 2, 16, 20) image with values in [0, 1]."""
    i, j = np.mgrid[:16, :20]
    return np.stack([((i * 7 + j * 3) % 11) / 10, ((i * i + j) % 13) / 12])[None]


def test_mse_and_psnr():
    x = np.zeros((2, 1, 4, 4))
    y = np.stack([np.zeros((1, 4, 4)), np.full((1, 4, 4), 0.1)])
    assert np.allclose(metrics.mse(x, y), [0, 0.01])
    assert np.allclose(metrics.psnr_db(x, y), [100, 20])  # exact match: the 100 dB cap
    assert np.allclose(metrics.psnr_db(x * 255, y * 255, data_range=255), [100, 20])


def test_bce_nats():
    x = np.array([1.0, 0.0, 1.0, 0.0]).reshape(1, 1, 2, 2)
    p = np.full_like(x, 0.5)
    assert np.allclose(metrics.bce_nats(p, x), 4 * np.log(2))
    assert np.allclose(metrics.bce_nats(x, x), 4 * -np.log1p(-1e-7))  # clipped, finite


def test_ssim_matches_scikit_image():
    x = pattern()
    # scikit-image 0.26 structural_similarity(x[0], (x**2)[0], channel_axis=0, gaussian_weights=True,
    # sigma=1.5, use_sample_covariance=False, data_range=1) gave 0.8969173398362602 (also for
    # data_range=255 on the images scaled by 255).
    assert metrics.ssim(x, x**2) == pytest.approx([0.8969173398362602], abs=1e-12)
    assert metrics.ssim(x * 255, x**2 * 255, data_range=255) == pytest.approx([0.8969173398362602])


def test_ssim_of_flat_images_by_hand():
    # Constant images: no variance, so SSIM = (2ab + C1) / (a^2 + b^2 + C1) with C1 = 1e-4.
    a, b = np.full((1, 1, 12, 12), 0.5), np.full((1, 1, 12, 12), 0.25)
    assert metrics.ssim(a, b) == pytest.approx((2 * 0.5 * 0.25 + 1e-4) / (0.5**2 + 0.25**2 + 1e-4))


def test_ssim_properties():
    x = np.repeat(pattern(), 3, axis=0)
    noise = np.random.default_rng(0).standard_normal(x.shape)
    y = np.clip(x + np.array([0.05, 0.1, 0.3])[:, None, None, None] * noise, 0, 1)
    assert np.allclose(metrics.ssim(x, x), 1)
    assert np.allclose(metrics.ssim(x, y), metrics.ssim(y, x))
    scores = metrics.ssim(x, y)
    assert scores.shape == (3,) and scores[0] > scores[1] > scores[2]


def test_ssim_rejects_small_images():
    with pytest.raises(UsageError, match="at least 11x11"):
        metrics.ssim(np.zeros((1, 1, 8, 8)), np.zeros((1, 1, 8, 8)))
