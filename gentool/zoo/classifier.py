"""Classifier: a small CNN trained on labelled images, the sample-quality suite's feature network.

Inception weights cannot be had here, and for 28x28 data the field's practice is a classifier
trained on the data itself (TF-GAN's MNIST Frechet distance, the "Frechet LeNet Distance"). Two
3x3 conv pairs with BatchNorm and 2x2 max pooling (widths w, 2w), a 3x3 conv of width 4w and a
global average give the `features` (N, 4w), the penultimate layer; dropout and a linear layer give
the `logits`. Both are outputs of one exported graph, role `features`. Training shifts each image
by up to `--shift` pixels (zero fill; per-example keyed noise, so resumes and torchrun are exact)
and uses cross-entropy. `evaluate` reports `accuracy` and `cross_entropy_nats`. At the default
width of 32 it has 140k weights (0.56 MB as ONNX) and costs 22M multiply-adds per 28x28 image.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gentool.errors import UsageError
from gentool.noise import rand_like
from gentool.zoo import register
from gentool.zoo.base import GenerativeModel, Graph
from gentool.zoo.blocks import check_width


def conv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


class FeatureNet(nn.Module):
    """x (N,C,H,W) in [0, 1] -> (features (N, 4w), logits (N, classes)): the exported graph."""

    def __init__(self, channels: int, width: int, classes: int, dropout: float):
        super().__init__()
        w = width
        self.body = nn.Sequential(
            conv_bn_relu(channels, w), conv_bn_relu(w, w), nn.MaxPool2d(2),
            conv_bn_relu(w, 2 * w), conv_bn_relu(2 * w, 2 * w), nn.MaxPool2d(2),
            conv_bn_relu(2 * w, 4 * w), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(4 * w, classes))

    def forward(self, x):
        features = self.body(x)
        return features, self.head(features)


def shifted(x: torch.Tensor, most: int) -> torch.Tensor:
    """Each image moved by its own whole-pixel offset in [-most, most] on both axes, zero filled."""
    if most == 0:
        return x
    n, c, h, w = x.shape
    offsets = (rand_like(x.new_empty(n, 2)) * (2 * most + 1)).floor().long() - most
    padded = F.pad(x, [most] * 4)
    rows = torch.arange(h, device=x.device) + most - offsets[:, :1]  # (n, h) rows of `padded`
    cols = torch.arange(w, device=x.device) + most - offsets[:, 1:]
    picked = padded.gather(2, rows[:, None, :, None].expand(n, c, h, w + 2 * most))
    return picked.gather(3, cols[:, None, None, :].expand(n, c, h, w))


@register
class Classifier(GenerativeModel):
    """A small CNN classifier: the feature network of the sample-quality suite."""

    name = "classifier"
    defaults = {"width": 32, "dropout": 0.3, "shift": 2}
    least = {"shift": 0}
    train_defaults = {"epochs": 12, "batch_size": 128, "lr": 2e-3, "lr_schedule": "cosine"}

    def __init__(self, image_shape, hparams, num_classes=None):
        super().__init__(image_shape, hparams, num_classes)
        if not num_classes or num_classes < 2:
            raise UsageError("a classifier trains on labelled data with at least two classes (a folder of class folders, an .npz with labels, mnist, ...)")
        check_width(self.hparams["width"])
        if not 0 <= self.hparams["dropout"] < 1:
            raise UsageError(f"--dropout must be in [0, 1), got {self.hparams['dropout']}")
        if not 0 <= self.hparams["shift"] < min(self.image_shape[1:]):
            raise UsageError(f"--shift must be in [0, {min(self.image_shape[1:])}), got {self.hparams['shift']}")
        self.net = FeatureNet(self.image_shape[0], self.hparams["width"], num_classes, self.hparams["dropout"])

    def losses(self, x, y=None):
        if y is None:
            raise UsageError("a classifier needs labels: this data has none")
        _, logits = self.net(shifted(x, self.hparams["shift"]))
        return {"loss": F.cross_entropy(logits, y)}

    def graphs(self, batch=2):
        x = torch.rand(batch, *self.image_shape)
        return {"features": Graph(self.net, (x,), ["x"], ["features", "logits"])}

    def preview(self, graphs, images, seed):
        """Test images ordered by the class the graph gives them (a stable sort): one grid row runs
        through the classes."""
        logits = graphs.run("features", {"x": images})["logits"]
        return {"by_class": images[np.argsort(logits.argmax(1), kind="stable")]}

    def metrics(self, x, y, settings):
        if y is None:
            raise UsageError("evaluating a classifier needs labelled data")
        _, logits = self.net(x)
        return {"accuracy": (logits.argmax(1) == y).float(), "cross_entropy_nats": F.cross_entropy(logits, y, reduction="none")}
