"""The seeds' claim, measured: the minimax generator loss log(1 - D(G(z))) saturates when the
discriminator wins early; the non-saturating -log D(G(z)) does not.

From one initialisation (the same seed, so the same G and D weights and the same batches), train
`gan` under each `--loss` for the same number of steps and record, at every step, the norm of the
generator's gradient and the mean D(G(z)) the generator was judged by; at the end the suite's
figures on 10,000 samples (bundled MNIST features). A second measurement separates the gradient
from the dynamics: along the non-saturating run, the gradient each loss would give at that very
point (same G, same D, same z).

    python benchmarks/gan_losses.py [--steps 940] [--samples 10000] [--width 32]
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch

from common import machine, table
from gentool import data, zoo
from gentool.graphs import TorchGraphs
from gentool.runtime import quality
from gentool.train import train_step
from gentool.zoo.gan import generator_loss

LOSSES = ("ns", "minimax", "lsgan")
WINDOWS = ((0, 10), (10, 100), (100, None))  # step ranges the gradient norms are averaged over


def gradient_norm(net) -> float:
    return float(torch.sqrt(sum((p.grad.double() ** 2).sum() for p in net.parameters() if p.grad is not None)))


def both_gradients(model, x) -> dict[str, float]:
    """The generator's gradient norm under ns and minimax at the model's current point, on one z
    (on a copy: the forward passes would move BatchNorm's running statistics)."""
    z = torch.randn(len(x), model.hparams["latent_dim"])
    out = {}
    for loss in ("ns", "minimax"):
        probe = copy.deepcopy(model)
        generator_loss(loss, probe.discriminator(probe.generator(z))).backward()
        out[loss] = gradient_norm(probe.generator)
    return out


def train(loss: str, images: torch.Tensor, steps: int, width: int, batch: int = 128, probe: bool = False):
    torch.manual_seed(0)
    model = zoo.get("gan")((1, 28, 28), {"loss": loss, "width": width}, 10)
    nets, optimizers = model.networks(), model.configure_optimizers(2e-4)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    log, started = [], time.perf_counter()
    for step in range(steps):
        rows = order[(step * batch) % len(images) :][:batch]
        x = images[rows].float().div(255)
        with torch.random.fork_rng(devices=[]):
            probed = both_gradients(model, x) if probe else {}
        record = train_step(model, nets, optimizers, x, None, step)
        log.append({"grad": gradient_norm(model.generator), "d_fake": record["discriminator_d_fake"], **probed})
    return model, log, time.perf_counter() - started


def window_mean(log, key, start, end) -> float:
    return float(np.mean([r[key] for r in log[start:end]]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=940, help="steps per loss (469 are one MNIST epoch at batch 128)")
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--width", type=int, default=32)
    args = parser.parse_args()
    print(machine())
    images = torch.from_numpy(data.load("mnist", "train").images)
    network, _ = quality.feature_network("mnist", "cpu")
    windows = [f"steps {a}-{b if b else args.steps}" for a, b in WINDOWS]
    rows, probes = [], None
    for loss in LOSSES:
        model, log, seconds = train(loss, images, args.steps, args.width, probe=loss == "ns")
        if loss == "ns":
            probes = log
        meta = {"model": "gan", "data": "mnist", "classes": None}
        result = quality.evaluate_generator(TorchGraphs(model.eval(), meta), args.samples, 0, network, "mnist", "mnist")
        rows.append([loss, *(f"{window_mean(log, 'grad', a, b):.3g}" for a, b in WINDOWS),
                     *(f"{window_mean(log, 'd_fake', a, b):.3f}" for a, b in WINDOWS[:2]),
                     f"{result['fid']:.2f}", f"{result['precision']:.3f}", f"{result['recall']:.3f}", f"{seconds:.0f}"])
    print(f"\nEach loss from one initialisation, {args.steps} steps of batch 128, width {args.width}; "
          f"mean generator gradient norm per window; FID etc. on {args.samples} samples (gentool mnist features):")
    print(table(["loss", *(f"|grad G| {w}" for w in windows), *(f"D(G(z)) {w}" for w in windows[:2]),
                 "fid", "precision", "recall", "seconds"], rows))
    print("\nAt the same points (along the ns run: same G, D and z), the gradient each loss gives:")
    print(table(["window", "|grad G| ns", "|grad G| minimax", "minimax / ns"],
                [[w, f"{window_mean(probes, 'ns', a, b):.3g}", f"{window_mean(probes, 'minimax', a, b):.3g}",
                  f"{window_mean(probes, 'minimax', a, b) / window_mean(probes, 'ns', a, b):.3g}"] for w, (a, b) in zip(windows, WINDOWS)]))


if __name__ == "__main__":
    main()
