"""What a trained diffusion model does beside the sampling table: completion and denoising, torch-free.

Completion: the first N MNIST test digits, top half kept (`gentool complete RUN --keep top`, one
completion each, seed 0, the verb's default RePaint settings); the bundled MNIST classifier's label
of each completion against the digit's own label. Beside it, the classifier on the top halves alone
(the bottom black), the floor that says how much of the label the kept half already gives away.

Denoising: the first N test digits plus Gaussian noise of sigma 0.1, 0.25 and 0.5 (pixels in 0..1),
clipped to 0..1 as a PNG holds it (how the bundled denoiser was trained); the mean per-image PSNR
against the clean digit of: the noisy input, the bundled denoiser (`gentool denoise`), and the
diffusion model (`gentool denoise --model RUN`) told sigma, and estimating it.

    .venv/bin/python benchmarks/diffusion_quality.py RUN [--n 1000] [--quick]
"""

import argparse
import time

import numpy as np

from common import machine, table
from gentool import data, metrics
from gentool.runtime import diffusion, image_to_image, quality
from gentool.runtime.artifact import Artifact

SIGMAS = (0.1, 0.25, 0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a ddpm run or export directory trained on MNIST")
    parser.add_argument("--n", type=int, default=1000, help="test digits")
    parser.add_argument("--denoise-n", type=int, default=200, help="test digits for the denoising rows")
    parser.add_argument("--quick", action="store_true", help="20 digits of each")
    args = parser.parse_args()
    if args.quick:
        args.n = args.denoise_n = 20
    print(machine())
    graphs = Artifact(args.run, "cpu")
    test = data.load("mnist", "test", args.n)
    digits, labels = test.images / np.float32(255), test.labels
    network, _ = quality.feature_network("mnist", "cpu")
    keep = np.zeros((1, 1, 28, 28), bool)
    keep[..., :14, :] = True

    started = time.perf_counter()
    completed = diffusion.complete(graphs, digits, keep, 1, 0)
    seconds = time.perf_counter() - started
    completed_right = (quality.features(network, completed)[1].argmax(1) == labels).mean()
    halves_right = (quality.features(network, np.where(keep, digits, 0))[1].argmax(1) == labels).mean()
    print(f"\nComplete --keep top, {args.n} MNIST test digits ({seconds / args.n:.2f} s per digit)")
    print(table(["images", "bundled classifier gives the digit's label"],
                [["completions", f"{completed_right:.3f}"], ["top halves alone (bottom black)", f"{halves_right:.3f}"]]))

    clean = digits[: args.denoise_n]
    rng = np.random.default_rng(0)
    bundled = Artifact(str(image_to_image.bundled_denoiser()), "cpu")
    rows = []
    for sigma in SIGMAS:
        noisy = (clean + sigma * rng.standard_normal(clean.shape)).clip(0, 1).astype(np.float32)
        outputs = {
            "noisy input": noisy,
            "bundled denoiser": image_to_image.denoise_batch(bundled, noisy),
            "diffusion, sigma given": np.stack([diffusion.denoise(graphs, y, sigma) for y in noisy]),
            "diffusion, sigma estimated": np.stack([diffusion.denoise(graphs, y) for y in noisy]),
        }
        rows.append([f"{sigma:g}", *(f"{metrics.psnr_db(clean, out).mean():.2f}" for out in outputs.values())])
    print(f"\nDenoise, {args.denoise_n} MNIST test digits, mean PSNR (dB)")
    print(table(["sigma", *outputs], rows))


if __name__ == "__main__":
    main()
