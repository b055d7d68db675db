"""The model protocol: what the generic loop, evaluation and export know about a family.

A family is a plain `nn.Module` subclass of `GenerativeModel` that declares
- `name` (its CLI name), `defaults` (every hyperparameter with its default; the type of the
  default is the type of the flag) and `choices` (allowed values where they are few);
- `train_defaults`: epochs, batch size, learning rate and its schedule that train well with no flags;
- `losses(x, y)`: named per-example-mean losses for a batch, `loss` being the one optimised;
- `graphs()`: the deterministic graphs it exports, by role (see DESIGN.md);
- optional capabilities that evaluation looks for: `reconstruct`, `elbo_terms`, `iw_nll`,
  `posterior_mean`, `code_activations(x)` (code units in (0, 1), (N, units): sparsity metrics),
  `jacobian_fro(x)` (per-image exact norm of the encoder's Jacobian), and `fit_prior` (called once
  after training with batches of training data); `decode(z)` (codes -> images) draws the loop's
  sample grids when the model has a fitted prior.
A family with several optimizers overrides `configure_optimizers` and `train_step`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class Graph:
    """One exported role: the module to trace, example inputs, and the ONNX input/output names.

    `dynamic_axes` maps each dynamic axis of the inputs to the multiple its size must be (1: any);
    by default only the batch axis is dynamic.
    """

    module: nn.Module
    inputs: tuple[torch.Tensor, ...]
    input_names: list[str]
    output_names: list[str]
    tolerance: float = 1e-4
    dynamic_axes: dict[int, int] = field(default_factory=lambda: {0: 1})


class GenerativeModel(nn.Module):
    name: str = ""
    defaults: dict = {}
    choices: dict = {}
    train_defaults = {"epochs": 10, "batch_size": 128, "lr": 1e-3, "lr_schedule": "constant"}

    def __init__(self, image_shape: tuple[int, int, int], hparams: dict):
        super().__init__()
        self.image_shape = tuple(int(s) for s in image_shape)
        self.hparams = {**self.defaults, **hparams}

    def losses(self, x: torch.Tensor, y: torch.Tensor | None) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def graphs(self, batch: int = 2) -> dict[str, Graph]:
        raise NotImplementedError

    def graph_metadata(self) -> dict[str, str]:
        """Extra ONNX metadata the runtime needs (latent size, prior, ...)."""
        return {}

    def configure_optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]:
        return {"model": torch.optim.Adam(self.parameters(), lr=lr)}

    def train_step(self, x, y, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, torch.Tensor]:
        (opt,) = optimizers.values()
        losses = self.losses(x, y)
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        opt.step()
        return losses
