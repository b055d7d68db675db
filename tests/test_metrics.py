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


# Sample quality, each against an independent computation -------------------------------------------


def test_frechet_distance_closed_form_and_scipy():
    from scipy import linalg

    d = 6
    mean = np.arange(d) / 3
    assert metrics.frechet_distance(np.zeros(d), np.eye(d), mean, 4 * np.eye(d)) == pytest.approx((mean**2).sum() + d * (1 - 2) ** 2)
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((d, d)), rng.standard_normal((d, 3))
    cov_a, cov_b = a @ a.T, b @ b.T + 1e-3 * np.eye(d)  # one of them near-singular
    root = linalg.sqrtm(cov_a @ cov_b).real
    expected = ((mean - 1) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root)
    assert metrics.frechet_distance(mean, cov_a, np.ones(d), cov_b) == pytest.approx(expected, rel=1e-9)
    features = rng.standard_normal((500, d))
    assert metrics.frechet_distance(*metrics.gaussian_stats(features), *metrics.gaussian_stats(features)) == pytest.approx(0, abs=1e-9)


def test_kid_is_the_unbiased_mmd_with_the_cubic_kernel():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((7, 3)), rng.standard_normal((7, 3)) + 0.5

    def k(a, b):
        return (a @ b / 3 + 1) ** 3

    m = len(x)
    same = sum(k(x[i], x[j]) + k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    expected = same - 2 * sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / m**2
    mean, std = metrics.kernel_inception_distance(x, y, subsets=3, subset_size=1000)  # every subset is the whole set
    assert mean == pytest.approx(expected) and std == pytest.approx(0, abs=1e-12)
    same, _ = metrics.kernel_inception_distance(rng.standard_normal((400, 3)), rng.standard_normal((400, 3)), subset_size=100)
    shifted, _ = metrics.kernel_inception_distance(rng.standard_normal((400, 3)), rng.standard_normal((400, 3)) + 1, subset_size=100)
    assert abs(same) < shifted / 20


def test_precision_recall_density_coverage_by_brute_force():
    rng = np.random.default_rng(2)
    real, fake = rng.standard_normal((40, 3)), rng.standard_normal((30, 3)) * 1.5 + 0.3

    def radius(points, i, k):
        return sorted(np.linalg.norm(points[i] - points[j]) for j in range(len(points)) if j != i)[k - 1]

    r3, r5 = [radius(real, i, 3) for i in range(40)], [radius(real, i, 5) for i in range(40)]
    f3 = [radius(fake, j, 3) for j in range(30)]
    dist = lambda a, b: np.linalg.norm(a - b)  # noqa: E731
    expected = {
        "precision": np.mean([any(dist(f, real[i]) <= r3[i] for i in range(40)) for f in fake]),
        "recall": np.mean([any(dist(r, fake[j]) <= f3[j] for j in range(30)) for r in real]),
        "density": sum(dist(f, real[i]) <= r5[i] for f in fake for i in range(40)) / (5 * 30),
        "coverage": np.mean([min(dist(real[i], f) for f in fake) <= r5[i] for i in range(40)]),
    }
    got = metrics.manifold_metrics(real, fake)
    assert got.keys() == expected.keys() and all(got[k] == pytest.approx(expected[k]) for k in got)
    assert metrics.manifold_metrics(real, real)["precision"] == 1.0 == metrics.manifold_metrics(real, real)["coverage"]


def test_classifier_score_and_label_accuracy():
    assert metrics.classifier_score(np.zeros((8, 5))) == pytest.approx(1.0)
    confident = np.where(np.eye(4)[np.arange(12) % 4] > 0, 20.0, -20.0)
    assert metrics.classifier_score(confident) == pytest.approx(4.0, rel=1e-6)
    assert metrics.label_accuracy(confident, np.arange(12) % 4) == 1.0 and metrics.label_accuracy(confident, np.zeros(12)) == 0.25
