"""The model protocol: all the generic loop, evaluation and export know about a family.

A family is a plain `nn.Module` subclass of `GenerativeModel`, built as
`cls(image_shape, hparams, num_classes)`, that declares
- `name` (its CLI name), `defaults` (every hyperparameter with its default; the type of the default
  is the type of the flag; None: a number the family resolves from its other options) and
  `choices` (allowed values where they are few); `train_defaults` (epochs, batch size, rate and its
  schedule that train well with no flags);
- `losses(x, y)`: named per-example-mean losses of a batch (`loss` is the one optimised); noise it
  draws comes from `gentool.noise.rand_like`/`randn_like` (keyed per example while training, so
  resumes and torchrun runs follow the uninterrupted single-process run);
- `graphs()`: the deterministic graphs it exports, by role (DESIGN.md), and `graph_metadata()`,
  the JSON values the runtime needs beside them (latent size, prior, ...).
Hooks with defaults that fit most families:
- training: `networks()` (what the loop wraps for DistributedDataParallel and gives an optimizer
  each; by default the whole model, whose `forward` is `losses`), `phases(step)` (the networks
  stepped at a global step, in order) and `phase_losses(phase, nets, x, y, step)` (the losses of
  one phase, computed through `nets`, the wrapped networks): the loop owns zero-grad, backward and
  the optimizer steps. `after_step(step)` runs after each step's updates (a GAN averages its
  generator's weights there); `after_epoch(batches)` after each epoch on batches of training images
  (the AE fits its code prior there).
- `preview(graphs, images, seed)`: the per-epoch grids, drawn by the runtime's samplers over the
  torch-backed `graphs` (so a run's grids are what `gentool sample` draws), `preview_samples` of
  them with the options of `sampling(graphs)`, which the per-epoch quick FID of
  `quick_fid_samples` images also uses; `shown_losses`, the figures printed beside the losses;
- `metrics(x, y, settings)`: per-example evaluation metrics of a batch (shape (N,), averaged over
  the split; (N, D) vectors are collected for `summary`), and `summary(means, vectors, settings)`
  for split-level figures. Both get the split's size `n` and each batch's `offset` in the settings.
  A family without metrics (a GAN) sets `evaluation = "samples"`: `evaluate` then reports the
  quality of its samples. `evaluation_options` declares the `evaluate` options a family reads
  (`runtime.declaration.Option`s: the CLI's "Model options"); giving one to a family that does not
  read it is a usage error. A figure too slow for a whole split is taken on
  `evenly_spaced` images unless `full` is set.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from gentool.runtime import verbs

def subset_stride(settings: dict, most: int) -> int:
    """Every how many images of the split the evenly spaced subset of about `most` takes (1: all)."""
    return 1 if settings["full"] else max(1, settings["n"] // most)


def evenly_spaced(x: torch.Tensor, settings: dict, most: int) -> torch.Tensor:
    """The rows of a batch (at `settings["offset"]` in a split of `settings["n"]`) that belong to
    the split's evenly spaced subset of `most` to 2 * `most` images, or every row when
    `settings["full"]`. Spread over the split, not its first images: MNIST's test split grows harder
    towards its end (its first 1,000 images score a VAE's -ELBO a nat below the whole split)."""
    stride = subset_stride(settings, most)
    return x[(-settings["offset"]) % stride :: stride]


def subset_size(settings: dict, most: int) -> int:
    """How many images `evenly_spaced` takes from the whole split."""
    return -(-settings["n"] // subset_stride(settings, most))


@dataclass
class Graph:
    """One exported role: the module to trace, example inputs, and the ONNX input/output names.

    The batch axis of every input is dynamic; `dynamic_axes` adds others per input name, each with
    the multiple its size must be. Integer inputs (time steps, labels) give the exclusive upper
    bound of their values in `int_bounds`, which the export's parity check draws below.
    """

    module: nn.Module
    inputs: tuple[torch.Tensor, ...]
    input_names: list[str]
    output_names: list[str]
    tolerance: float = 1e-4
    dynamic_axes: dict[str, dict[int, int]] = field(default_factory=dict)
    int_bounds: dict[str, int] = field(default_factory=dict)

    def axes(self, name: str) -> dict[int, int]:
        return {0: 1, **self.dynamic_axes.get(name, {})}


class GenerativeModel(nn.Module):
    name: str = ""
    defaults: dict = {}
    choices: dict = {}
    least: dict = {}  # integer options that may go below 1, with their least value (every other is at least 1)
    train_defaults = {"epochs": 10, "batch_size": 128, "lr": 1e-3, "lr_schedule": "constant"}
    evaluation = "metrics"  # what `evaluate` reports: `metrics` on a split, or the quality of `samples`
    evaluation_options: tuple = ()  # the `evaluate` options the family reads (runtime.declaration.Option)
    preview_samples = 64  # samples in the per-epoch grid
    quick_fid_samples = 1_000  # samples (and test images) of the per-epoch quick FID
    shown_losses: dict = {}  # loss keys shown beside the epoch's losses, with the label they go by

    def __init__(self, image_shape: tuple[int, int, int], hparams: dict, num_classes: int | None = None):
        super().__init__()
        self.image_shape = tuple(int(s) for s in image_shape)
        self.hparams = {**self.defaults, **hparams}
        self.num_classes = num_classes

    def losses(self, x: torch.Tensor, y: torch.Tensor | None) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def forward(self, x, y=None):
        return self.losses(x, y)

    def networks(self) -> dict[str, nn.Module]:
        return {"model": self}

    def configure_optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]:
        return {name: torch.optim.Adam(net.parameters(), lr=lr) for name, net in self.networks().items()}

    def phases(self, step: int) -> list[str]:
        return list(self.networks())

    def phase_losses(self, phase: str, nets: dict[str, nn.Module], x, y, step: int) -> dict[str, torch.Tensor]:
        return nets[phase](x, y)

    def after_step(self, step: int) -> None:
        """Called after the optimizer steps of each global step."""

    def after_epoch(self, batches) -> None:
        """Called after each epoch with batches of (up to 10,000) training images."""

    def graphs(self, batch: int = 2) -> dict[str, Graph]:
        raise NotImplementedError

    def graph_metadata(self) -> dict:
        return {}

    def preview(self, graphs, images: np.ndarray, seed: int) -> dict[str, np.ndarray]:
        """Named image batches for the per-epoch grids: `preview_samples` samples drawn with
        `sampling()`, and test images above their reconstructions, for the roles that provide them."""
        out = {}
        if verbs.supports(graphs, "sample"):
            out["samples"] = verbs.find(graphs, "sample", options=self.sampling(graphs))(graphs, self.preview_samples, seed)
        if verbs.supports(graphs, "reconstruct"):
            out["reconstructions"] = np.concatenate([images, verbs.find(graphs, "reconstruct")(graphs, images)])
        return out

    def sampling(self, graphs) -> dict:
        """The sampler options of the previews and of the per-epoch quick FID: by default the
        cheapest the sampler module declares (a diffusion family would pick a few DDIM steps)."""
        return verbs.cheapest(graphs, "sample")

    def metrics(self, x: torch.Tensor, y: torch.Tensor | None, settings: dict) -> dict:
        return {}

    def summary(self, means: dict, vectors: dict[str, np.ndarray], settings: dict) -> dict:
        return {}
