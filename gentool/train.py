"""The one training loop, for every family, knowing models only through the zoo protocol.

Data lives on the device as uint8; each batch is sliced with a permutation and scaled there.
Randomness is a function of (seed, epoch): the shuffle uses its own generator, the global RNG is
reseeded at each epoch start, and the noise of a training step is keyed by example
(`gentool.noise`), so `--resume` (also from a Ctrl-C mid-epoch, which stores the step and RNG state)
continues to exactly the same weights as an uninterrupted run, and a run split over processes by
`torchrun` (`gentool.distributed`) follows the single-process one.
"""

from __future__ import annotations

import json
import math
import signal
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from gentool import checkpoint, data as datasets, distributed, files, images, noise, runs
from gentool.errors import UsageError, check_count
from gentool.graphs import TorchGraphs
from gentool.progress import Reporter, deferred_interrupt

PREVIEW_IMAGES = 32  # test images shown in the per-epoch reconstruction grids
PRIOR_IMAGES = 10_000  # training images handed to `after_epoch` (the AE fits its prior on their codes)
# the running sums of an epoch hold, beside each loss, the examples it was taken on (a phase need
# not run at every step: WGAN-GP's generator)
SEEN = "seen:"


@dataclass
class Options:
    """What `gentool train` was asked for; None means the model's default."""

    model: str
    data: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    lr_schedule: str | None = None
    seed: int = 0
    device: str = "auto"
    out: Path | None = None
    resume: Path | None = None
    init: Path | None = None  # fine-tune: start from this checkpoint's model, options and weights
    limit: int | None = None
    binarize: bool = False
    hparam_args: tuple[str, ...] = ()
    classes: str | None = None  # e.g. "3" or "3,5": train on these labels only
    size: tuple[int, int] | None = None  # resize every image to (H, W) as it loads

    def check(self) -> Options:
        """The combinations `gentool train` refuses before any work."""
        if not self.model and self.resume is None and self.init is None:
            raise UsageError("name a model to train (e.g. `gentool train vae --data mnist`), --resume a run or --init from one")
        if self.limit is not None:
            check_count("--limit", self.limit)
        if self.resume and (self.hparam_args or self.model or self.data or self.classes or self.size):
            raise UsageError("--resume continues a run with its own settings; only --epochs and --device may be given")
        if self.init and (self.resume or self.hparam_args):
            raise UsageError("--init takes the model and its options from the run it starts from; it cannot be combined with --resume or model options")
        return self


LR_SCHEDULES = ("constant", "cosine")


def anneal(optimizers: dict, done: int, total: int) -> None:
    """Cosine annealing: each parameter group's rate for the step after `done` of `total` steps is its
    initial rate (kept in the group, so it survives a resume) times (1 + cos(pi * done / total)) / 2."""
    factor = 0.5 * (1 + math.cos(math.pi * done / total))
    for opt in optimizers.values():
        for group in opt.param_groups:
            group["lr"] = group.setdefault("initial_lr", group["lr"]) * factor


def epoch_seed(seed: int, epoch: int) -> int:
    return seed * 100_003 + epoch


def batches_of(images_u8: torch.Tensor, batch_size: int, binarize: bool = False):
    """Float [0,1] batches of a uint8 tensor, in order (a fixed binarization when asked)."""
    generator = torch.Generator(images_u8.device).manual_seed(0) if binarize else None
    for i in range(0, len(images_u8), batch_size):
        x = images_u8[i : i + batch_size].float().div_(255)
        yield torch.bernoulli(x, generator=generator) if binarize else x


def class_indices(spec: str, dataset: datasets.Dataset) -> list[int]:
    """'3' or '3,5' -> sorted label indices; each item is a class name, else a class index."""
    if dataset.labels is None:
        raise UsageError(f"--classes needs labelled data; '{dataset.name}' has no labels")
    names, indices = dataset.classes, set()
    for item in (s.strip() for s in spec.split(",")):
        if item in names:
            indices.add(names.index(item))
        elif item.isdigit() and int(item) < len(names):
            indices.add(int(item))
        else:
            raise UsageError(
                f"--classes: '{dataset.name}' has no class '{item}' (use 0..{len(names) - 1} or a name: {', '.join(names)})"
            )
    return sorted(indices)


