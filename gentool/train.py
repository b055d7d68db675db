"""The one training loop, for every family, knowing models only through the zoo protocol.

Data lives on the device as uint8; each batch is sliced with a permutation and scaled there.
Randomness is a function of (seed, epoch): the shuffle uses its own generator, the global RNG is
reseeded at each epoch start, and the noise of a training step is keyed by example
(`gentool.noise`), so `--resume` (also from a Ctrl-C mid-epoch, which stores the step and RNG state)
continues to exactly the same weights as an uninterrupted run, and a run split over processes by
`torchrun` (`gentool.distributed`) follows the single-process one.
"""

from __future__ import annotations

import math
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gentool import checkpoint, data as datasets, distributed, files, images, noise, run_summary, runs
from gentool.errors import UsageError, check_count
from gentool.graphs import TorchGraphs
from gentool.progress import Reporter, deferred_interrupt

PREVIEW_IMAGES = 32  # test images shown in the per-epoch reconstruction grids
PRIOR_IMAGES = 10_000  # training images handed to `after_epoch` (the AE fits its prior on their codes)
# the running sums of an epoch hold, beside each loss, the examples it was taken on (a phase need
# not run at every step: a generator updated once per few critic steps)
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
    precision: str | None = None
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
    export: bool = True  # the ONNX graphs at the end (else `gentool export RUN` makes them later)

    def check(self) -> Options:
        """The combinations `gentool train` refuses before any work."""
        if not self.model and self.resume is None and self.init is None:
            raise UsageError("name a model to train (e.g. `gentool train vae --data mnist`), --resume a run or --init from one")
        if self.limit is not None:
            check_count("--limit", self.limit)
        if self.resume and (self.hparam_args or self.model or self.data or self.classes or self.size or self.precision):
            raise UsageError("--resume continues a run with its own settings; only --epochs and --device may be given")
        if self.init and (self.resume or self.hparam_args):
            raise UsageError("--init takes the model and its options from the run it starts from; it cannot be combined with --resume or model options")
        return self


LR_SCHEDULES = ("constant", "cosine")
PRECISIONS = ("fp32", "bf16")


def autocast_bf16(device: torch.device) -> bool:
    """Whether `--precision bf16` computes in bfloat16 here: on CUDA, and on CPUs with native bf16
    (AVX512-BF16 or AMX); elsewhere oneDNN emulates it, slower than float32, so float32 it is."""
    return device.type == "cuda" or (device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported())


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


def train_step(model, nets: dict, optimizers: dict, x, y, step: int, scale: float = 1.0, bf16: bool = False) -> dict[str, float]:
    """One global step: for each phase the family names, its losses (under bfloat16 autocast with
    `bf16`: weights, gradients and the optimizer stay float32), zero-grad, backward (of the loss times
    `scale`, this process's share of the batch) and the phase's optimizer step; then the family's
    `after_step`. Returns the losses as floats (`<phase>_<name>` when there are several optimizers)."""
    record = {}
    for phase in model.phases(step):
        with torch.autocast(x.device.type, torch.bfloat16, enabled=bf16):
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
        model.train()
        train_set, _ = datasets.training_set(meta["data"], meta["train"]["limit"], meta["train"].get("classes"), checkpoint.data_size(meta))
        if writer:  # the last step, so that nothing between it and the loop can leave the claim held
            runs.hold(run_dir)
            files.remove_stale_temps(run_dir)
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
    train_cfg["precision"] = opts.precision or cls.train_defaults.get("precision", "fp32")
    if train_cfg["precision"] not in PRECISIONS:
        raise UsageError(f"--precision must be one of {', '.join(PRECISIONS)}, got '{train_cfg['precision']}'")
    if opts.data is None:
        raise UsageError("--data is required (e.g. --data mnist)")
    train_set, kept = datasets.training_set(opts.data, opts.limit, opts.classes, opts.size)
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
        "classes": train_set.classes,  # the names, or None for unlabelled data
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
        loop = Loop(opts, world, device, run_dir, model, meta, state, train_set)
        loop.run()
        return finish(loop) if world.writer else None
    finally:
        runs.release(run_dir)


