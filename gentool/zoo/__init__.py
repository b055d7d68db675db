"""The model zoo: a registry of families by CLI name, its torch-free catalog, and hyperparameter parsing.

Families register themselves with `@register`; `families()` imports the family modules listed in
`_MODULES` so the registry is filled only when a torch-side command needs it. `catalog.json` holds
what `gentool models` shows (each family's summary, options and training defaults) so that it runs
without torch; `python -m gentool.zoo` writes it anew, and a test checks it against the families.
"""

from __future__ import annotations

import functools
import importlib
import json
import math
from pathlib import Path

from gentool.errors import UsageError, check_count

_MODULES = ["gentool.zoo.ae", "gentool.zoo.vae", "gentool.zoo.sparse_ae", "gentool.zoo.cae", "gentool.zoo.dae", "gentool.zoo.sr",
            "gentool.zoo.classifier", "gentool.zoo.gan", "gentool.zoo.wgan_gp", "gentool.zoo.ddpm"]
_REGISTRY: dict[str, type] = {}


def register(cls):
    _REGISTRY[cls.name] = cls
    return cls


def families() -> dict[str, type]:
    for module in _MODULES:
        importlib.import_module(module)
    return dict(_REGISTRY)


def get(name: str):
    found = families()
    if name not in found:
        raise UsageError(f"unknown model '{name}': choose one of {', '.join(sorted(found))}")
    return found[name]


CATALOG = Path(__file__).with_name("catalog.json")


def entry(cls) -> dict:
    """A family as `gentool models --json` shows it: summary, options (type, default, choices),
    training defaults and what `evaluate` reports (`metrics`, or the quality of `samples`)."""
    def kind(default) -> str:
        return "flag" if isinstance(default, bool) else "float" if default is None else type(default).__name__

    options = {key.replace("_", "-"): {"type": kind(default), "default": default,
                                        **({"choices": list(cls.choices[key])} if key in cls.choices else {})}
               for key, default in cls.defaults.items()}
    evaluation_options = {o.name: {"type": o.type.__name__, "default": o.default, "help": o.help} for o in cls.evaluation_options}
    return {"summary": cls.__doc__.strip().splitlines()[0], "options": options, "train_defaults": dict(cls.train_defaults),
            "evaluation": cls.evaluation, "evaluation_options": evaluation_options}


def write_catalog() -> None:
    CATALOG.write_text(json.dumps({name: entry(cls) for name, cls in sorted(families().items())}, indent=1) + "\n")
    catalog.cache_clear()


@functools.cache
def catalog() -> dict[str, dict]:
    """Every family's `entry`, read once from `catalog.json` (torch-free)."""
    return json.loads(CATALOG.read_text())


def catalog_entry(name: str) -> dict:
    """One family's `entry` from the catalog; an unknown name is a usage error."""
    known = catalog()
    if name not in known:
        raise UsageError(f"unknown model '{name}': choose one of {', '.join(known)}")
    return known[name]


def evaluation_options() -> dict:
    """Every family's `evaluate` options by name, from the catalog (torch-free): (Option, the
    families that read it); the help of one several families read says what it does for each."""
    from gentool.runtime.declaration import Option

    declared: dict[str, dict[str, dict]] = {}
    for family, described in catalog().items():
        for name, option in described["evaluation_options"].items():
            declared.setdefault(name, {})[family] = option
    found = {}
    for name, by_family in declared.items():
        first = next(iter(by_family.values()))
        helps = [first["help"]] if len(by_family) == 1 else [f"{family}: {o['help']}" for family, o in by_family.items()]
        option = Option(name, {"int": int, "float": float, "bool": bool}[first["type"]], first["default"], " ".join(helps))
        found[name] = (option, list(by_family))
    return found


def describe(name: str) -> str:
    """A family's summary, its options with their types or choices and defaults, and its training defaults."""
    family = catalog_entry(name)
    lines = [f"{name}: {family['summary']}", "  options (each stored in the checkpoint):"]
    for key, option in family["options"].items():
        kind = "|".join(map(str, option["choices"])) if "choices" in option else option["type"].upper()
        default = "auto" if option["default"] is None else option["default"]
        lines.append(f"    --{key:<22} {kind:<26} default {default}")
    return "\n".join(lines + ["  training defaults: " + "  ".join(f"{k}={v}" for k, v in family["train_defaults"].items())])


def _convert(name: str, text: str, default):
    """The option's value as the type of its default; a None default (a number the family picks from
    its other options) takes a float."""
    kind = float if default is None else type(default)
    try:
        if kind is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        value = kind(text)
    except ValueError:
        raise UsageError(f"--{name.replace('_', '-')} expects a {kind.__name__}, got '{text}'") from None
    if kind is float and not math.isfinite(value):
        raise UsageError(f"--{name.replace('_', '-')} must be a finite number, got '{text}'")
    return value


# Every integer option of a family is a size or a count: at least 1 (or the family's `least` for
# it, e.g. a depth of 0) and at most this, so that a typo never asks for a network of 10^12 units.
MAX_SIZE = 2**16


def parse_hparams(cls, args: list[str]) -> dict:
    """Turn `--beta 4 --likelihood=gaussian --no-blind` into a dict checked against `cls.defaults`
    (only the options given: the model merges in its defaults when it is built)."""
    out: dict = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            raise UsageError(f"unexpected argument '{arg}'")
        key, _, value = arg[2:].partition("=")
        negated = key.startswith("no-") and key[3:].replace("-", "_") in cls.defaults
        name = (key[3:] if negated else key).replace("-", "_")
        if name not in cls.defaults:
            known = ", ".join("--" + k.replace("_", "-") for k in cls.defaults)
            raise UsageError(f"'{cls.name}' has no option --{key} (its options: {known})")
        default = cls.defaults[name]
        if isinstance(default, bool) and not value:
            out[name] = not negated
        else:
            if not value:
                i += 1
                if i >= len(args):
                    raise UsageError(f"--{key} needs a value")
                value = args[i]
            out[name] = _convert(name, value, default)
        if isinstance(default, int) and not isinstance(default, bool):
            check_count(f"--{key}", out[name], MAX_SIZE, cls.least.get(name, 1))
        allowed = cls.choices.get(name)
        if allowed and out[name] not in allowed:
            raise UsageError(f"--{key} must be one of {', '.join(map(str, allowed))}, got '{out[name]}'")
        i += 1
    return out
