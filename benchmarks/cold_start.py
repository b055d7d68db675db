"""Cold start of the torch-free `gentool sample` against `python -c "import torch"`.

Measured: wall time of whole fresh processes, from spawn to exit, of
  gentool sample EXPORT -n 1 -o OUT.png      (onnxruntime + numpy + PIL, no torch)
  gentool models --json, gentool runs        (the torch-free listings; one run to list)
  python -c "import torch"
both from this venv (sys.executable and the `gentool` script beside it). One untimed run of each
warms the page cache, then N timed runs each, alternating so that noise on a shared machine hits
both alike; the table gives median and min, and the ratio of the medians.

EXPORT is --artifact PATH, or else a tiny mlp VAE trained here first with
`gentool train vae --arch mlp --data mnist --limit 512 --epochs 1` (the weights do not matter for
speed; training needs MNIST in GENTOOL_DATA_DIR or the download cache).

    .venv/bin/python benchmarks/cold_start.py [--runs 10] [--artifact PATH] [--quick]
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

from common import machine, met, table

GENTOOL = str(Path(sys.executable).with_name("gentool"))


def wall(cmd: list[str], cwd: str) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=cwd)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="timed runs of each command")
    parser.add_argument("--artifact", help="an exported VAE (run or export directory); default: train a tiny one")
    parser.add_argument("--quick", action="store_true", help="smoke mode: 2 runs each")
    args = parser.parse_args()
    header = machine()  # read before the work, so that its load average shows what else is running
    runs = 2 if args.quick else args.runs

    with tempfile.TemporaryDirectory() as tmp:
        artifact = args.artifact and str(Path(args.artifact).resolve())  # the commands run in tmp
        if artifact is None:
            artifact = f"{tmp}/runs/vae-mnist"  # where `gentool runs` (run in tmp) finds it
            print("training a tiny mlp VAE to sample from ...", file=sys.stderr)
            subprocess.run(
                [GENTOOL, "train", "vae", "--arch", "mlp", "--data", "mnist", "--limit", "512", "--epochs", "1", "--out", artifact],
                check=True, stdout=subprocess.DEVNULL,
            )
        commands = {
            "sample": [GENTOOL, "sample", artifact, "-n", "1", "-o", f"{tmp}/x.png"],
            "models --json": [GENTOOL, "models", "--json"],
            "runs": [GENTOOL, "runs"],
            "torch": [sys.executable, "-c", "import torch"],
        }
        for cmd in commands.values():
            wall(cmd, tmp)
        times = {name: [] for name in commands}
        for _ in range(runs):
            for name, cmd in commands.items():
                times[name].append(wall(cmd, tmp))

    s, t = times["sample"], times["torch"]
    ratio = median(t) / median(s)
    rows = [
        ["gentool sample EXPORT -n 1 -o OUT.png", f"{median(s):.3f}", f"{min(s):.3f}", "<= 0.6 s", met(median(s) <= 0.6)],
        *([f"gentool {name}", f"{median(times[name]):.3f}", f"{min(times[name]):.3f}", "", ""] for name in ("models --json", "runs")),
        ['python -c "import torch"', f"{median(t):.3f}", f"{min(t):.3f}", "", ""],
        ["ratio of medians (torch / sample)", f"{ratio:.2f}x", "", ">= 4x", met(ratio >= 4)],
    ]
    print(header)
    print(f"cold start, {runs} alternating runs each after one warm-up run; artifact: {args.artifact or 'tiny mlp VAE trained here'}\n")
    print(table(["process", "median s", "min s", "target", "met"], rows))


if __name__ == "__main__":
    main()
