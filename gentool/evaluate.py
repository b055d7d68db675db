"""Test-split metrics that need the torch model, found through the model's capabilities.

Reconstruction metrics (`mse`, `bce`, `psnr_db`, `ssim`) are per-image means over the split: `mse`
per pixel, `bce` summed over the pixels of an image (nats), `psnr_db` the mean of per-image PSNRs.
VAEs add `neg_elbo_nats` and `kl_nats` (one posterior sample per image), `iw_nll_nats` (Burda et
al.'s importance-weighted bound with K samples) and `active_units` (latent dimensions whose
posterior mean varies across the split with variance above 0.01, Burda et al.'s criterion).
With `--binarize` checkpoints, the test split is binarized once with a fixed seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from gentool import checkpoint, data as datasets, metrics
from gentool.devices import torch_device
from gentool.errors import UsageError
from gentool.train import batches_of

BATCH = 250


@torch.no_grad()
def evaluate(path: Path, data: str | None = None, split: str = "test", iw_samples: int = 100,
             device: str = "auto", limit: int | None = None, seed: int = 0) -> dict:
    dev = torch_device(device)
    model, meta = checkpoint.load(path, dev)
    source = data or meta["data"]
    dataset = datasets.load(source, split, limit)
    if list(dataset.image_shape) != list(meta["image_shape"]):
        raise UsageError(
            f"'{source}' has images of shape {list(dataset.image_shape)}, the model expects {meta['image_shape']}"
        )
    torch.manual_seed(seed)
    binarize = meta["train"].get("binarize", False)
    sums: dict[str, float] = {}
    means = []

    def add(name: str, values) -> None:
        sums[name] = sums.get(name, 0.0) + float(np.sum(values))

    for x in batches_of(torch.from_numpy(dataset.images).to(dev), BATCH, binarize):
        if hasattr(model, "reconstruct"):
            a, b = x.cpu().numpy(), model.reconstruct(x).cpu().numpy()
            add("mse", metrics.mse(a, b))
            add("bce", metrics.bce_nats(b, a))
            add("psnr_db", metrics.psnr_db(a, b))
            add("ssim", metrics.ssim(a, b))
        if hasattr(model, "elbo_terms"):
            terms = model.elbo_terms(x)
            add("neg_elbo_nats", terms["neg_elbo"].cpu().numpy())
            add("kl_nats", terms["kl"].cpu().numpy())
        if hasattr(model, "iw_nll") and iw_samples > 0:
            add("iw_nll_nats", model.iw_nll(x, iw_samples).cpu().numpy())
        if hasattr(model, "elbo_terms"):
            means.append(model.posterior_mean(x).cpu())
    n = len(dataset)
    result = {"model": meta["model"], "data": source, "split": split, "n": n}
    result.update({k: v / n for k, v in sums.items()})
    if means:
        result["active_units"] = int((torch.cat(means).var(0) > 0.01).sum())
    if "iw_nll_nats" in result:
        result["iw_samples"] = iw_samples
    return result
