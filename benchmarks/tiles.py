"""Peak memory and time of `denoise` / `upscale` on a large image: default tiles vs one pass.

Each measurement runs in its own process (peak RSS is per process), torch-free, on the bundled
models, with a random image. Prints one row per (verb, size, mode) and the one-pass / tiled ratios.

    python benchmarks/tiles.py [--denoise-side 4096] [--upscale-side 4096]

The one-pass baselines at the default sizes need about 17 GB (denoise) and 10 GB (upscale) of RAM.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time
import numpy as np
from gentool.runtime import image_to_image as t
from gentool.runtime.artifact import Artifact

verb, side, tile = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
art = Artifact(str(t.bundled_denoiser() if verb == "denoise" else t.bundled_upscaler(2)), "cpu")
image = np.random.default_rng(0).random((1, side, side), np.float32)
run = (lambda: t.denoise(art, image, tile=tile)) if verb == "denoise" else (lambda: t.upscale(art, image, tile=tile))
start = time.perf_counter()
out = run()
print(json.dumps({"seconds": time.perf_counter() - start, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure(verb: str, side: int, tile: int) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, verb, str(side), str(tile)], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)


def main() -> None:
    from gentool.runtime.image_to_image import TILE

    parser = argparse.ArgumentParser()
    parser.add_argument("--denoise-side", type=int, default=4096)
    parser.add_argument("--upscale-side", type=int, default=4096)
    args = parser.parse_args()
    print(f"{'verb':8} {'image':>10} {'mode':>9} {'seconds':>8} {'peak MiB':>9}")
    for verb, side in (("denoise", args.denoise_side), ("upscale", args.upscale_side)):
        rows = {}
        for mode, tile in (("tiles", TILE), ("one pass", 10**6)):
            rows[mode] = r = measure(verb, side, tile)
            print(f"{verb:8} {f'{side}x{side}':>10} {mode:>9} {r['seconds']:8.1f} {r['peak_mib']:9.0f}")
        print(f"  one pass / tiles: memory {rows['one pass']['peak_mib'] / rows['tiles']['peak_mib']:.1f}x, "
              f"time {rows['one pass']['seconds'] / rows['tiles']['seconds']:.2f}x")


if __name__ == "__main__":
    main()