def training_set(data: str, limit: int | None, classes: str | list[int] | None, size=None):
    """The training split (resized to `size` when given), keeping only `classes` (a --classes spec
    or label indices) before `limit`.

    Returns the dataset and the label indices kept (None for all).
    """
    dataset = datasets.load(data, "train", None if classes else limit, size)
    if not classes:
        return dataset, None
    if isinstance(classes, str):
        classes = class_indices(classes, dataset)
    keep = np.flatnonzero(np.isin(dataset.labels, classes))[:limit]
    if not len(keep):
        raise UsageError(f"'{dataset.name}' has no training examples of the classes {classes}")
    return replace(dataset, images=dataset.images[keep], labels=dataset.labels[keep]), classes


def train_step(model, nets: dict, optimizers: dict, x, y, step: int, scale: float = 1.0) -> dict[str, float]:
    """One global step: for each phase the family names, its losses, zero-grad, backward (of the
    loss times `scale`, this process's share of the batch) and the phase's optimizer step; then the
    family's `after_step`. Returns the losses as floats (`<phase>_<name>` when there are several
    optimizers)."""
    record = {}
    for phase in model.phases(step):
        losses = model.phase_losses(phase, nets, x, y, step)
        optimizer = optimizers[phase]
        optimizer.zero_grad(set_to_none=True)
        (losses["loss"] * scale).backward()
        optimizer.step()
        for k, v in losses.items():
            record[k if len(optimizers) == 1 else f"{phase}_{k}"] = float(v.detach())
    model.after_step(step)
    return record


def _setup(opts: Options, writer: bool = True):
    """Run directory, model, metadata, resume state (None for a new run) and training data.
    Only the writer (rank 0 under torchrun) claims a new run directory; the others get None."""
    from gentool import zoo

    if opts.resume:
        run_dir = Path(opts.resume)
        model, meta, state = checkpoint.load_resume(run_dir)
        if writer:
            files.remove_stale_temps(run_dir)
        model.train()
        train_set, _ = training_set(meta["data"], meta["train"]["limit"], meta["train"].get("classes"), checkpoint.data_size(meta))
        return run_dir, model, meta, state, train_set
    start = None
    if opts.init:
        start, start_meta = checkpoint.load(opts.init)
        if opts.model and opts.model != start_meta["model"]:
            raise UsageError(f"--init '{opts.init}' is a {start_meta['model']} model, not {opts.model}")
        cls, hparams = zoo.get(start_meta["model"]), start_meta["hparams"]
    else:
        cls = zoo.get(opts.model)
        hparams = zoo.parse_hparams(cls, list(opts.hparam_args))
    asked = {"epochs": opts.epochs, "batch_size": opts.batch_size, "lr": opts.lr}
    train_cfg = {k: cls.train_defaults[k] if v is None else v for k, v in asked.items()}
    for key, value in train_cfg.items():
        if value <= 0:
            raise UsageError(f"--{key.replace('_', '-')} must be positive, got {value}")
    train_cfg["lr_schedule"] = opts.lr_schedule or cls.train_defaults["lr_schedule"]
    if train_cfg["lr_schedule"] not in LR_SCHEDULES:
        raise UsageError(f"--lr-schedule must be one of {', '.join(LR_SCHEDULES)}, got '{train_cfg['lr_schedule']}'")
    if opts.data is None:
        raise UsageError("--data is required (e.g. --data mnist)")
    train_set, kept = training_set(opts.data, opts.limit, opts.classes, opts.size)
    torch.manual_seed(opts.seed)
    classes = len(train_set.classes) if train_set.classes else None
    model = cls(tuple(train_set.image_shape), hparams, classes)
    meta = {
        "model": cls.name,
        "hparams": model.hparams,  # with the defaults a family resolves from its other options
        "train": {**train_cfg, "binarize": opts.binarize, "limit": opts.limit, "classes": kept,
                  "init": str(opts.init) if opts.init else None, "size": list(opts.size) if opts.size else None},
        "image_shape": list(train_set.image_shape),
        "data": opts.data,
        "data_name": train_set.name,
        "data_stats": datasets.pixel_stats(train_set.images),
        "classes": classes,
        "class_names": train_set.classes,
        "seed": opts.seed,
        "epoch": 0,
        "step": 0,
    }
    if start is not None:
        try:
            model.load_state_dict(start.state_dict())
        except RuntimeError:
            raise UsageError(f"cannot start from '{opts.init}': its weights do not fit images of shape {meta['image_shape']}") from None
    if not writer:
        return None, model, meta, None, train_set
    return runs.claim(opts.out, cls.name, train_set.name), model, meta, None, train_set


