"""Training under `torchrun`: DistributedDataParallel with PyTorch's own launcher and process groups.

`torchrun --nproc_per_node N -m gentool train ...` (and `--nnodes`) starts N processes with RANK,
LOCAL_RANK and WORLD_SIZE in their environment; each joins the process group (gloo on CPU, nccl on
CUDA, one GPU per local rank). Every process holds the whole dataset and the same permutation, and
takes its contiguous share of each global batch (`--batch-size` is the global batch). Losses are
scaled by the share's size, so the averaged gradients are those of the whole batch even when the
last batch does not split evenly. Training noise is keyed by example (`gentool.noise`), so no seed
differs by rank and a run on N processes follows the single-process run. Rank 0 alone writes the
run directory. Without torchrun, `World()` is one process and every method is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from gentool.devices import torch_device
from gentool.errors import UsageError


@dataclass
class World:
    rank: int = 0
    size: int = 1

    @property
    def writer(self) -> bool:
        return self.rank == 0

    def share(self, rows: torch.Tensor) -> torch.Tensor:
        """This process's contiguous part of a global batch's rows."""
        return rows if self.size == 1 else rows.tensor_split(self.size)[self.rank]

    def wrap(self, nets: dict, device: torch.device) -> dict:
        """Each network in DistributedDataParallel, its BatchNorms taking the statistics of the
        global batch (`WorldBatchNorm`). Buffers are not broadcast at every forward: every process
        then computes the same running statistics, and `after_epoch` runs on the same data in every
        process (a two-player model's two forwards before one backward would otherwise clobber them)."""
        if self.size == 1:
            return nets
        import inspect

        from torch.nn.parallel import DistributedDataParallel as DDP

        group = torch.distributed.new_group()  # its own, so its collectives never interleave with DDP's
        for net in nets.values():
            world_batch_norms(net, group)

        # torch 2.13 renamed the option (the old name warns); both leave the initial sync in place
        quiet = {"forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(DDP).parameters else "broadcast_buffers": False}
        ids = [device.index] if device.type == "cuda" else None
        return {name: DDP(net, device_ids=ids, **quiet) for name, net in nets.items()}

    def total(self, values: dict[str, float]) -> dict[str, float]:
        """Each value summed over the processes (all of them must call this)."""
        if self.size == 1 or not values:
            return values
        t = torch.tensor(list(values.values()), dtype=torch.float64)
        torch.distributed.all_reduce(t)
        return dict(zip(values, t.tolist()))

    def any(self, *flags: bool) -> list[bool]:
        """Each flag, true if it is true in any process."""
        return [v > 0 for v in self.total({str(i): float(f) for i, f in enumerate(flags)}).values()]

    def close(self) -> None:
        if self.size > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def join(device: str) -> tuple[World, torch.device]:
    """The world this process belongs to and the device it trains on."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World(), torch_device(device)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    chosen = torch_device(device)
    if chosen.type == "cuda":
        if local >= torch.cuda.device_count():
            raise UsageError(f"local rank {local} has no GPU: this node has {torch.cuda.device_count()}")
        chosen = torch.device("cuda", local)
        torch.cuda.set_device(chosen)
    torch.distributed.init_process_group("nccl" if chosen.type == "cuda" else "gloo")
    _end_on_stop_signals()
    return World(rank, size), chosen


STOP_GRACE = 5.0  # seconds a process of a world has, after Ctrl-C or SIGTERM, to stop by itself


def _end_on_stop_signals() -> None:
    """Make Ctrl-C and SIGTERM end this process within STOP_GRACE, even while it waits in a
    collective for a process that is gone (a peer that failed before it joined): Python runs its
    signal handlers only between bytecodes, never inside gloo's wait, so a thread reads the signal
    numbers the interpreter writes to its wakeup fd and ends the process if it has not stopped by
    then. A process that is not stuck stops at its next step as it would alone."""
    import signal
    import threading
    import time

    read, write = os.pipe()
    os.set_blocking(write, False)
    signal.set_wakeup_fd(write, warn_on_full_buffer=False)

    def watch():
        while True:
            received = os.read(read, 1)
            if received and received[0] in (signal.SIGINT, signal.SIGTERM):
                time.sleep(STOP_GRACE)
                os._exit(128 + received[0])

    threading.Thread(target=watch, name="stop-watch", daemon=True).start()


class WorldBatchNorm(nn.modules.batchnorm._BatchNorm):
    """A BatchNorm that, while training, normalises by the statistics of the global batch: the
    per-channel sums and sums of squares (float64) are all-reduced over the processes, with their
    gradients, so a BatchNorm network trains on N processes as on one. (torch's SyncBatchNorm does
    this on GPUs only.) It takes over a BatchNorm's parameters and buffers: same state-dict, and
    in eval mode the plain BatchNorm it was."""

    def __init__(self, norm: nn.modules.batchnorm._BatchNorm, group):
        super().__init__(norm.num_features, norm.eps, norm.momentum, norm.affine, norm.track_running_stats)
        self.weight, self.bias = norm.weight, norm.bias
        self.running_mean, self.running_var, self.num_batches_tracked = norm.running_mean, norm.running_var, norm.num_batches_tracked
        self.group = group

    def _check_input_dim(self, x):
        pass

    def forward(self, x):
        if not self.training:
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        c, dims = x.shape[1], [0, *range(2, x.dim())]
        wide = x.double()
        count = torch.tensor([x.numel() // c], dtype=torch.float64, device=x.device)
        stats = all_reduce(torch.cat([wide.sum(dims), (wide * wide).sum(dims), count]), group=self.group)
        total = stats[-1]
        mean = stats[:c] / total
        var = stats[c : 2 * c] / total - mean**2
        with torch.no_grad():
            self.num_batches_tracked += 1
            self.running_mean.lerp_(mean.to(x.dtype), self.momentum)
            self.running_var.lerp_((var * total / (total - 1)).to(x.dtype), self.momentum)
        shape = [1, c] + [1] * (x.dim() - 2)
        scale = torch.rsqrt(var + self.eps).to(x.dtype)
        return (x - mean.to(x.dtype).view(shape)) * (scale * self.weight).view(shape) + self.bias.view(shape)


def world_batch_norms(net: nn.Module, group) -> None:
    """Replace, in place, every BatchNorm inside `net` by a `WorldBatchNorm` over `group`."""
    for name, child in net.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(net, name, WorldBatchNorm(child, group))
        else:
            world_batch_norms(child, group)
