"""What frozen codes are good for, measured against raw pixels with the same tools.

- Probe: a multinomial logistic regression trained on the codes (posterior mean, or the code) of N
  labelled training images per class, chosen at random by the seed, then scored on the evaluated
  split: `probe_accuracy`; the same probe on the pixels: `pixel_probe_accuracy`. Features are
  centred per dimension and divided by one number, their overall RMS on the training examples (so the
  L2 weight means the same for codes and pixels, and a pixel that is almost always 0 is not blown up);
  the loss is the mean cross-entropy + L2 / 2 * |W|^2 (L2 = 0.01, no penalty on the bias: what
  scikit-learn's default C = 1 amounts to at 100 examples), minimised in float64 by full-batch L-BFGS.
- Clustering: k-means with k = the number of classes (k-means++ seeding, seeded restarts) on the
  split's codes and on its pixels; `cluster_nmi` and `pixel_cluster_nmi` are the normalized mutual
  information of the clusters with the labels.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from gentool import checkpoint, data as datasets, metrics
from gentool.errors import UsageError
from gentool.kmeans import kmeans

L2 = 0.01


def per_class_sample(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices of n examples of each class, drawn without replacement by a seeded generator."""
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(labels):
        pool = np.flatnonzero(labels == label)
        if len(pool) < n:
            raise UsageError(f"--probe {n}: class {label} has only {len(pool)} training examples")
        chosen.append(rng.choice(pool, n, replace=False))
    return np.concatenate(chosen)


def probe_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray) -> float:
    """Accuracy on the test set of a logistic regression fitted to the training set (see the module doc)."""
    mean = train_x.mean(0)
    scale = np.sqrt(((train_x - mean) ** 2).mean()) or 1.0
    a, b = (torch.from_numpy((x - mean) / scale) for x in (train_x, test_x))
    y = torch.from_numpy(train_y)
    weight = torch.zeros(a.shape[1], int(max(train_y.max(), test_y.max())) + 1, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(weight.shape[1], dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=500, tolerance_grad=1e-9, tolerance_change=1e-12,
                                  history_size=20, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(a @ weight + bias, y) + L2 / 2 * weight.square().sum()
        loss.backward()
        return loss

    # Hundreds of tiny steps: one thread (several only wait on each other; 15x slower on a busy 2-core machine).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        optimizer.step(closure)
    finally:
        torch.set_num_threads(threads)
    with torch.no_grad():
        return float(((b @ weight + bias).argmax(1).numpy() == test_y).mean())


def evaluate_probe(model, meta: dict, dataset, per_class: int, data: str | None = None, seed: int = 0) -> dict:
    """`probe_per_class`, `probe_accuracy`, `pixel_probe_accuracy`, `cluster_nmi`, `pixel_cluster_nmi`
    for a model and an evaluation split (`dataset`); the probe trains on `data`'s training split."""
    from gentool.graphs import TorchGraphs
    from gentool.runtime import latent, verbs

    if per_class < 1:
        raise UsageError(f"--probe must be at least 1, got {per_class}")
    graphs = TorchGraphs(model.eval(), meta)
    if not verbs.supports(graphs, "encode"):
        raise UsageError(f"--probe needs a model with codes; a {meta['model']} model has none")
    train, test = datasets.load(data or meta["data"], "train", size=checkpoint.data_size(meta)), dataset
    if train.labels is None or test.labels is None:
        raise UsageError(f"--probe needs labelled data; '{test.name}' has no labels")
    chosen = per_class_sample(train.labels, per_class, seed)
    train_y, test_y = train.labels[chosen], test.labels
    train_codes, test_codes = (latent.codes(graphs, x / np.float32(255)).astype(np.float64) for x in (train.images[chosen], test.images))
    train_pixels, test_pixels = (x.reshape(len(x), -1) / 255.0 for x in (train.images[chosen], test.images))
    k = len(np.unique(train.labels))
    return {
        "probe_per_class": per_class,
        "probe_accuracy": probe_accuracy(train_codes, train_y, test_codes, test_y),
        "pixel_probe_accuracy": probe_accuracy(train_pixels, train_y, test_pixels, test_y),
        "cluster_nmi": metrics.nmi(test_y, kmeans(test_codes, k, seed)),
        "pixel_cluster_nmi": metrics.nmi(test_y, kmeans(test_pixels, k, seed)),
    }