@torch.no_grad()
def evaluate_losses(model, test_u8, labels, batch_size: int, binarize: bool, seed: int) -> dict[str, float]:
    """Mean of each loss term over the test split, with its own fixed RNG stream."""
    model.eval()
    sums: dict[str, float] = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for i, x in enumerate(batches_of(test_u8, batch_size, binarize)):
            y = labels[i * batch_size : i * batch_size + len(x)] if labels is not None else None
            for k, v in model.losses(x, y).items():
                sums[k] = sums.get(k, 0.0) + float(v) * len(x)
    model.train()
    return {k: v / len(test_u8) for k, v in sums.items()}


def write_grids(model, graphs, run_dir: Path, epoch: int, test_images: np.ndarray, seed: int) -> None:
    """The family's preview (`model.preview`) over `graphs`, one PNG grid per name, with the run,
    epoch and seed in its PNG text."""
    grid_dir = run_dir / "grids"
    grid_dir.mkdir(exist_ok=True)
    for name, batch in model.preview(graphs, test_images, seed).items():
        text = images.made_by("train", grid=name, run=str(run_dir), epoch=epoch, seed=seed)
        images.write_image(images.make_grid(batch, nrow=8), str(grid_dir / f"{name}-{epoch:03d}.png"), text)


def fid_watch(data: str, image_shape, test_images: np.ndarray, n: int):
    """For the per-epoch quick FID (for trends: biased up against evaluate's 10,000 samples): the
    bundled feature network of the run's data and the features of the first `n` test images; None
    for data without one."""
    from gentool.runtime import quality

    path = quality.BUNDLED_FEATURES.get(data)
    if path is None or not path.is_file():
        return None
    network, _ = quality.feature_network(data, "cpu")
    if network.image_shape != tuple(image_shape):
        return None
    return network, quality.features(network, test_images[:n] / np.float32(255))[0]


def epoch_pictures(model, meta, run_dir: Path, epoch: int, preview_images: np.ndarray, watch) -> dict[str, float]:
    """The epoch's grids, and its quick FID (`fid_1k`, on as many test images) when it can sample."""
    from gentool.runtime import quality, verbs

    model.eval()
    graphs = TorchGraphs(model, meta)
    write_grids(model, graphs, run_dir, epoch, preview_images, meta["seed"])
    found = {}
    if watch is not None and verbs.supports(graphs, "sample"):
        found["fid_1k"] = quality.quick_fid(graphs, watch[0], watch[1], meta["seed"], model.sampling(graphs))
    model.train()
    return found


def _write_metrics(run_dir: Path, rows: list[dict]) -> None:
    from gentool.files import atomic_write

    atomic_write(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())


def _read_metrics(run_dir: Path, upto_epoch: int) -> list[dict]:
    file = run_dir / "metrics.jsonl"
    if not file.exists():
        return []
    rows = [json.loads(line) for line in file.read_text().splitlines() if line.strip()]
    return [r for r in rows if r["epoch"] <= upto_epoch]


def run(opts: Options) -> Path | None:
    """Train as `opts` asks; returns the run directory (None in the processes of rank > 0)."""
    world, device = distributed.join(opts.device)
    try:
        return _train(opts, world, device)
    finally:
        world.close()


def _train(opts: Options, world: distributed.World, device: torch.device) -> Path | None:
    run_dir, model, meta, state, train_set = _setup(opts, world.writer)
    try:
        return _loop(opts, world, device, run_dir, model, meta, state, train_set)
    except BaseException:
        runs.release_if_unused(run_dir)
        raise


