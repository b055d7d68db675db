"""The runtime's sampler modules, and which of them provides a verb for a model.

Each module under `runtime/` that generates or transforms in its own way declares itself in a
`SAMPLER` (`gentool.runtime.declaration`): its roles, and its verbs with the roles they need and
their own options. A new way of generating (diffusion, autoregressive) is a new module named in
`MODULES` (or, from a test or a plug-in, given to `register`): graph checks, the CLI's flags and
the previews read it from here, and nothing else changes.
"""

from __future__ import annotations

import functools
import importlib

from gentool.errors import UsageError
from gentool.runtime.declaration import Option, Role, Sampler, Verb

MODULES = ("gentool.runtime.latent", "gentool.runtime.image_to_image", "gentool.runtime.diffusion", "gentool.runtime.quality")
_REGISTERED: list[Sampler] = []


def register(sampler: Sampler) -> Sampler:
    """Add a sampler declared outside `MODULES`."""
    if sampler not in _REGISTERED:
        _REGISTERED.append(sampler)
    return sampler


def samplers() -> list[Sampler]:
    return [importlib.import_module(name).SAMPLER for name in MODULES] + _REGISTERED


def role(name: str, source: str) -> Role:
    """The declaration of a role; a role no sampler module declares is refused."""
    for sampler in samplers():
        if name in sampler.roles:
            return sampler.roles[name]
    known = sorted(r for s in samplers() for r in s.roles)
    raise UsageError(f"'{source}' holds a '{name}' graph, a role this gentool does not run (it runs {', '.join(known)})")


def _a(role: str) -> str:
    return ("an " if role[0] in "aeiou" else "a ") + role


def _offers(verb: str) -> list[tuple[Sampler, Verb]]:
    return [(s, s.verbs[verb]) for s in samplers() if verb in s.verbs]


def _provides(graphs, declared: Verb) -> bool:
    return any(set(roles) <= set(graphs.roles) for roles in declared.roles) and all(graphs.meta.get(k) is not None for k in declared.needs)


def declaration(graphs, verb: str, asked: str | None = None) -> Verb:
    """The declaration of `verb` for these graphs; a usage error naming what is missing (and
    `asked`, what the user asked for, when `verb` is only a part of it)."""
    offers = _offers(verb)
    for _, declared in offers:
        if _provides(graphs, declared):
            return declared
    for _, declared in offers:  # the roles are there, a metadata value is not
        if any(set(roles) <= set(graphs.roles) for roles in declared.roles):
            graphs.need(next(k for k in declared.needs if graphs.meta.get(k) is None), asked or verb)
    needs = " or ".join(" and ".join(_a(r) for r in roles) + " graph"
                        for _, declared in offers for roles in declared.roles)
    raise UsageError(f"'{asked or verb}' needs {needs}; this {graphs.model} artifact has {', '.join(graphs.roles)}")


def find(graphs, verb: str, asked: str | None = None, options: dict | None = None):
    """The function computing `verb` for these graphs, with the verb's own options bound: those in
    `options`, the declared defaults for the rest. An option this sampler does not take is a usage
    error naming the ones it does."""
    declared = declaration(graphs, verb, asked)
    own = {o.name: o for o in declared.options}
    foreign = [name for name in options or {} if name not in own]
    if foreign:
        takes = f"it takes {', '.join(o.flag for o in declared.options)}" if own else "it takes no options of its own"
        raise UsageError(f"{', '.join('--' + n.replace('_', '-') for n in foreign)}: not an option of '{asked or verb}' "
                         f"for this {graphs.model} artifact ({takes})")
    for name, value in (options or {}).items():
        if value is not None:
            own[name].check(value)
    return functools.partial(declared.run, **{name: (options or {}).get(name, o.default) for name, o in own.items()})


def supports(graphs, verb: str) -> bool:
    return any(_provides(graphs, declared) for _, declared in _offers(verb))


def cheapest(graphs, verb: str) -> dict:
    """The cheapest settings of the verb's options for these graphs (what previews use)."""
    return dict(declaration(graphs, verb).cheapest)


def options(verb: str) -> dict[str, tuple[Option, list[str]]]:
    """Every option some sampler declares for `verb`, with the roles that take it ('a decoder');
    one name means one option (a clash between two samplers is an error of theirs)."""
    found: dict[str, tuple[Option, list[str]]] = {}
    for sampler, declared in _offers(verb):
        for option in declared.options:
            if option.name in found and (found[option.name][0].type, found[option.name][0].default) != (option.type, option.default):
                raise ValueError(f"samplers declare {option.flag} of '{verb}' with different types or defaults")
            found.setdefault(option.name, (option, []))[1].extend(" and ".join(_a(r) for r in roles) for roles in declared.roles)
    return found