class Loop:
    """One training run, from where its state says it stopped to its last epoch: the data on the
    device, the wrapped networks and their optimizers, the epoch's running sums, and saving it all."""

    def __init__(self, opts: Options, world: distributed.World, device: torch.device, run_dir: Path | None, model, meta: dict,
                 state: dict | None, train_set: datasets.Dataset):
        cfg = meta["train"]
        self.epochs = opts.epochs if (opts.resume and opts.epochs is not None) else cfg["epochs"]
        if self.epochs < 1:
            raise UsageError(f"--epochs must be positive, got {self.epochs}")
        cfg["epochs"] = self.epochs
        self.world, self.device, self.run_dir, self.model, self.meta, self.state = world, device, run_dir, model, meta, state
        self.batch_size, self.seed, self.binarize, self.cosine = cfg["batch_size"], meta["seed"], cfg["binarize"], cfg.get("lr_schedule") == "cosine"
        self.export = opts.export
        self.bf16 = cfg.get("precision") == "bf16" and autocast_bf16(device)

        datasets.check_shape(train_set, meta["image_shape"], "train")
        test_set = datasets.load(meta["data"], "test", cfg["limit"], checkpoint.data_size(meta))
        datasets.check_shape(test_set, meta["image_shape"], "test")
        self.preview_images = test_set.images[:PREVIEW_IMAGES] / np.float32(255)
        self.watch = fid_watch(meta["data"], meta["image_shape"], test_set.images, model.quick_fid_samples) if world.writer else None
        self.train_u8, self.test_u8 = (torch.from_numpy(d.images).to(device) for d in (train_set, test_set))
        self.train_y, self.test_y = (None if d.labels is None else torch.from_numpy(d.labels).to(device) for d in (train_set, test_set))

        # NHWC weights and batches let oneDNN (and cuDNN) pick their fast conv kernels: a width-24 U-Net step
        # took 4.2 instead of 5.4 ms per image on two CPU cores. A no-op for dense models.
        model.to(device, memory_format=torch.channels_last).train()
        self.nets = world.wrap(model.networks(), device)
        self.optimizers = model.configure_optimizers(cfg["lr"])
        self.epoch, self.step, self.sums = meta["epoch"], 0, {}
        if state:
            for name, opt in self.optimizers.items():
                opt.load_state_dict(state["optimizers"][name])
            # the saved sums are the whole world's: one process carries them on
            self.epoch, self.step, self.sums = state["epoch"], state["step"], state["sums"] if world.writer else {}
        has_rows = world.writer and (run_dir / runs.METRICS).exists()
        self.rows = [r for r in runs.read_metrics(run_dir) if r["epoch"] <= self.epoch] if has_rows else []
        self.n = len(self.train_u8)
        self.steps = math.ceil(self.n / self.batch_size)
        if self.sums and not any(k.startswith(SEEN) for k in self.sums):  # saved before the counts were kept: every loss at every step
            self.sums.update({SEEN + k: float(min(self.step * self.batch_size, self.n)) for k in list(self.sums)})
        self.reporter = Reporter(self.steps, self.batch_size, self.n, enabled=world.writer)

    def save(self) -> None:
        """The weights, metadata and everything a resume needs, at the current epoch and step."""
        self.meta.update(epoch=self.epoch, step=self.step)
        resume = {
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "epoch": self.epoch,
            "step": self.step,
            "sums": self.sums,
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
        }
        checkpoint.save(self.run_dir, self.model, self.meta, resume)

    def run(self) -> None:
        self.reporter.line(run_summary.banner(self.model, self.meta, self.run_dir, len(self.train_u8), len(self.test_u8), self.epochs, self.steps,
                                  self.device, self.world.size))
        if self.meta["train"].get("precision") == "bf16" and not self.bf16:
            self.reporter.line(f"note: {self.device.type} has no native bfloat16 here; training in float32")
        if self.state:
            self.reporter.line(f"resuming {self.run_dir} at epoch {self.epoch + 1}/{self.epochs}, step {self.step}/{self.steps}")
        with deferred_interrupt() as interrupted:
            while self.epoch < self.epochs:
                started = time.perf_counter()
                self.train_epoch(interrupted)
                self.end_epoch(time.perf_counter() - started)
        self.reporter.close()

    def train_epoch(self, interrupted) -> None:
        """The epoch's steps from the current one; an interrupt saves the run mid-epoch and exits."""
        epoch, bs, n = self.epoch, self.batch_size, self.n
        self.reporter.start_epoch(f"epoch {epoch + 1}/{self.epochs}", self.step)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(epoch_seed(self.seed, epoch))).to(self.device)
        if self.step == 0:
            torch.manual_seed(epoch_seed(self.seed, epoch))
            self.sums = {}
        else:
            torch.set_rng_state(self.state["rng"])
            if self.device.type == "cuda" and self.state.get("cuda_rng"):
                torch.cuda.set_rng_state_all(self.state["cuda_rng"])
        while self.step < self.steps:
            positions = torch.arange(self.step * bs, min((self.step + 1) * bs, n), device=self.device)
            mine = self.world.share(positions)
            idx = perm[mine]
            if self.cosine:
                anneal(self.optimizers, epoch * self.steps + self.step, self.epochs * self.steps)
            x = self.train_u8[idx].float().div_(255).contiguous(memory_format=torch.channels_last)
            y = self.train_y[idx] if self.train_y is not None else None
            with noise.keyed(noise.example_keys(self.seed, epoch, mine)):
                if self.binarize:
                    x = (noise.rand_like(x) < x).to(x.dtype)
                losses = train_step(self.model, self.nets, self.optimizers, x, y, epoch * self.steps + self.step,
                                    self.world.size * len(mine) / len(positions), self.bf16)
            for k, v in losses.items():
                self.sums[k] = self.sums.get(k, 0.0) + v * len(mine)
                self.sums[SEEN + k] = self.sums.get(SEEN + k, 0.0) + len(mine)
            self.step += 1
            signum = interrupted()
            stop, diverged = self.world.any(signum, not all(math.isfinite(v) for v in losses.values()))
            if diverged:
                raise UsageError(f"training diverged at epoch {epoch + 1}, step {self.step}; try a lower --lr")
            self.reporter.step(run_summary.loss_status(losses, self.model.shown_losses))
            if stop:
                self.reporter.close()
                self.sums = self.world.total(self.sums)
                if self.world.writer:
                    self.save()
                    print(f"interrupted: saved epoch {epoch + 1} at step {self.step}/{self.steps}; continue with: "
                          f"gentool train --resume {self.run_dir}", file=sys.stderr)
                raise SystemExit(128 + (signum or signal.SIGINT))

    def end_epoch(self, seconds: float) -> None:
        """The family's end-of-epoch hook; then (the writer) the epoch's figures, grids and checkpoint."""
        sums, model, epoch = self.world.total(self.sums), self.model, self.epoch + 1
        model.after_epoch(batches_of(self.train_u8[:PRIOR_IMAGES], 500))
        self.epoch, self.step, self.sums = epoch, 0, {}
        if not self.world.writer:
            return
        row = {"epoch": epoch, **{f"train_{k}": v / sums[SEEN + k] for k, v in sums.items() if not k.startswith(SEEN)}}
        row.update({f"test_{k}": v for k, v in evaluate_losses(model, self.test_u8, self.test_y, 500, self.binarize, self.seed).items()})
        row.update(epoch_pictures(model, self.meta, self.run_dir, epoch, self.preview_images, self.watch))
        row["seconds"] = round(seconds, 3)
        self.rows.append(row)
        runs.write_metrics(self.run_dir, self.rows)
        self.save()
        train_status = run_summary.loss_status({k[6:]: v for k, v in row.items() if k.startswith("train_")}, model.shown_losses)
        test_status = run_summary.loss_status({k[5:]: v for k, v in row.items() if k.startswith("test_")}, model.shown_losses)
        quick = f"  fid_1k {row['fid_1k']:.2f}" if "fid_1k" in row else ""
        self.reporter.line(f"epoch {epoch}/{self.epochs}  train {train_status}  test {test_status}{quick}  {seconds:.1f}s")


def finish(loop: Loop) -> Path:
    """After the last epoch: the export (its parity checked), the last grids again from the exported
    graphs (pixel for pixel what `gentool sample RUN` draws), results.png and the closing summary."""
    from gentool.export import export
    from gentool.runtime.artifact import Artifact

    model, meta, run_dir = loop.model, loop.meta, loop.run_dir
    model.eval()
    graphs = TorchGraphs(model, meta)
    if loop.export:
        differences = export(model, meta, run_dir)
        worst = max(differences.values(), default=0.0)
        print(f"exported {', '.join(differences)} to {run_dir} (max |torch - onnxruntime| {worst:.1e})", file=sys.stderr)
        graphs = Artifact(str(run_dir), "cpu")
        write_grids(model, graphs, run_dir, loop.epochs, loop.preview_images, loop.seed)
    curves = run_summary.write_curves(run_dir)
    print(run_summary.closing(run_dir, meta, loop.rows, graphs, curves, model.shown_losses, loop.export), file=sys.stderr)
    return run_dir
