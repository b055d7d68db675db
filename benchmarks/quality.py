"""Sample quality of a generator, torch-free (onnxruntime) vs the same work through torch eager.

The work of `gentool evaluate EXPORT --samples N`: N samples from the model's prior through its
decoder, the feature network over them and over the real test split and the first N training
images, then the numpy metrics (the same code on both sides). The torch side runs the model's and
the classifier's torch modules (TorchGraphs) with torch's threads; the onnxruntime side the
exported graphs. Both compute the real features afresh. Then the CLI end to end, torch-free, with
the real features not cached and cached.

    python benchmarks/quality.py RUN [--features-run runs/features-mnist] [--samples 10000]

RUN is a generator run (e.g. a conv vae); --features-run the classifier run whose features.onnx is
bundled (its checkpoint gives the torch side).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from gentool import checkpoint, data, metrics
from gentool.graphs import TorchGraphs
from gentool.runtime import latent, quality
from gentool.runtime.artifact import Artifact


def work(generator, network, data_name: str, n: int) -> dict:
    test = quality.features(network, data.load(data_name, "test").images / np.float32(255))[0]
    train = quality.features(network, data.load(data_name, "train", min(n, len(test))).images / np.float32(255))[0]
    fake, logits = quality.features(network, latent.sample(generator, n, 0))
    floor = metrics.frechet_distance(*metrics.gaussian_stats(train), *metrics.gaussian_stats(test))
    return {**quality.compare(test, fake, logits), "fid_train_vs_test": floor}


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run")
    parser.add_argument("--features-run", default="runs/features-mnist")
    parser.add_argument("--samples", type=int, default=10_000)
    args = parser.parse_args()
    model, meta = checkpoint.load(args.run)
    classifier, classifier_meta = checkpoint.load(args.features_run)
    data_name = meta["data"]
    sides = {
        "onnxruntime": (Artifact(args.run, "cpu"), Artifact(os.path.join(args.features_run, "features.onnx"), "cpu")),
        "torch eager": (TorchGraphs(model.eval(), meta), TorchGraphs(classifier.eval(), classifier_meta)),
    }
    results = {}
    for name, (generator, network) in sides.items():
        seconds, results[name] = timed(lambda: work(generator, network, data_name, args.samples))
        print(f"{name:12} {seconds:7.1f} s   fid {results[name]['fid']:.3f}  precision {results[name]['precision']:.3f}  recall {results[name]['recall']:.3f}")
    difference = max(abs(results["onnxruntime"][k] - results["torch eager"][k]) for k in results["onnxruntime"])
    print(f"largest difference between the two sides' figures: {difference:.2e}")
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "GENTOOL_CACHE_DIR": cache}
        command = [sys.executable, "-m", "gentool", "evaluate", args.run, "--samples", str(args.samples), "--json"]
        for state in ("real features not cached", "cached"):
            seconds, _ = timed(lambda: subprocess.run(command, env=env, check=True, capture_output=True))
            print(f"gentool evaluate --samples {args.samples} (torch-free path), {state}: {seconds:.1f} s")


if __name__ == "__main__":
    main()
