"""Per-example random streams, so that a training step's noise does not depend on how its batch is
split across processes.

Inside `keyed(keys)` (the loop: one int64 key per example of the local batch, a function of the
seed, the epoch and the example's position in the global batch) `rand_like` and `randn_like` give
every example its own counter-based stream: splitmix64 (Steele et al. 2014) over (key, draw number,
element index), in int64 tensor arithmetic, so the same on CPU and CUDA and in whichever process
holds the example. A run split over two processes by `torchrun` then draws exactly the noise of the
single-process run. Outside `keyed` they are torch's own `rand_like`/`randn_like` (global RNG):
evaluation and previews are unchanged. A tensor whose rows are k copies of the batch (k * N rows)
gives each copy its own stream.
"""

from __future__ import annotations

import contextlib
import math

import torch

_GOLDEN = 0x9E3779B97F4A7C15 - 2**64  # splitmix64's increment and multipliers, as signed int64
_M1 = 0xBF58476D1CE4E5B9 - 2**64
_M2 = 0x94D049BB133111EB - 2**64
_state: dict = {"keys": None, "draws": 0}


def _shr(z: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's >> is arithmetic)."""
    return (z >> k) & ((1 << (64 - k)) - 1)


def _mix(z: torch.Tensor) -> torch.Tensor:
    z = (z ^ _shr(z, 30)) * _M1
    z = (z ^ _shr(z, 27)) * _M2
    return z ^ _shr(z, 31)


def example_keys(seed: int, epoch: int, positions: torch.Tensor) -> torch.Tensor:
    """One key per example: its position in the epoch's global batch order, under (seed, epoch)."""
    return _mix(_mix(torch.tensor(seed * 1_000_003 + epoch, dtype=torch.int64)) + positions.to(torch.int64) * _GOLDEN)


@contextlib.contextmanager
def keyed(keys: torch.Tensor):
    _state.update(keys=keys, draws=0)
    try:
        yield
    finally:
        _state.update(keys=None, draws=0)


def _uniform(t: torch.Tensor) -> torch.Tensor:
    """24-bit uniforms in [0, 1) shaped like t (float32 holds them exactly), one stream per row."""
    keys = _state["keys"]
    rows = t.shape[0]
    if rows % len(keys):
        raise ValueError(f"a keyed draw needs a multiple of {len(keys)} rows, got {rows}")
    _state["draws"] += 1
    row = torch.arange(rows, device=keys.device)
    stream = _mix(keys[row % len(keys)] + (_state["draws"] * 4099 + row // len(keys)) * _GOLDEN)
    elements = torch.arange(1, t[0].numel() + 1, device=keys.device, dtype=torch.int64)
    bits = _shr(_mix(stream[:, None] + elements[None] * _GOLDEN), 40)
    return (bits.to(torch.float32) * 2.0**-24).view(t.shape).to(t.dtype)


def rand_like(t: torch.Tensor) -> torch.Tensor:
    return torch.rand_like(t) if _state["keys"] is None else _uniform(t)


def randn_like(t: torch.Tensor) -> torch.Tensor:
    """Standard normals (Box-Muller on two keyed uniforms)."""
    if _state["keys"] is None:
        return torch.randn_like(t)
    radius = torch.sqrt(-2 * torch.log1p(-_uniform(t)))  # 1 - u is in (0, 1]
    return radius * torch.cos(2 * math.pi * _uniform(t))
