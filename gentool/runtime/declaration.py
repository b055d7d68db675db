"""How a runtime module describes itself: the roles it runs and the verbs it provides.

A `Sampler` is one way of generating or transforming (latent codes, image to image, diffusion, ...).
Its `roles` say what each graph must take and give, in the terms of the graph's own metadata, so
`graphcheck` can check any graph against the declaration of its role; its `verbs` name the roles
each verb needs and the verb's own options, from which the CLI builds its flags. A new way of
generating is one module with one `Sampler`, listed in `gentool.runtime.verbs`: no other edit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

# onnxruntime's type names for the dtypes a declaration may ask for
ONNX_TYPES = {"float": "tensor(float)", "int64": "tensor(int64)"}


@dataclass(frozen=True)
class Tensor:
    """One input or output of a graph. `shape` names its axes, space-separated: `N` is the batch;
    `C`, `H`, `W` are the metadata's image shape; a digit is that size; a metadata key (e.g.
    `latent_dim`) is its value; any other name (`h`, `D`) is free. An output named `*` is the one
    output of its role, whatever its name."""

    name: str
    shape: str
    dtype: str = "float"
    optional: bool = False

    @property
    def rank(self) -> int:
        return len(self.shape.split())

    def sizes(self, meta: dict) -> list[int | None]:
        """Each axis' size as the metadata fixes it (None: any)."""
        image = dict(zip("CHW", meta.get("image_shape") or ()))
        out = []
        for axis in self.shape.split():
            value = int(axis) if axis.isdigit() else image.get(axis) if axis in "CHW" else meta.get(axis)
            out.append(value if isinstance(value, int) and axis != "N" else None)
        return out

    def form(self, meta: dict) -> str:
        """`(N, 1, 28, 28)`: the shape with what the metadata fixes filled in."""
        return "(" + ", ".join(str(s) if s is not None else a for s, a in zip(self.sizes(meta), self.shape.split())) + ")"


@dataclass(frozen=True)
class Role:
    """A kind of graph: its inputs, and the forms its outputs may take (any one of them)."""

    inputs: tuple[Tensor, ...]
    outputs: tuple[tuple[Tensor, ...], ...]


@dataclass(frozen=True)
class Option:
    """A verb's own option: `--name` on the command line (underscores as dashes), passed to the
    verb's function as the keyword `name`."""

    name: str
    type: type
    default: object
    help: str
    valid: Callable | None = None  # value -> whether it is allowed, when not every value of `type` is
    expects: str = ""  # what `valid` allows, for the error: "--flag must be {expects}"

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def check(self, value) -> None:
        if self.valid is not None and not self.valid(value):
            from gentool.errors import UsageError

            raise UsageError(f"{self.flag} must be {self.expects}, got {value}")


@dataclass(frozen=True)
class Verb:
    """What a sampler offers for one verb: the function, the sets of roles any one of which
    provides it, the metadata it cannot do without, its own options, and the cheapest settings of
    those options (what training previews and the per-epoch quick FID use)."""

    run: Callable
    roles: tuple[tuple[str, ...], ...]
    needs: tuple[str, ...] = ()
    options: tuple[Option, ...] = ()
    cheapest: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Sampler:
    """One runtime module's declaration: its roles, the metadata keys it reads with a check of each
    (value, whole metadata -> whether it is valid), and its verbs."""

    name: str
    roles: dict[str, Role]
    verbs: dict[str, Verb] = field(default_factory=dict)
    metadata: dict[str, Callable[[object, dict], bool]] = field(default_factory=dict)


def positive_int(value, most: int = 2**20) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= most
