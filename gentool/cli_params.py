"""The parts the `gentool` verbs share: option types, the sampler modules' own options, the few
argument parsers, opening an artifact for a verb and writing the images it made. Torch-free."""

from __future__ import annotations

import functools
import inspect
from enum import Enum
from typing import Annotated, Optional

import typer

from gentool import console, values
from gentool.errors import UsageError, check_count

class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Side(str, Enum):
    top = "top"
    bottom = "bottom"
    left = "left"
    right = "right"


DeviceOpt = Annotated[Device, typer.Option(help="auto picks CUDA when it really works; cuda without it is an error.")]
SeedOpt = Annotated[int, typer.Option(callback=lambda value: values.seed("--seed", value), metavar="0..2^63-1",
                                       help="Seed for every random draw: same seed, same output.")]
OutOpt = Annotated[Optional[str], typer.Option("-o", "--out", help="Output file (.png, .jpg); a folder or a path ending in '/': one PNG per image; '-' or omitted: stdout (not a terminal).")]
ArtifactArg = Annotated[str, typer.Argument(help="A run directory, an export directory, an .onnx file, or a model name (its newest run).")]


# Bounds on what one command draws, so that a typo costs what was meant (a 10^9-image grid would not)
MAX_IMAGES, MAX_STEPS, MAX_SIDE = 100_000, 1_000, 100


LabelOpt = Annotated[Optional[str], typer.Option(help="Conditional models: the class to draw (a name or index; default: the classes in turn).")]


def labels(art, label: str | None, n: int):
    """`n` copies of the class `label` names, for a conditional model; None when no label is given."""
    import numpy as np

    from gentool.runtime import latent

    return None if label is None else np.full(n, latent.label_index(art, label))


class CodeFormat(str, Enum):
    auto = "auto"
    json = "json"
    csv = "csv"
    npy = "npy"


def show_version(asked: bool) -> None:
    if asked:
        from gentool import __version__

        print(f"gentool {__version__}")
        raise typer.Exit()


def family_names(incomplete: str) -> list[str]:
    """Shell completion of a model family's name."""
    from gentool import zoo

    return [name for name in zoo.catalog() if name.startswith(incomplete)]


def needs_torch(verb: str) -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        raise UsageError(f"'gentool {verb}' needs PyTorch: pip install 'gentool[train]'") from None


def train_help(ctx, model: str | None) -> None:
    """`gentool train [MODEL] --help`: the command's help, then the family's own options."""
    text = ctx.get_help()  # Typer's Rich help prints itself and returns ''
    if text:
        print(text)
    if model:
        from gentool import zoo

        print(zoo.describe(model))
    raise typer.Exit()


def open_artifact(spec: str, device: Device, verb: str, options: dict | None = None):
    """The artifact and the function that computes `verb` for its roles, with the verb's own
    `options` (else a usage error)."""
    from gentool.runtime import verbs
    from gentool.runtime.artifact import Artifact

    art = Artifact(spec, device.value)
    return art, verbs.find(art, verb, options=options)


class DeclaredOptions:
    """A verb's command with declared options added to its signature (typed, with their help and
    whose they are, in their own help panel) and gathered into one `options` dict of those given
    (a flag only when set). `declared()` gives {name: (Option, whose)}. Typer reads the signature
    when it builds the command line, so an option registered before then is there too."""

    def __init__(self, command, declared, panel: str):
        functools.update_wrapper(self, command, assigned=("__module__", "__name__", "__qualname__", "__doc__"), updated=())
        self.command, self.declared, self.panel = command, declared, panel

    def _parameters(self):
        declared = self.declared()
        signature = inspect.signature(self.command, eval_str=True)
        kept = [p for p in signature.parameters.values() if p.name != "options"]
        extra = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
            Optional[option.type], typer.Option(option.flag, help=option_help(option, whose), rich_help_panel=self.panel)])
            for name, (option, whose) in declared.items()]
        return signature, kept + extra, declared

    @property
    def __signature__(self):
        signature, parameters, _ = self._parameters()
        return signature.replace(parameters=parameters)

    @property
    def __annotations__(self):
        return {p.name: p.annotation for p in self._parameters()[1]}

    def __call__(self, **given):
        declared = self._parameters()[2]
        options = {name: value for name in declared if (value := given.pop(name, None)) is not None and value is not False}
        return self.command(**given, options=options)


def option_help(option, whose: str) -> str:
    default = "" if option.default is None or option.default is False else f"; default {option.default}"
    return f"{option.help} ({whose}{default})"


def sampler_options(verb: str):
    """The options the runtime's sampler modules declare for `verb`."""
    def declared():
        from gentool.runtime import verbs

        return {name: (option, "models with " + " or ".join(roles)) for name, (option, roles) in verbs.options(verb).items()}

    return lambda command: DeclaredOptions(command, declared, "Sampler options")


def model_options(command):
    """The `evaluate` options the model families declare."""
    def declared():
        from gentool import zoo

        return {name: (option, " or ".join(families) + " models") for name, (option, families) in zoo.evaluation_options().items()}

    return DeclaredOptions(command, declared, "Model options")


def provenance(art, **extra) -> dict[str, str]:
    """What made an image, for its PNG tEXt chunks: `Software`, and `gentool`, a JSON object with the
    version, the verb, its arguments (all but where the output goes and the device; the grid's
    layout too), the artifact as the path it resolved to (a bare model name's run, the bundled
    model), the origin of its graphs (a hash of the weights, epoch and step) and `extra` (which
    image of several a file holds): enough to draw the same file again."""
    from typer._click.globals import get_current_context  # Typer 0.26+ bundles click, with no public accessor

    from gentool import images

    ctx = get_current_context()
    arguments = {k: v.value if isinstance(v, Enum) else v for k, v in ctx.params.items() if v is not None and k not in ("out", "device")}
    arguments[next((k for k in ("artifact", "model") if k in ctx.params), "artifact")] = str(art.path.absolute())
    return images.made_by(ctx.info_name, **arguments, origin=art.meta.get("origin"), **extra)


def write_images(art, image_batch, out: str | None, nrow: int | None = None) -> None:
    """One image as it is, several as a grid (`nrow` per row, at most as many as there are), with
    its provenance; an `out` that is a folder (or ends in '/') gets one PNG per image instead."""
    from gentool import images

    if nrow is not None:
        check_count("--nrow", nrow)
    if images.is_folder(out):
        paths = images.write_folder(image_batch, out, lambda i: provenance(art, image=i))
        console.err(f"wrote {len(paths)} image{'s' * (len(paths) > 1)} to {out}: "
             + (paths[0].name if len(paths) == 1 else f"{paths[0].name} to {paths[-1].name}"))
        return
    many = len(image_batch) > 1
    image = images.make_grid(image_batch, nrow=min(nrow, len(image_batch)) if nrow else None) if many else image_batch[0]
    images.write_image(image, out, provenance(art))


def int_pair(option: str, text: str) -> tuple[int, int]:
    try:
        a, b = (int(s) for s in text.split(","))
    except ValueError:
        raise UsageError(f"{option} takes two integers 'A,B', got '{text}'") from None
    return a, b


