"""The bundled denoiser against scikit-image's classic denoisers, on MNIST and Fashion-MNIST.

Measured, per dataset and Gaussian sigma (0.1, 0.2, 0.3, 0.5; pixels in 0..1): the mean over test
images of the per-image PSNR (gentool.metrics.psnr_db, data range 1) of each denoiser's output
against the clean image. Noise: x + sigma * N(0, 1), clipped to 0..1, which is how the bundled
denoiser was trained (gentool/zoo/dae.py) and what a PNG given to `gentool denoise` can hold; one
seeded draw per image, shared by all sigmas. Every method sees the same float32 noisy arrays, one
28x28 image at a time (the `gentool denoise` use), and every output is clipped to 0..1 before PSNR.

- bundled: gentool/assets/denoiser/ through onnxruntime, `image_to_image.denoise` per image, which is
  what `gentool denoise` computes (less its 8-bit PNG rounding of input and output).
- NLM, TV, wavelet: skimage.restoration's denoise_nl_means, denoise_tv_chambolle and denoise_wavelet.
  For each dataset and sigma, each method's parameters (`GRIDS`, scaled by the true sigma) are
  grid-searched for the best mean PSNR on separately noised images from the training split, then
  used on the test images. "best classic" is the best of the three on the test images.

Target: the bundled denoiser beats the best classic method by >= 3 dB at every sigma.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/denoise.py [--n 1000] [--tune 100] [--model DAE] [--quick]

Needs scikit-image (`pip install -e .[bench]`) with PyWavelets (which denoise_wavelet imports), and
the datasets in GENTOOL_DATA_DIR (or the download cache).
"""

import argparse
import itertools
import sys
import time

import numpy as np
from skimage.restoration import denoise_nl_means, denoise_tv_chambolle, denoise_wavelet

from common import machine, met, table
from gentool import data, metrics
from gentool.runtime import image_to_image
from gentool.runtime.artifact import Artifact

DATASETS = ("mnist", "fashion-mnist")
SIGMAS = (0.1, 0.2, 0.3, 0.5)
TARGET_DB = 3.0


def nlm(y, sigma, h, scale, patch, fast):
    return denoise_nl_means(y, h=h * sigma, sigma=scale * sigma, patch_size=patch[0], patch_distance=patch[1], fast_mode=fast)


def tv(y, sigma, weight):
    return denoise_tv_chambolle(y, weight=weight * sigma)


def wavelet(y, sigma, method, wavelet, levels, mode, scale):
    return denoise_wavelet(y, sigma=scale * sigma, wavelet=wavelet, method=method, wavelet_levels=levels, mode=mode,
                           rescale_sigma=True)


def grid(**axes) -> list[dict]:
    return [dict(zip(axes, values)) for values in itertools.product(*axes.values())]


# Each method's parameter grid: h, weight and scale are multiples of sigma, patch is (size, distance).
# `scale` sets the noise level the method is told: clipping leaves less noise than sigma where the
# image is near 0 or 1, and in a wider search the best NLM and wavelet settings often took 0.5 or less.
GRIDS = {
    "NLM": (nlm, grid(h=(0.3, 0.4, 0.6, 0.8, 1.0, 1.4, 2.0), scale=(0.5, 1.0), patch=((3, 4), (5, 6), (7, 6)),
                      fast=(True, False))),
    "TV": (tv, grid(weight=(0.2, 0.25, 0.3, 0.35, 0.42, 0.5, 0.6, 0.7))),
    "wavelet": (wavelet, grid(method=("BayesShrink", "VisuShrink"), wavelet=("db1", "db2", "sym4"), levels=(1, 2),
                              mode=("soft", "hard"), scale=(0.25, 0.35, 0.5, 0.75, 1.0))),
}


def psnr(clean: np.ndarray, denoised: np.ndarray) -> float:
    return float(metrics.psnr_db(clean, np.clip(denoised, 0, 1)).mean())


def classic(fn, noisy: np.ndarray, sigma: float, params: dict) -> np.ndarray:
    return np.stack([fn(y[0], sigma, **params) for y in noisy])[:, None]


def images(name: str, split: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The split's first n images in 0..1 (N, 1, 28, 28), and their N(0, 1) noise."""
    x = data.load(name, split, limit=n).images.astype(np.float32) / 255
    return x, np.random.default_rng(seed).standard_normal(x.shape).astype(np.float32)


def short(params: dict) -> str:
    return " ".join(f"{k}={'x'.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in params.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="test images per dataset")
    parser.add_argument("--tune", type=int, default=100, help="training images per dataset for the parameter search")
    parser.add_argument("--seed", type=int, default=0, help="noise seed (the tuning images use seed + 1)")
    parser.add_argument("--model", help="a dae artifact to put in the bundled denoiser's place (e.g. a candidate run)")
    parser.add_argument("--quick", action="store_true", help="smoke mode: 20 test and 5 tuning images")
    args = parser.parse_args()
    header = machine()
    n, n_tune = (20, 5) if args.quick else (args.n, args.tune)
    start = time.perf_counter()
    artifact = Artifact(args.model or str(image_to_image.bundled_denoiser()), device="cpu")

    rows, chosen = [], []
    for name in DATASETS:
        x, eps = images(name, "test", n, args.seed)
        x_tune, eps_tune = images(name, "train", n_tune, args.seed + 1)
        for sigma in SIGMAS:
            noisy = np.clip(x + sigma * eps, 0, 1)
            noisy_tune = np.clip(x_tune + sigma * eps_tune, 0, 1)
            scores, best = {}, {}
            for method, (fn, params) in GRIDS.items():
                best[method] = max(params, key=lambda p: psnr(x_tune, classic(fn, noisy_tune, sigma, p)))
                scores[method] = psnr(x, classic(fn, noisy, sigma, best[method]))
            bundled = psnr(x, np.stack([image_to_image.denoise(artifact, y) for y in noisy]))
            top = max(scores, key=scores.get)
            margin = bundled - scores[top]
            rows.append([name, sigma, f"{psnr(x, noisy):.2f}", *(f"{s:.2f}" for s in scores.values()),
                         f"{scores[top]:.2f} ({top})", f"{bundled:.2f}", f"{margin:+.2f}", f">= {TARGET_DB:g} dB", met(margin >= TARGET_DB)])
            chosen.append([name, sigma, *map(short, best.values())])
            print(f"{name} sigma {sigma}: done at {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)

    print(header)
    print(f"mean PSNR in dB over the first {n} test images per dataset; Gaussian noise clipped to 0..1, seed {args.seed}; "
          f"classic parameters searched on {n_tune} noised training images per dataset and sigma; "
          f"{time.perf_counter() - start:.0f} s in all\n")
    print(table(["data", "sigma", "noisy", *GRIDS, "best classic", "bundled", "margin", "target", "met"], rows))
    print("\nchosen classic parameters (h, weight, scale: multiples of sigma; patch: size x distance):\n")
    print(table(["data", "sigma", *GRIDS], chosen))


if __name__ == "__main__":
    main()
