"""The diffusion U-Net's cost, training and sampling, measured side by side in this one process.

Training: images/s of one real training step (`gentool.train.train_step`: losses, backward, Adam,
the EMA update) at batch 128 on 28x28x1, for the default `ddpm` U-Net (width 32) and, beside it, the
default `gan` (both players' steps), each in the variants that decide its speed: float32 with
contiguous (NCHW) tensors, float32 channels-last (what the loop always uses), bfloat16 autocast on
top (`--precision bf16`, ddpm's default; on a CPU without native bf16 the loop falls back to float32,
and so does this row), and for ddpm the dropout its default dropped. Weights are random init (seed 0): speed does not depend on them.

Sampling: DDIM with the same steps over the same noise network (the default run's `eps` graph when
RUN is given, else the random-init default U-Net exported here), for a batch of images: onnxruntime
(what `gentool sample` runs, torch-free) against torch eager (the module under inference_mode,
float32), the same numpy stepper around both; and the share of a step's time that is numpy (the
stepper) rather than the network.

Each figure is the median of rounds that alternate the variants, so noise on a shared machine hits
all of them.

    .venv/bin/python benchmarks/diffusion.py [RUN] [--rounds 3] [--steps 20] [--batch 64] [--quick]
"""

import argparse
import tempfile
import time
from statistics import median

import numpy as np
import torch

from common import machine, table
from gentool import schedule, train, zoo
from gentool.runtime import diffusion
from gentool.runtime.artifact import Artifact

BATCH = 128


def training_rate(name: str, channels_last: bool, bf16: bool, steps: int, hparams: dict) -> float:
    """Images/s of `steps` training steps (after two warm-up steps) of a fresh model (default but for `hparams`)."""
    torch.manual_seed(0)
    model = zoo.get(name)((1, 28, 28), hparams, 10)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    nets, optimizers = model.networks(), model.configure_optimizers(zoo.get(name).train_defaults["lr"])
    x = torch.rand(BATCH, 1, 28, 28)
    x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
    y = torch.arange(BATCH) % 10
    for step in range(steps + 2):
        if step == 2:
            started = time.perf_counter()
        train.train_step(model, nets, optimizers, x, y, step, bf16=bf16)
    return BATCH * steps / (time.perf_counter() - started)


def sampling_times(graphs, module, batch: int, steps: int) -> dict[str, float]:
    """Seconds for `batch` images in `steps` DDIM steps: onnxruntime, torch eager, and the numpy
    stepper's part of the onnxruntime run."""
    abar = schedule.alphas_cumprod(graphs.meta["schedule"], graphs.meta["diffusion_steps"])
    noise = np.random.default_rng(0).standard_normal((batch, *graphs.image_shape))
    stepper_seconds = []

    def timed_stepper():
        walk = diffusion.stepper("ddim", abar, steps)
        step = walk.step

        def measured(*args):
            started = time.perf_counter()
            out = step(*args)
            stepper_seconds.append(time.perf_counter() - started)
            return out

        walk.step = measured
        return walk

    def eager(x, t):
        with torch.inference_mode():
            return module(torch.from_numpy(x.astype(np.float32)), torch.full((len(x),), t)).double().numpy()

    found = {}
    for name, eps in (("onnxruntime", diffusion.eps_network(graphs)), ("torch eager", eager)):
        started = time.perf_counter()
        diffusion.run(eps, timed_stepper() if name == "onnxruntime" else diffusion.stepper("ddim", abar, steps), noise,
                      np.random.default_rng(0))
        found[name] = time.perf_counter() - started
    found["numpy share"] = sum(stepper_seconds) / found["onnxruntime"]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", help="a ddpm run or export directory (default: a random-init default U-Net)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--train-steps", type=int, default=6)
    parser.add_argument("--steps", type=int, default=20, help="DDIM steps of the sampling rows")
    parser.add_argument("--batch", type=int, default=64, help="images per sampling call")
    parser.add_argument("--quick", action="store_true", help="one round, 2 training steps, 5 DDIM steps of 16 images")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.train_steps, args.steps, args.batch = 1, 2, 5, 16
    print(machine())
    native = train.autocast_bf16(torch.device("cpu"))
    variants = [("float32, NCHW", False, False, {}), ("float32, channels-last", True, False, {}),
                ("bf16 autocast, channels-last", True, native, {}), ("bf16, channels-last, --dropout 0.1", True, native, {"dropout": 0.1})]
    cells = [(name, v) for name in ("ddpm", "gan") for v in variants if name == "ddpm" or not v[3]]
    rates = {(name, v[0]): [] for name, v in cells}
    for _ in range(args.rounds):
        for name, (label, channels_last, bf16, hparams) in cells:
            rates[name, label].append(training_rate(name, channels_last, bf16, args.train_steps, hparams))
    rows = [[name, label, f"{median(r):.0f}", f"{median(r) / median(rates[name, variants[0][0]]):.2f}x"] for (name, label), r in rates.items()]
    print(f"\nTraining step, batch {BATCH} of 28x28x1, images/s (median of {args.rounds} rounds; native bf16 here: {native})")
    print(table(["model", "variant", "images/s", "vs float32 NCHW"], rows))

    with tempfile.TemporaryDirectory() as tmp:
        if args.run:
            graphs = Artifact(args.run, "cpu")
            from gentool import checkpoint

            module = checkpoint.load(args.run)[0].eval().drawing_net()
        else:
            from gentool.export import export

            torch.manual_seed(0)
            model = zoo.get("ddpm")((1, 28, 28), {}, None).eval()
            meta = {"model": "ddpm", "data": "mnist", "image_shape": [1, 28, 28]}
            export(model, meta, tmp)
            graphs, module = Artifact(tmp, "cpu"), model.drawing_net()
        times = [sampling_times(graphs, module, args.batch, args.steps) for _ in range(args.rounds)]
    per_image = {k: median(t[k] for t in times) / args.batch for k in ("onnxruntime", "torch eager")}
    print(f"\nSampling, DDIM {args.steps} steps, batch {args.batch}, {'the run ' + args.run if args.run else 'random-init default U-Net'} "
          f"(median of {args.rounds} rounds)")
    print(table(["backend", "ms per image", "ms per image-step", "seconds per 1,000 images"],
                [[k, f"{v * 1e3:.1f}", f"{v * 1e3 / args.steps:.2f}", f"{v * 1e3:.0f}"] for k, v in per_image.items()]))
    print(f"numpy (the stepper) share of the onnxruntime run's time: {100 * median(t['numpy share'] for t in times):.2f}%")


if __name__ == "__main__":
    main()
