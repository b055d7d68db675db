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
        """Each network in DistributedDataParallel. Buffers are not broadcast at every forward: they
        change only in `after_epoch`, which every process runs on the same data (and a GAN's two
        forwards before one backward would otherwise clobber BatchNorm statistics)."""
        if self.size == 1:
            return nets
        import inspect

        from torch.nn.parallel import DistributedDataParallel as DDP

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
    return World(rank, size), chosen
