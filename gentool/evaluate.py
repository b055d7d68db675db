"""Test-split metrics that need the torch model, found through the model's capabilities.

Reconstruction metrics (`mse`, `bce`, `psnr_db`, `ssim`) are per-image means over the split: `mse`
per pixel, `bce` summed over the pixels of an image (nats), `psnr_db` the mean of per-image PSNRs.
VAEs add `neg_elbo_nats` and `kl_nats` (one posterior sample per image), `iw_nll_nats` (Burda et
al.'s importance-weighted bound with K samples) and `active_units` (latent dimensions whose
posterior mean varies across the split with variance above 0.01, Burda et al.'s criterion).
Models with a `code_activations` capability (sparse codes in (0, 1)) add `mean_activation`, over
images and units, and `fraction_active`, the fraction of (image, unit) activations above 0.1 (twice
the default sparsity target rho = 0.05). A `jacobian_fro` capability adds `jacobian_fro`, the mean
exact Frobenius norm of the encoder's Jacobian on the split's first 250 images (an exact Jacobian
of a conv encoder costs a forward-mode pass per pixel: about 0.4 s an image on two CPU cores).
A model with `corrupt(x, level)` (a denoiser) is fed the split corrupted by its own noise at
`noise_level` (default: the model's `noise_level`), drawn after seeding with `seed`; it adds
`noisy_psnr_db` (corrupted vs clean) and `noise_level`, and the reconstruction metrics compare its
output with the clean images.
A model with `bicubic(x)` (super-resolution) reconstructs each image from its shrunk version; it
adds `bicubic_psnr_db` and `bicubic_ssim` (bicubic upscaling of the same shrunk images), the
difference `psnr_gain_db` and its `factor`.
Models with codes (`posterior_mean`) add `compression_ratio`: the bytes of an image as uint8
(C * H * W) over the bytes of its code stored as a float32 `.npy` payload (4 per code value).
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
ACTIVE_ABOVE = 0.1
JACOBIAN_IMAGES = 250


@torch.no_grad()
def evaluate(path: Path, data: str | None = None, split: str = "test", iw_samples: int = 100,
             device: str = "auto", limit: int | None = None, seed: int = 0, noise_level: float | None = None) -> dict:
    dev = torch_device(device)
    model, meta = checkpoint.load(path, dev)
    if noise_level is not None and not hasattr(model, "corrupt"):
        raise UsageError(f"--noise-level is for models trained on corrupted images (dae), not '{meta['model']}'")
    source = data or meta["data"]
    dataset = datasets.load(source, split, limit)
    if list(dataset.image_shape) != list(meta["image_shape"]):
        raise UsageError(
            f"'{source}' has images of shape {list(dataset.image_shape)}, the model expects {meta['image_shape']}"
        )
    torch.manual_seed(seed)
    binarize = meta["train"].get("binarize", False)
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    means = []

    def add(name: str, values) -> None:
        sums[name] = sums.get(name, 0.0) + float(np.sum(values))
        counts[name] = counts.get(name, 0) + np.size(values)

    for x in batches_of(torch.from_numpy(dataset.images).to(dev), BATCH, binarize):
        if hasattr(model, "reconstruct"):
            a, seen = x.cpu().numpy(), x
            if hasattr(model, "corrupt"):
                seen = model.corrupt(x, noise_level)
                add("noisy_psnr_db", metrics.psnr_db(a, seen.cpu().numpy()))
            b = model.reconstruct(seen).cpu().numpy()
            add("mse", metrics.mse(a, b))
            add("bce", metrics.bce_nats(b, a))
            add("psnr_db", metrics.psnr_db(a, b))
            add("ssim", metrics.ssim(a, b))
        if hasattr(model, "bicubic"):
            b = model.bicubic(x).cpu().numpy()
            add("bicubic_psnr_db", metrics.psnr_db(a, b))
            add("bicubic_ssim", metrics.ssim(a, b))
        if hasattr(model, "elbo_terms"):
            terms = model.elbo_terms(x)
            add("neg_elbo_nats", terms["neg_elbo"].cpu().numpy())
            add("kl_nats", terms["kl"].cpu().numpy())
        if hasattr(model, "iw_nll") and iw_samples > 0:
            add("iw_nll_nats", model.iw_nll(x, iw_samples).cpu().numpy())
        if hasattr(model, "elbo_terms"):
            means.append(model.posterior_mean(x).cpu())
        if hasattr(model, "code_activations"):
            h = model.code_activations(x).flatten(1)
            add("mean_activation", h.mean(1).cpu().numpy())
            add("fraction_active", (h > ACTIVE_ABOVE).float().mean(1).cpu().numpy())
        if hasattr(model, "jacobian_fro") and counts.get("jacobian_fro", 0) < JACOBIAN_IMAGES:
            add("jacobian_fro", model.jacobian_fro(x[: JACOBIAN_IMAGES - counts.get("jacobian_fro", 0)]).cpu().numpy())
    n = len(dataset)
    result = {"model": meta["model"], "data": source, "split": split, "n": n}
    result.update({k: v / counts[k] for k, v in sums.items()})
    if means:
        result["active_units"] = int((torch.cat(means).var(0) > 0.01).sum())
    if hasattr(model, "posterior_mean"):  # bytes of a uint8 image / bytes of its code in float32
        code_size = model.posterior_mean(torch.zeros(1, *dataset.image_shape, device=dev)).numel()
        result["compression_ratio"] = int(np.prod(dataset.image_shape)) / (4 * code_size)
    if "iw_nll_nats" in result:
        result["iw_samples"] = iw_samples
    if "bicubic_psnr_db" in result:
        result["psnr_gain_db"] = result["psnr_db"] - result["bicubic_psnr_db"]
        result["factor"] = model.factor
    if "noisy_psnr_db" in result:
        result["noise_level"] = model.noise_level if noise_level is None else noise_level
    return result
