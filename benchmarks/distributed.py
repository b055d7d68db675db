"""Data-parallel training: one process vs `torchrun --nproc_per_node 2`, the same global batch and seed.

Trains `gentool train MODEL --data mnist --epochs 1` (default: the conv vae, 60,000 images, global
batch 128) once as one process (torch's default threads: one per core) and once as two torchrun
processes (gloo, one thread each, torchrun's default), in that order, and prints images per second
from each run's metrics.jsonl (the epoch's training seconds), the scaling efficiency
(speed-up / processes), the final test loss of each, and the largest difference between the two
runs' weights.

    .venv/bin/python benchmarks/distributed.py [--model vae] [--arch conv] [--quick]
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from common import machine, table

QUICK_EXAMPLES = 4096


def train(out: Path, args, processes: int) -> dict:
    launch = [sys.executable, "-m", "gentool"] if processes == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes), "-m", "gentool"]
    cmd = [*launch, "train", args.model, "--data", "mnist", "--epochs", "1", "--device", "cpu", "--out", str(out),
           "--arch", args.arch, *(["--limit", str(QUICK_EXAMPLES)] if args.quick else [])]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vae")
    parser.add_argument("--arch", default="conv")
    parser.add_argument("--quick", action="store_true", help=f"smoke mode: the first {QUICK_EXAMPLES} images")
    args = parser.parse_args()
    header = machine()
    n = QUICK_EXAMPLES if args.quick else 60_000
    with tempfile.TemporaryDirectory() as tmp:
        rows = {p: train(Path(tmp) / f"p{p}", args, p) for p in (1, 2)}
        from safetensors.torch import load_file

        one, two = (load_file(str(Path(tmp) / f"p{p}" / "model.safetensors")) for p in (1, 2))
        worst = max(float((one[k] - two[k]).abs().max()) for k in one)
    speed = {p: n / r["seconds"] for p, r in rows.items()}
    print(header)
    print(f"{args.model} --arch {args.arch}, MNIST, {n} training images, 1 epoch, global batch 128\n")
    print(table(["processes", "train s", "images/s", "speed-up", "scaling efficiency", "test loss"], [
        [p, f"{rows[p]['seconds']:.1f}", f"{speed[p]:.0f}", f"{speed[p] / speed[1]:.2f}x", f"{speed[p] / speed[1] / p:.0%}",
         f"{rows[p]['test_loss']:.3f}"] for p in (1, 2)]))
    print(f"\nlargest |weight difference| between the two runs: {worst:.1e}")


if __name__ == "__main__":
    main()
