"""`gentool evaluate`: a checkpoint's metrics on a data split, loaded once for every part of the report.

The figures come from the family's hooks (`zoo/base.py`): `metrics(x, y, settings)` gives
per-example values, averaged over the split (a family may give fewer values than the batch, e.g.
a figure taken on an evenly spaced subset only); (N, D) values are collected whole and
handed to `summary`, which adds split-level figures (the settings of both hold the split's size
`n`). The shared reconstruction metrics (`mse`, `bce`, `psnr_db`, `ssim`) are
`gentool.metrics.reconstruction`. Runs trained with `--binarize` are
evaluated on a fixed binarization of the split. The RNG is seeded with `seed` first, so the
stochastic metrics (one-sample -ELBO, IW bound, a denoiser's corruption) repeat exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from gentool import checkpoint, progress
from gentool.devices import torch_device
from gentool.errors import UsageError, check_count
from gentool.train import batches_of

BATCH = 250


def settings_for(model, given: dict) -> dict:
    """The family's evaluation options (defaults, then the `given` values, each checked); one it
    does not read is a usage error naming the families that do."""
    from gentool import zoo

    own = {option.name: option for option in model.evaluation_options}
    for key, value in given.items():
        if key not in own:
            readers = zoo.evaluation_options()[key][1]
            raise UsageError(f"--{key.replace('_', '-')} is for {', '.join(readers)} models, not '{model.name}'")
        own[key].check(value)
    return {**{name: option.default for name, option in own.items()}, **given}


@torch.no_grad()
def split_metrics(model, meta: dict, dataset, settings: dict, seed: int) -> dict:
    """The family's metrics averaged over the split, then its summary figures."""
    model.eval()
    device = next(model.parameters()).device
    torch.manual_seed(seed)
    sums, counts, vectors = {}, {}, {}
    labels = None if dataset.labels is None else torch.from_numpy(dataset.labels).to(device)
    images = torch.from_numpy(dataset.images).to(device)
    batches = batches_of(images, BATCH, meta["train"].get("binarize", False))
    description = f"{model.name} metrics of {len(images):,} images"
    settings = {**settings, "n": len(images)}
    for i, x in enumerate(progress.track(batches, description, -(-len(images) // BATCH))):
        offset = i * BATCH
        y = None if labels is None else labels[offset : offset + len(x)]
        for key, values in model.metrics(x, y, {**settings, "offset": offset}).items():
            values = values.cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
            if values.ndim > 1:
                vectors.setdefault(key, []).append(values)
            else:
                sums[key] = sums.get(key, 0.0) + float(values.astype(np.float64).sum())
                counts[key] = counts.get(key, 0) + len(values)
    means = {k: sums[k] / counts[k] for k in sums}
    collected = {k: np.concatenate(v) for k, v in vectors.items()}
    return {**means, **model.summary(means, collected, settings)}


def evaluate(path: Path, data: str | None = None, split: str = "test", device: str = "auto", limit: int | None = None,
             seed: int = 0, anomaly: bool = False, probe: int | None = None, plot: str | None = None, **options) -> dict:
    """`model`, `data`, `split`, `n` and the metrics, or with `anomaly` / `probe` the one-class or
    probe figures alone (`plot`: where the ROC curve of `anomaly` goes). `options` are the
    given values of the family's own evaluation options."""
    if limit is not None:
        check_count("--limit", limit)
    if plot and not anomaly:
        raise UsageError("--plot draws the ROC curve of --anomaly or the curves of several --truncation values; for training curves use `gentool plot RUN`")
    if plot:
        from gentool import plots

        plots.check_target(plot)
    model, meta, dataset = checkpoint.load_with_split(path, data, split, limit, torch_device(device))
    settings = settings_for(model, options)
    found = {"model": meta["model"], "data": data or meta["data"], "split": split, "n": len(dataset)}
    if anomaly:
        from gentool.anomaly import evaluate_anomaly

        with progress.stage(f"anomaly scores of {len(dataset)} images"):
            found.update(evaluate_anomaly(model, meta, dataset, seed, plot))
    if probe is not None:
        from gentool.probe import evaluate_probe

        with progress.stage("linear probe and k-means, on codes and on pixels"):
            found.update(evaluate_probe(model, meta, dataset, probe, data, seed))
    if anomaly or probe is not None:
        return found
    return {**found, **split_metrics(model, meta, dataset, settings, seed)}
