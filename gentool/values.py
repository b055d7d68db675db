"""Option values several commands read, each kind checked by one rule everywhere, in training and
inference alike: seeds, and classes given by name or index. Torch-free."""

from __future__ import annotations

from gentool.errors import UsageError

MAX_SEED = 2**63 - 1  # numpy takes any non-negative seed; torch.manual_seed an int64


def seed(option: str, value: int) -> int:
    if not 0 <= value <= MAX_SEED:
        raise UsageError(f"{option} must be a seed in 0..2^63-1, got {value}")
    return value


def seeds(option: str, text: str, count: int | None = None) -> list[int]:
    """'A,B,...' -> the seeds, each checked; `count`: exactly that many."""
    try:
        found = [int(s) for s in text.split(",")]
    except ValueError:
        found = []
    if not found or (count is not None and len(found) != count):
        raise UsageError(f"{option} takes {count or 'one or more'} seeds 'A,B{',...' * (count is None)}', got '{text}'")
    return [seed(option, s) for s in found]


def class_index(option: str, names: list[str], text: str, owner: str = "this model") -> int:
    """A class given by its name, else by its index in ASCII decimal digits."""
    if text in names:
        return names.index(text)
    if text.isascii() and text.isdigit() and int(text) < len(names):
        return int(text)
    raise UsageError(f"{option}: {owner} has no class '{text}' (use 0..{len(names) - 1} or a name: {', '.join(names)})")
