"""The one-class protocol: a model trained on some classes only (`train --classes`) scores every image
of a labelled split; the AUROC says how well the scores separate the other classes (anomalous, the
positives) from the trained ones (normal).

The scores are exactly those of `gentool score`: the checkpoint is exported to a temporary directory
and scored by the same torch-free code, so the two can never disagree (and the scores belong to the
checkpoint, not to graphs exported from an earlier state of the run).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from gentool import checkpoint, data as datasets, metrics
from gentool.errors import UsageError


def split_scores(path: Path, data: str | None, split: str, device: str, limit: int | None, seed: int):
    """(anomaly scores, their kind, the dataset) for a checkpoint over a data split."""
    from gentool.export import export
    from gentool.runtime import pipelines
    from gentool.runtime.artifact import Artifact

    model, meta = checkpoint.load(path)
    dataset = datasets.load(data or meta["data"], split, limit)
    if list(dataset.image_shape) != list(meta["image_shape"]):
        raise UsageError(f"'{dataset.name}' has images of shape {list(dataset.image_shape)}, the model expects {meta['image_shape']}")
    with tempfile.TemporaryDirectory() as tmp:
        export(model, meta, Path(tmp))
        scores, kind = pipelines.anomaly_scores(Artifact(tmp, device), dataset.images / np.float32(255), seed)
    return scores, kind, dataset


def evaluate_anomaly(path: Path, data: str | None = None, split: str = "test", device: str = "auto",
                     limit: int | None = None, seed: int = 0) -> dict:
    """`auroc` (anomalous = not one of the run's training classes), `anomaly_score` and `normal_classes`."""
    normal = checkpoint.read_meta(path)["train"].get("classes")
    if not normal:
        raise UsageError("--anomaly needs a run trained on some classes only (gentool train ... --classes 3)")
    scores, kind, dataset = split_scores(path, data, split, device, limit, seed)
    if dataset.labels is None:
        raise UsageError(f"--anomaly needs labelled data; '{dataset.name}' has no labels")
    return {"auroc": metrics.auroc(scores, ~np.isin(dataset.labels, normal)), "anomaly_score": kind, "normal_classes": normal}
