"""Which sampler module provides a verb for a model: found from the graph roles it has.

Each module under `runtime/` that generates or transforms in its own way lists its verbs and the
roles each needs (`VERBS`); a new way of generating (diffusion, autoregressive) is a new module in
`SAMPLERS`, and the CLI needs no change to route its verbs.
"""

from __future__ import annotations

from gentool.errors import UsageError
from gentool.runtime import image_to_image, latent
from gentool.runtime.artifact import Graphs

SAMPLERS = (latent, image_to_image)


def _options(verb: str):
    return [(module, roles) for module in SAMPLERS for roles in module.VERBS.get(verb, ())]


def find(graphs: Graphs, verb: str, asked: str | None = None):
    """The function computing `verb` for these graphs; a usage error naming what is missing (and
    `asked`, what the user asked for, when `verb` is only a part of it)."""
    for module, roles in _options(verb):
        if set(roles) <= set(graphs.roles):
            return getattr(module, verb)
    needs = " or ".join(" and ".join(("an " if r[0] in "aeiou" else "a ") + r for r in roles) + " graph" for _, roles in _options(verb))
    raise UsageError(f"'{asked or verb}' needs {needs}; this {graphs.model} artifact has {', '.join(graphs.roles)}")


def supports(graphs: Graphs, verb: str) -> bool:
    return any(set(roles) <= set(graphs.roles) for _, roles in _options(verb))