def _loop(opts, world, device, run_dir, model, meta, state, train_set) -> Path | None:
    cfg = meta["train"]
    epochs = opts.epochs if (opts.resume and opts.epochs is not None) else cfg["epochs"]
    if epochs < 1:
        raise UsageError(f"--epochs must be positive, got {epochs}")
    meta["train"]["epochs"] = epochs
    bs, seed, binarize = cfg["batch_size"], meta["seed"], cfg["binarize"]

    datasets.check_shape(train_set, meta["image_shape"], "train")
    test_set = datasets.load(meta["data"], "test", cfg["limit"], checkpoint.data_size(meta))
    datasets.check_shape(test_set, meta["image_shape"], "test")
    preview_images = test_set.images[:PREVIEW_IMAGES] / np.float32(255)
    watch = fid_watch(meta["data"], meta["image_shape"], test_set.images, model.quick_fid_samples) if world.writer else None
    train_u8 = torch.from_numpy(train_set.images).to(device)
    test_u8 = torch.from_numpy(test_set.images).to(device)
    train_y = torch.from_numpy(train_set.labels).to(device) if train_set.labels is not None else None
    test_y = torch.from_numpy(test_set.labels).to(device) if test_set.labels is not None else None

    # NHWC weights and batches let oneDNN (and cuDNN) pick their fast conv kernels: a width-24 dae step
    # took 4.2 instead of 5.4 ms per image on two CPU cores. A no-op for dense models.
    model.to(device, memory_format=torch.channels_last).train()
    nets = world.wrap(model.networks(), device)
    optimizers = model.configure_optimizers(cfg["lr"])
    start_epoch, start_step, sums = meta["epoch"], 0, {}
    if state:
        for name, opt in optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        # the saved sums are the whole world's: one process carries them on
        start_epoch, start_step, sums = state["epoch"], state["step"], state["sums"] if world.writer else {}
    rows = _read_metrics(run_dir, start_epoch) if world.writer else []

    n = len(train_u8)
    steps = math.ceil(n / bs)
    if sums and not any(k.startswith(SEEN) for k in sums):  # saved before the counts were kept: every loss at every step
        sums.update({SEEN + k: float(min(start_step * bs, n)) for k in list(sums)})
    reporter = Reporter(steps, bs, n, enabled=world.writer)
    reporter.line(banner(model, meta, run_dir, len(train_u8), len(test_u8), epochs, steps, device, world.size))
    if state:
        reporter.line(f"resuming {run_dir} at epoch {start_epoch + 1}/{epochs}, step {start_step}/{steps}")
    epoch, step = start_epoch, start_step

    def save(epoch_done: int, step_done: int, running: dict) -> None:
        meta.update(epoch=epoch_done, step=step_done)
        resume = {
            "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
            "epoch": epoch_done,
            "step": step_done,
            "sums": running,
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if device.type == "cuda" else [],
        }
        checkpoint.save(run_dir, model, meta, resume)

    with deferred_interrupt() as interrupted:
        for epoch in range(start_epoch, epochs):
            started = time.perf_counter()
            reporter.start_epoch(f"epoch {epoch + 1}/{epochs}", step)
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(epoch_seed(seed, epoch))).to(device)
            if step == 0:
                torch.manual_seed(epoch_seed(seed, epoch))
                sums = {}
            else:
                torch.set_rng_state(state["rng"])
                if device.type == "cuda" and state.get("cuda_rng"):
                    torch.cuda.set_rng_state_all(state["cuda_rng"])
            while step < steps:
                positions = torch.arange(step * bs, min((step + 1) * bs, n), device=device)
                mine = world.share(positions)
                idx = perm[mine]
                if cfg.get("lr_schedule") == "cosine":
                    anneal(optimizers, epoch * steps + step, epochs * steps)
                x = train_u8[idx].float().div_(255).contiguous(memory_format=torch.channels_last)
                y = train_y[idx] if train_y is not None else None
                with noise.keyed(noise.example_keys(seed, epoch, mine)):
                    if binarize:
                        x = (noise.rand_like(x) < x).to(x.dtype)
                    losses = train_step(model, nets, optimizers, x, y, epoch * steps + step,
                                        world.size * len(mine) / len(positions))
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + v * len(mine)
                    sums[SEEN + k] = sums.get(SEEN + k, 0.0) + len(mine)
                step += 1
                signum = interrupted()
                stop, diverged = world.any(signum, not all(math.isfinite(v) for v in losses.values()))
                if diverged:
                    raise UsageError(f"training diverged at epoch {epoch + 1}, step {step}; try a lower --lr")
                reporter.step(_loss_status(losses, model.shown_losses))
                if stop:
                    reporter.close()
                    sums = world.total(sums)
                    if world.writer:
                        save(epoch, step, sums)
                        print(f"interrupted: saved epoch {epoch + 1} at step {step}/{steps}; continue with: "
                              f"gentool train --resume {run_dir}", file=sys.stderr)
                    raise SystemExit(128 + (signum or signal.SIGINT))
            step = 0
            seconds = time.perf_counter() - started
            sums = world.total(sums)
            model.after_epoch(batches_of(train_u8[:PRIOR_IMAGES], 500))
            if not world.writer:
                continue
            row = {"epoch": epoch + 1, **{f"train_{k}": v / sums[SEEN + k] for k, v in sums.items() if not k.startswith(SEEN)}}
            row.update({f"test_{k}": v for k, v in evaluate_losses(model, test_u8, test_y, 500, binarize, seed).items()})
            row.update(epoch_pictures(model, meta, run_dir, epoch + 1, preview_images, watch))
            row["seconds"] = round(seconds, 3)
            rows.append(row)
            _write_metrics(run_dir, rows)
            save(epoch + 1, 0, {})
            train_status = _loss_status({k[6:]: v for k, v in row.items() if k.startswith("train_")}, model.shown_losses)
            test_status = _loss_status({k[5:]: v for k, v in row.items() if k.startswith("test_")}, model.shown_losses)
            quick = f"  fid_1k {row['fid_1k']:.2f}" if "fid_1k" in row else ""
            reporter.line(f"epoch {epoch + 1}/{epochs}  train {train_status}  test {test_status}{quick}  {seconds:.1f}s")
    reporter.close()
    if not world.writer:
        return None

    from gentool.export import export
    from gentool.runtime.artifact import Artifact

    differences = export(model, meta, run_dir)
    worst = max(differences.values(), default=0.0)
    print(f"exported {', '.join(differences)} to {run_dir} (max |torch - onnxruntime| {worst:.1e})", file=sys.stderr)
    # The last grids again, from the exported graphs: pixel for pixel what `gentool sample RUN` draws.
    model.eval()
    exported = Artifact(str(run_dir), "cpu")
    write_grids(model, exported, run_dir, epochs, preview_images, seed)
    curves = write_curves(run_dir)
    print(closing_summary(run_dir, meta, rows, exported, curves, model.shown_losses), file=sys.stderr)
    return run_dir


