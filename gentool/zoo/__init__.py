"""The model zoo: a registry of families by CLI name, and hyperparameter parsing.

Families register themselves with `@register`; `families()` imports the family modules listed in
`_MODULES` so the registry is filled only when a torch-side command needs it.
"""

from __future__ import annotations

import importlib

from gentool.errors import UsageError

_MODULES = ["gentool.zoo.ae", "gentool.zoo.vae", "gentool.zoo.sparse_ae", "gentool.zoo.cae", "gentool.zoo.dae", "gentool.zoo.sr",
            "gentool.zoo.classifier", "gentool.zoo.gan", "gentool.zoo.wgan_gp"]
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


def describe(name: str) -> str:
    """A family's options with their types or choices and defaults, and its training defaults."""
    cls = get(name)
    lines = [f"Options of '{name}' (each stored in the checkpoint):"]
    for key, default in cls.defaults.items():
        choices = cls.choices.get(key)
        kind = "flag" if isinstance(default, bool) else "|".join(map(str, choices)) if choices else type(default or 0.0).__name__.upper()
        lines.append(f"  --{key.replace('_', '-'):<22} {kind:<26} default {'auto' if default is None else default}")
    return "\n".join(lines + ["Training defaults: " + "  ".join(f"{k}={v}" for k, v in cls.train_defaults.items())])


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
        return kind(text)
    except ValueError:
        raise UsageError(f"--{name.replace('_', '-')} expects a {kind.__name__}, got '{text}'") from None


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
        allowed = cls.choices.get(name)
        if allowed and out[name] not in allowed:
            raise UsageError(f"--{key} must be one of {', '.join(map(str, allowed))}, got '{out[name]}'")
        i += 1
    return out
