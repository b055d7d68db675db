"""The one-class protocol: a model trained on some classes only (`train --classes`) scores every image
of a labelled split; the AUROC says how well the scores separate the other classes (anomalous, the
positives) from the trained ones (normal).

The scores are exactly those of `gentool score`: the same numpy code (`runtime.verbs`' `score`)
runs over the checkpoint's torch networks, so the two agree within float tolerance.
"""

from __future__ import annotations

import numpy as np

from gentool import metrics
from gentool.errors import UsageError


def split_scores(model, meta: dict, dataset, seed: int) -> tuple[np.ndarray, str]:
    """(anomaly scores, their kind) of every image of the split."""
    from gentool.graphs import TorchGraphs
    from gentool.runtime import verbs

    graphs = TorchGraphs(model.eval(), meta)
    return verbs.find(graphs, "score")(graphs, dataset.images / np.float32(255), seed)


def evaluate_anomaly(model, meta: dict, dataset, seed: int = 0, plot: str | None = None) -> dict:
    """`auroc` (anomalous = not one of the run's training classes), `anomaly_score` and
    `normal_classes`; with `plot`, the ROC curve drawn into that PNG file."""
    normal = meta["train"].get("classes")
    if not normal:
        raise UsageError("--anomaly needs a run trained on some classes only (gentool train ... --classes 3)")
    if dataset.labels is None:
        raise UsageError(f"--anomaly needs labelled data; '{dataset.name}' has no labels")
    scores, kind = split_scores(model, meta, dataset, seed)
    anomalous = ~np.isin(dataset.labels, normal)
    auroc = metrics.auroc(scores, anomalous)
    if plot:
        from gentool import plots

        names = [dataset.classes[i] if dataset.classes else str(i) for i in normal]
        plots.roc_curve(plot, *metrics.roc_curve(scores, anomalous), auroc,
                        f"{meta['model']}: normal {', '.join(names)} of {dataset.name} ({kind})")
    return {"auroc": auroc, "anomaly_score": kind, "normal_classes": normal}