# What the closing summary suggests next, for the verbs the run's graphs provide (RUN: the run)
NEXT_COMMANDS = {
    "sample": "gentool sample RUN -n 64 -o samples.png",
    "reconstruct": "gentool reconstruct RUN IMAGE.png -o reconstructed.png",
    "denoise": "gentool denoise NOISY.png --model RUN -o clean.png",
    "upscale": "gentool upscale SMALL.png --model RUN -o big.png",
}


def closing_summary(run_dir: Path, meta: dict, rows: list[dict], graphs, curves: bool, shown: dict | None = None) -> str:
    """The lines a training ends with: what it did, its last figures, where its results are, and
    the commands to try next."""
    from gentool.runtime import verbs

    last = rows[-1] if rows else {}
    figures = _loss_status({k[5:]: v for k, v in last.items() if k.startswith("test_")}, shown or {})
    figures += f"  fid_1k {last['fid_1k']:.2f}" if "fid_1k" in last else ""
    seconds = sum(row.get("seconds", 0) for row in rows)
    grids = sorted(p.name for p in (run_dir / "grids").glob(f"*-{meta['epoch']:03d}.png"))
    run = str(run_dir)
    results = [("results.png", "the training curves")] if curves else []
    results += [("grids/", ", ".join(grids) + " (the last epoch's)")] if grids else []
    results += [(", ".join(f"{role}.onnx" for role in graphs.roles), "the exported graphs (they run without PyTorch)"),
                ("model.safetensors", "the weights; metrics.jsonl, each epoch's figures")]
    lines = [f"done: {meta['model']} on {meta['data']}, {meta['epoch']} epoch{'s' * (meta['epoch'] != 1)} "
             f"({seconds:.0f}s of training); test {figures}", f"results in {run}/:"]
    width = max(len(name) for name, _ in results)
    lines += [f"  {name:<{width}}  {what}" for name, what in results]
    lines.append("next:")
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
            f"{epochs} epoch{'s' * (epochs != 1)} of {steps} step{'s' * (steps != 1)} (batch {cfg['batch_size']}, lr {cfg['lr']:g} {cfg['lr_schedule']}); "
            f"device {where}; run directory {run_dir}")


def _loss_status(losses: dict[str, float], shown_losses: dict[str, str]) -> str:
    """`loss 1.234`, or each phase's loss for a family with several optimizers, and the figures
    the family shows beside them (`shown_losses`: key -> label)."""
    shown = {k: v for k, v in losses.items() if k == "loss"} or {k: v for k, v in losses.items() if k.endswith("_loss")}
    shown.update({label: losses[k] for k, label in shown_losses.items() if k in losses})
    return "  ".join(f"{k} {v:.3f}" for k, v in shown.items())
