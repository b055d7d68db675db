"""What a training says about itself on stderr: the banner it starts with, each epoch's losses
(with the figures its family shows beside them), and the closing summary of where its results are
and what to try next."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

# What the closing summary suggests next, for the verbs the run's graphs provide (RUN: the run)
NEXT_COMMANDS = {
    "sample": "gentool sample RUN -n 64 -o samples.png",
    "reconstruct": "gentool reconstruct RUN IMAGE.png -o reconstructed.png",
    "denoise": "gentool denoise NOISY.png --model RUN -o clean.png",
    "upscale": "gentool upscale SMALL.png --model RUN -o big.png",
}


def closing(run_dir: Path, meta: dict, rows: list[dict], graphs, curves: bool, shown: dict | None = None,
                    exported: bool = True) -> str:
    """The lines a training ends with: what it did, its last figures, where its results are, and
    the commands to try next."""
    from gentool.runtime import verbs

    last = rows[-1] if rows else {}
    figures = loss_status({k[5:]: v for k, v in last.items() if k.startswith("test_")}, shown or {})
    figures += f"  fid_1k {last['fid_1k']:.2f}" if "fid_1k" in last else ""
    seconds = sum(row.get("seconds", 0) for row in rows)
    grids = sorted(p.name for p in (run_dir / "grids").glob(f"*-{meta['epoch']:03d}.png"))
    run = str(run_dir)
    results = [("results.png", "the training curves")] if curves else []
    results += [("grids/", ", ".join(grids) + " (the last epoch's)")] if grids else []
    if exported:
        results.append((", ".join(f"{role}.onnx" for role in graphs.roles), "the exported graphs (they run without PyTorch)"))
    results.append(("model.safetensors", "the weights; metrics.jsonl, each epoch's figures"))
    lines = [f"done: {meta['model']} on {meta['data']}, {meta['epoch']} epoch{'s' * (meta['epoch'] != 1)} "
             f"({seconds:.0f}s of training); test {figures}", f"results in {run}/:"]
    width = max(len(name) for name, _ in results)
    lines += [f"  {name:<{width}}  {what}" for name, what in results]
    lines.append("next:")
    if not exported:
        lines.append(f"  gentool export {run}   (this run was trained with --no-export)")
    if "features" in graphs.roles:
        lines.append(f"  gentool fid {meta['data']}:test SAMPLES/ --features {run}/features.onnx")
    lines += [f"  {command.replace('RUN', run)}" for verb, command in NEXT_COMMANDS.items() if verbs.supports(graphs, verb)][:2]
    lines += [f"  gentool evaluate {run}", f"  gentool export {run} -o exports/{run_dir.name}"]
    return "\n".join(lines)


def write_curves(run_dir: Path) -> bool:
    """`results.png`, the training curves, when matplotlib is installed (else a note says how);
    whether it was drawn."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        print("note: pip install 'gentool[plot]' to have results.png (training curves) drawn here", file=sys.stderr)
        return False
    from gentool import plots

    plots.training_curves(run_dir, run_dir / "results.png")
    return True


def _count(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(n)


def banner(model, meta: dict, run_dir: Path, n_train: int, n_test: int, epochs: int, steps: int, device, processes: int) -> str:
    """The line a training starts with: what trains on what, how long, where, and into which directory."""
    cfg = meta["train"]
    where = f"{device.type}" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else f" ({torch.get_num_threads()} threads)")
    if processes > 1:
        where += f", {processes} processes"
    shape = "x".join(map(str, meta["image_shape"]))
    return (f"gentool train {meta['model']}: {_count(sum(p.numel() for p in model.parameters()))} parameters; "
            f"{meta['data']}: {n_train:,} training and {n_test:,} test images of {shape}; "
            f"{epochs} epoch{'s' * (epochs != 1)} of {steps} step{'s' * (steps != 1)} (batch {cfg['batch_size']}, lr {cfg['lr']:g} {cfg['lr_schedule']}, {cfg.get('precision', 'fp32')}); "
            f"device {where}; run directory {run_dir}")


def loss_status(losses: dict[str, float], shown_losses: dict[str, str]) -> str:
    """`loss 1.234`, or each phase's loss for a family with several optimizers, and the figures
    the family shows beside them (`shown_losses`: key -> label)."""
    shown = {k: v for k, v in losses.items() if k == "loss"} or {k: v for k, v in losses.items() if k.endswith("_loss")}
    shown.update({label: losses[k] for k, label in shown_losses.items() if k in losses})
    return "  ".join(f"{k} {v:.3f}" for k, v in shown.items())
