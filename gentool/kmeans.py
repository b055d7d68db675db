"""k-means clustering in numpy: k-means++ seeding (Arthur & Vassilvitskii 2007), then Lloyd's
iterations; the best of a few seeded restarts (lowest within-cluster sum of squares) wins."""

from __future__ import annotations

import numpy as np


def _squared_distances(x: np.ndarray, centers: np.ndarray) -> np.ndarray:
    d = (x * x).sum(1)[:, None] - 2 * x @ centers.T + (centers * centers).sum(1)[None]
    return np.maximum(d, 0)


def _plus_plus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """The first center uniformly at random, each next one with probability proportional to the
    squared distance to the nearest center chosen so far."""
    centers = [x[rng.integers(len(x))]]
    nearest = _squared_distances(x, centers[0][None])[:, 0]
    for _ in range(1, k):
        total = nearest.sum()
        index = rng.choice(len(x), p=nearest / total) if total > 0 else rng.integers(len(x))
        centers.append(x[index])
        nearest = np.minimum(nearest, _squared_distances(x, x[index][None])[:, 0])
    return np.stack(centers)


def kmeans(x, k: int, seed: int = 0, restarts: int = 4, iterations: int = 100) -> np.ndarray:
    """Cluster the rows of x (N, D) into k groups; returns each row's cluster index, shape (N,).

    A cluster that loses all its rows keeps its previous center.
    """
    x = np.asarray(x, np.float64)
    rng = np.random.default_rng(seed)
    best_inertia, best = np.inf, None
    for _ in range(restarts):
        centers = _plus_plus(x, k, rng)
        for _ in range(iterations):
            labels = _squared_distances(x, centers).argmin(1)
            moved = np.stack([x[labels == j].mean(0) if (labels == j).any() else centers[j] for j in range(k)])
            if np.array_equal(moved, centers):
                break
            centers = moved
        distances = _squared_distances(x, centers)
        inertia = distances.min(1).sum()
        if inertia < best_inertia:
            best_inertia, best = inertia, distances.argmin(1)
    return best
