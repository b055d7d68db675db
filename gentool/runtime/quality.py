"""Sample quality, torch-free: image sets through a `features` graph, compared by `gentool.metrics`.

The feature networks are gentool's own `classifier` models (bundled per dataset, or any `features`
graph with gentool metadata), never Inception: the figures are "gentool FID (mnist features)", not
comparable with Inception FIDs, nor across feature networks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gentool import metrics
from gentool.errors import UsageError
from gentool.runtime.artifact import Artifact, Graphs
from gentool.runtime.image_to_image import ASSETS

BUNDLED_FEATURES = {"mnist": ASSETS / "features-mnist.onnx", "fashion-mnist": ASSETS / "features-fashion-mnist.onnx"}


def feature_network(spec: str, device: str = "auto") -> tuple[Artifact, str]:
    """A bundled network by dataset name, or a path to a `features` graph; and the name it goes by."""
    if spec in BUNDLED_FEATURES:
        path = BUNDLED_FEATURES[spec]
        if not path.is_file():
            raise UsageError(f"this gentool has no bundled {spec} feature network ({path} is missing): pass --features PATH.onnx")
        return Artifact(str(path), device), spec
    graphs = Artifact(spec, device)
    if "features" not in graphs.roles:
        raise UsageError(f"'{spec}' has no features graph (it has {', '.join(graphs.roles)}): --features takes mnist, fashion-mnist or a classifier's features.onnx")
    return graphs, Path(spec).name


def features(graphs: Graphs, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Images (N, C, H, W) in [0, 1] of the network's image shape -> features (N, D) and logits (N, K)
    (None for a network without them)."""
    if tuple(images.shape[1:]) != graphs.image_shape:
        raise UsageError(f"the feature network takes images of shape {list(graphs.image_shape)}, not {list(images.shape[1:])}")
    out = graphs.run("features", {"x": np.asarray(images, np.float32)})
    return out["features"].astype(np.float64), out.get("logits")


def compare(real: np.ndarray, fake: np.ndarray, fake_logits: np.ndarray | None = None,
            labels: np.ndarray | None = None, seed: int = 0) -> dict[str, float]:
    """The suite's figures for generated features against real ones: fid, kid (+ kid_std), precision,
    recall, density, coverage; from the logits of the generated images `classifier_score`, and with
    the labels they were drawn for `label_accuracy`."""
    kid, kid_std = metrics.kernel_inception_distance(real, fake, seed=seed)
    out = {"fid": metrics.frechet_distance(*metrics.gaussian_stats(real), *metrics.gaussian_stats(fake)),
           "kid": kid, "kid_std": kid_std, **metrics.manifold_metrics(real, fake)}
    if fake_logits is not None:
        out["classifier_score"] = metrics.classifier_score(fake_logits)
        if labels is not None:
            out["label_accuracy"] = metrics.label_accuracy(fake_logits, labels)
    return out
