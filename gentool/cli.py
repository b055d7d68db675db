"""The `gentool` command line: one thin function per verb.

Importing this module never imports torch: training-side verbs import it inside the command, and
the inference verbs run on onnxruntime and numpy alone. Errors are one line on stderr; exit code 2
for usage and input errors, 1 for failures while running (`--debug` shows the traceback).
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import signal
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from gentool.errors import GentoolError, UsageError

app = typer.Typer(
    name="gentool",
    help="Train, evaluate, export and run autoencoders and generative models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
_state = {"debug": False}


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


DeviceOpt = Annotated[Device, typer.Option(help="auto picks CUDA when it really works; cuda without it is an error.")]
SeedOpt = Annotated[int, typer.Option(help="Seed for every random draw: same seed, same output.")]
OutOpt = Annotated[Optional[str], typer.Option("-o", "--out", help="Output file (.png, .jpg); a folder or a path ending in '/': one PNG per image; '-' or omitted: stdout (not a terminal).")]
ArtifactArg = Annotated[str, typer.Argument(help="A run directory, an export directory, an .onnx file, or a model name (its newest run).")]


def _show_version(asked: bool) -> None:
    if asked:
        from gentool import __version__

        print(f"gentool {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    debug: Annotated[bool, typer.Option(help="Show tracebacks.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_show_version, is_eager=True, help="Show the version and exit.")] = False,
) -> None:
    _state["debug"] = debug


def _family_names(incomplete: str) -> list[str]:
    """Shell completion of a model family's name."""
    from gentool import zoo

    return [name for name in zoo.catalog() if name.startswith(incomplete)]


def _needs_torch(verb: str) -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        raise UsageError(f"'gentool {verb}' needs PyTorch: pip install 'gentool[train]'") from None


def _err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _stdout_console():
    """A Rich console on stdout; off a terminal its tables take the width they need (no wrapping)."""
    from rich.console import Console

    return Console(file=sys.stdout, width=None if sys.stdout.isatty() else 1000)


def _out(text: str) -> None:
    from gentool.files import write_stdout

    write_stdout(text + "\n")


def _open(spec: str, device: Device, verb: str, options: dict | None = None):
    """The artifact and the function that computes `verb` for its roles, with the verb's own
    `options` (else a usage error)."""
    from gentool.runtime import verbs
    from gentool.runtime.artifact import Artifact

    art = Artifact(spec, device.value)
    return art, verbs.find(art, verb, options=options)


class _SamplerOptions:
    """A verb's command with the options the runtime's sampler modules declare for the verb added
    to its signature (typed, with their help and the roles that take them, in their own help
    panel) and gathered into one `options` dict of those given. Typer reads the signature when it
    builds the command line, so a sampler registered before then has its options there too."""

    def __init__(self, verb: str, command):
        functools.update_wrapper(self, command, assigned=("__module__", "__name__", "__qualname__", "__doc__"), updated=())
        self.verb, self.command = verb, command

    def _parameters(self):
        from gentool.runtime import verbs

        declared = verbs.options(self.verb)
        signature = inspect.signature(self.command, eval_str=True)
        kept = [p for p in signature.parameters.values() if p.name != "options"]
        extra = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
            Optional[option.type], typer.Option(option.flag, help=_option_help(option, roles), rich_help_panel="Sampler options")])
            for name, (option, roles) in declared.items()]
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
        options = {name: value for name in declared if (value := given.pop(name, None)) is not None}
        return self.command(**given, options=options)


def _option_help(option, roles: list[str]) -> str:
    default = "" if option.default is None else f"; default {option.default}"
    return f"{option.help} (models with {' or '.join(roles)}{default})"


def _sampler_options(verb: str):
    return lambda command: _SamplerOptions(verb, command)


def _read(artifact, paths: list[str]):
    from gentool import images

    c, h, w = artifact.image_shape
    x, notes = images.read_images(paths, c, (h, w))
    for note in notes:
        _err(f"note: {note}")
    return x


def _read_any_size(artifact, path: str):
    """One image at its own size; a grayscale model keeps a colour image's channels (taken one by one)."""
    from gentool import images

    c = artifact.image_shape[0]
    x, notes = images.read_image(path, None if c == 1 else c)
    for note in notes:
        _err(f"note: {note}")
    return x


def provenance(art, **extra) -> dict[str, str]:
    """What made an image, for its PNG tEXt chunks: `Software`, and `gentool`, a JSON object with the
    version, the verb, its arguments (all but where the output goes and the device), the origin of
    the artifact's graphs (a hash of the weights, epoch and step) and `extra` (which image of several
    a file holds): enough to draw it again."""
    from typer._click.globals import get_current_context  # Typer 0.26+ bundles click, with no public accessor

    from gentool import images

    ctx = get_current_context()
    arguments = {k: v.value if isinstance(v, Enum) else v for k, v in ctx.params.items()
                 if v is not None and k not in ("out", "device", "nrow")}
    return images.made_by(ctx.info_name, **arguments, origin=art.meta.get("origin"), **extra)


def _write(art, image_batch, out: str | None, nrow: int | None = None) -> None:
    """One image as it is, several as a grid (`nrow` per row, at most as many as there are), with
    its provenance; an `out` that is a folder (or ends in '/') gets one PNG per image instead."""
    from gentool import images

    if nrow is not None:
        _positive("--nrow", nrow)
    if images.is_folder(out):
        paths = images.write_folder(image_batch, out, lambda i: provenance(art, image=i))
        _err(f"wrote {len(paths)} image{'s' * (len(paths) > 1)} to {out}: "
             + (paths[0].name if len(paths) == 1 else f"{paths[0].name} to {paths[-1].name}"))
        return
    many = len(image_batch) > 1
    image = images.make_grid(image_batch, nrow=min(nrow, len(image_batch)) if nrow else None) if many else image_batch[0]
    images.write_image(image, out, provenance(art))


# Bounds on what one command draws, so that a typo costs what was meant (a 10^9-image grid would not)
MAX_IMAGES, MAX_STEPS, MAX_SIDE = 100_000, 1_000, 100
SCATTER_POINTS = 5_000  # test images in `plot --latent` unless --limit says otherwise


def _positive(name: str, value: int, most: int | None = None, least: int = 1) -> None:
    if value < least:
        raise UsageError(f"{name} must be at least {least}, got {value}")
    if most is not None and value > most:
        raise UsageError(f"{name} must be at most {most}, got {value}")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []})
def train(
    ctx: typer.Context,
    model: Annotated[Optional[str], typer.Argument(help="Model family (`gentool models` lists them).", autocompletion=_family_names)] = None,
    data: Annotated[Optional[str], typer.Option(help="mnist, fashion-mnist, a folder of images, or a .npy/.npz file.")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Epochs (model default when omitted).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Batch size (model default when omitted).")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Learning rate (model default when omitted).")] = None,
    lr_schedule: Annotated[Optional[str], typer.Option(help="constant, or cosine (annealed to 0 over the run) (model default when omitted).")] = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = Device.auto,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Run directory (default runs/<model>-<data>).")] = None,
    resume: Annotated[Optional[Path], typer.Option(help="Continue a run directory where it stopped.")] = None,
    init: Annotated[Optional[Path], typer.Option(help="Fine-tune: start from the weights of this run or checkpoint (the model and its options come from it; data and training settings are this run's).")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Train on the first N examples only (and take the per-epoch test loss on the first N test images).")] = None,
    binarize: Annotated[bool, typer.Option(help="Dynamically binarized pixels (NLLs comparable with binarized-MNIST tables).")] = False,
    classes: Annotated[Optional[str], typer.Option(help="Train on these classes only (names or indices, e.g. 3 or 3,5); the others are anomalies for `evaluate --anomaly`.")] = None,
    size: Annotated[Optional[str], typer.Option(metavar="H[xW]", help="Resize every image to H x W pixels as it loads (Lanczos; done once, then cached): images of mixed sizes, or sides the model cannot take.")] = None,
    show_help: Annotated[bool, typer.Option("--help", "-h", help="Show this message (with MODEL: and the model's own options) and exit.")] = False,
) -> None:
    """Train a model: evaluates each epoch and exports ONNX at the end.

    Model options follow, e.g. --beta 4 (`gentool train MODEL --help` lists them)."""
    if show_help:
        text = ctx.get_help()  # Typer's Rich help prints itself and returns ''
        if text:
            print(text)
        if model:
            _needs_torch("train")
            from gentool import zoo

            print(zoo.describe(model))
        raise typer.Exit()
    _needs_torch("train")
    from gentool import train as training
    from gentool.data import parse_size

    if model is None and resume is None and init is None:
        raise UsageError("name a model to train (e.g. `gentool train vae --data mnist`), --resume a run or --init from one")
    if limit is not None:
        _positive("--limit", limit)
    extra = list(ctx.args)
    if resume and (extra or model or data or classes or size):
        raise UsageError("--resume continues a run with its own settings; only --epochs and --device may be given")
    if init and (resume or extra):
        raise UsageError("--init takes the model and its options from the run it starts from; it cannot be combined with --resume or model options")
    run_dir = training.run(
        training.Options(
            model=model or "", data=data, epochs=epochs, batch_size=batch_size, lr=lr, lr_schedule=lr_schedule, seed=seed,
            device=device.value, out=out, resume=resume, init=init, limit=limit, binarize=binarize, hparam_args=tuple(extra),
            classes=classes, size=parse_size(size) if size else None,
        )
    )
    if run_dir is not None:  # None in the processes of rank > 0 under torchrun
        _out(str(run_dir))


@app.command()
def models(
    name: Annotated[Optional[str], typer.Argument(help="One family only.", autocompletion=_family_names)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout: each family's summary, options (type, default, choices) and training defaults.")] = False,
) -> None:
    """List the model families, their options (with choices and defaults) and training defaults."""
    from gentool import zoo

    names = [name] if name else list(zoo.catalog())
    if as_json:
        _out(json.dumps({n: zoo.catalog_entry(n) for n in names}, indent=1))
    else:
        _out("\n\n".join(zoo.describe(n) for n in names))


@app.command("runs")
def list_runs(
    model: Annotated[Optional[str], typer.Argument(help="Runs of this model family only.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines on stdout, one run each.")] = False,
) -> None:
    """List the runs under runs/, newest first: model, data, epochs, last test loss, graphs.

    A bare model name given to another verb means the first of them."""
    from gentool import runs

    found = runs.listing(model)
    if not found:
        _err(f"no runs{' of ' + model if model else ''} in {runs.ROOT}/ (`gentool train MODEL --data D` makes one)")
        return
    if as_json:
        _out("\n".join(json.dumps(row) for row in found))
        return
    from rich.table import Table

    table = Table("run", "model", "data", "epochs", "test loss", "fid_1k", "graphs", "modified")
    for row in found:
        table.add_row(row["run"], row["model"], str(row["data"]), f"{row['epoch']}/{row['epochs']}",
                      *(f"{row[k]:.4g}" if row[k] is not None else "" for k in ("test_loss", "fid_1k")),
                      ", ".join(row["graphs"]) or "none", row["modified"])
    _stdout_console().print(table)


@app.command()
def env(as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False) -> None:
    """Report versions, onnxruntime's providers, whether CUDA really works, and where data and caches are."""
    from gentool.environment import report

    found = report()
    if as_json:
        _out(json.dumps(found, indent=1))
        return
    lines = []
    for key, value in found.items():
        if isinstance(value, dict):
            lines.append(f"{key}:")
            lines += [f"  {k:<18} {'missing (downloaded on first use)' if v is None else ', '.join(v) if isinstance(v, list) else v}"
                      for k, v in value.items()]
        else:
            lines.append(f"{key:<20} {'not installed' if value is None else value}")
    _out("\n".join(lines))


@app.command()
def evaluate(
    run: Annotated[str, typer.Argument(help="A run directory, a .safetensors checkpoint or a model name (its newest run); with --samples (or for an export) any generator artifact.")],
    data: Annotated[Optional[str], typer.Option(help="Evaluate on other data (default: the run's).")] = None,
    split: Annotated[str, typer.Option(help="train or test.")] = "test",
    iw_samples: Annotated[Optional[int], typer.Option(help="vae: importance samples K for iw_nll_nats (default 100; 0 skips it).")] = None,
    full: Annotated[bool, typer.Option("--full", help="The slow figures on the whole split: a vae's iw_nll_nats (default: 1,000 evenly spaced images, reported as iw_images), a cae's jacobian_fro (250).")] = False,
    limit: Annotated[Optional[int], typer.Option(help="Use the first N examples only.")] = None,
    noise_level: Annotated[Optional[float], typer.Option(help="dae: corrupt the split at this level (default: the model's).")] = None,
    anomaly: Annotated[bool, typer.Option("--anomaly", help="One-class protocol: AUROC of `score` on the split, the run's --classes being normal.")] = False,
    plot: Annotated[Optional[str], typer.Option(metavar="FILE", help="Draw into this .png, .svg or .pdf (needs gentool[plot]): the ROC curve of --anomaly, or the quality curves of several --truncation values.")] = None,
    probe: Annotated[Optional[int], typer.Option(metavar="N", help="Logistic-regression probe on the codes of N labelled training images per class, and k-means NMI; both also on pixels.")] = None,
    samples: Annotated[Optional[int], typer.Option(help="Sample quality instead: draw N samples and compare them with the test split (default for an export: 10000).")] = None,
    features: Annotated[Optional[str], typer.Option(help="With --samples: mnist, fashion-mnist or a features .onnx (default: the model's data).")] = None,
    truncation: Annotated[Optional[str], typer.Option(metavar="T[,T...]", help="Sample quality of draws with latent values within +-T (as `sample --truncation`); several values, 'none' among them for no truncation, give a row each and the curves of --plot.")] = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = Device.auto,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Metrics of a trained model on a data split, or (--samples, an export, a GAN) the quality of its samples.

    The table goes to stdout (`--json`: one object); what it is computing, to stderr."""
    from gentool import runs

    path = runs.resolve(run, "model.safetensors", "a checkpoint")
    run = str(path)
    if samples is not None or truncation is not None or not (path.suffix == ".safetensors" or (path / "model.safetensors").is_file()) or _evaluates_samples(path):
        if iw_samples is not None or full or noise_level is not None or anomaly or probe is not None or limit is not None or split != "test":
            raise UsageError("--samples reports sample quality on the test split alone: drop --iw-samples, --full, --noise-level, --anomaly, --probe, --limit and --split")
        artifact = str(path.parent) if path.suffix == ".safetensors" else run  # the graphs beside a checkpoint
        _sample_quality(artifact, data, samples, features, _truncations(truncation), seed, device, as_json, plot)
        return
    _needs_torch("evaluate")
    from gentool.evaluate import evaluate as run_evaluation

    if iw_samples is not None and iw_samples < 0:
        raise UsageError(f"--iw-samples must be 0 or more, got {iw_samples}")
    if limit is not None:
        _positive("--limit", limit)
    if noise_level is not None and not 0 <= noise_level <= 1:
        raise UsageError(f"--noise-level must be in [0, 1], got {noise_level}")
    if plot and not anomaly:
        raise UsageError("--plot draws the ROC curve of --anomaly or the curves of several --truncation values; for training curves use `gentool plot RUN`")
    if plot:
        from gentool import plots

        plots.check_target(plot)
    result = run_evaluation(path, data, split, device.value, limit, seed, anomaly, probe, plot,
                            iw_samples=iw_samples, noise_level=noise_level, full=full or None)
    _report(result, f"{result['model']} on {result['data']} ({result['split']}, n={result['n']})", as_json, ("model", "data", "split", "n"))


def _evaluates_samples(path: Path) -> bool:
    """A checkpoint of a family whose evaluation is the quality of its samples (a GAN's), read
    from the torch-free catalog, so that nothing is loaded twice."""
    from gentool import runs, zoo

    meta = runs.checkpoint_meta(path if path.suffix == ".safetensors" else path / "model.safetensors") or {}
    return zoo.catalog().get(meta.get("model"), {}).get("evaluation") == "samples"


def _truncations(text: str | None) -> list[float | None]:
    """'0.5,1,none' -> [0.5, 1.0, None]; no option: [None]."""
    if text is None:
        return [None]
    try:
        values = [None if item.strip().lower() == "none" else float(item) for item in text.split(",")]
    except ValueError:
        raise UsageError(f"--truncation takes positive numbers or 'none', comma-separated, got '{text}'") from None
    if any(v is not None and not v > 0 for v in values):
        raise UsageError(f"--truncation values must be positive, got '{text}'")
    return values


def _sample_quality(run: str, data: str | None, samples: int | None, features: str | None, truncations: list[float | None],
                    seed: int, device: Device, as_json: bool, plot: str | None) -> None:
    from gentool.runtime import quality

    samples = quality.SAMPLES if samples is None else samples
    _positive("--samples", samples, MAX_IMAGES)
    art, _ = _open(run, device, "sample")
    wanted = features or data or art.meta.get("data")
    if features is None and wanted not in quality.BUNDLED_FEATURES:
        raise UsageError(f"gentool bundles feature networks for {', '.join(quality.BUNDLED_FEATURES)}, not '{wanted}': pass --features PATH.onnx")
    if plot and len(truncations) < 2:
        raise UsageError("--plot draws sample quality against truncation: give several --truncation values (e.g. 0.5,1,1.5,2,none)")
    if plot:
        from gentool import plots

        plots.check_target(plot)
    network, name = quality.feature_network(wanted, device.value)
    rows = quality.evaluate_settings(art, samples, seed, network, name, data, [{"truncation": t} if t is not None else {} for t in truncations])
    if len(rows) > 1:
        rows = [{**row, "truncation": t} for row, t in zip(rows, truncations)]
    heading = f"gentool FID ({name} features): {samples} samples of {run} against {rows[0]['data']} test"
    if len(rows) == 1:
        _report(rows[0], heading, as_json)
        return
    if plot:
        plots.quality_curves(plot, rows, heading)
    if as_json:
        _out("\n".join(json.dumps(row) for row in rows))
        return
    from rich.table import Table

    shown = [k for k, v in rows[0].items() if isinstance(v, float) and k != "truncation"]
    table = Table("truncation", *shown)
    for row in rows:
        table.add_row(str(row["truncation"] or "none"), *(f"{row[k]:.4f}" for k in shown))
    console = _stdout_console()
    console.print(heading, soft_wrap=True)
    console.print(table)


def _report(result: dict, heading: str, as_json: bool, in_heading: tuple[str, ...] = ()) -> None:
    """A result on stdout: one JSON object with --json, else a table under `heading` (without the
    keys `in_heading` already shows)."""
    if as_json:
        _out(json.dumps(result))
        return
    from rich.table import Table

    table = Table("metric", "value")
    for key, value in result.items():
        if key not in in_heading:
            table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    console = _stdout_console()
    console.print(heading, soft_wrap=True)
    console.print(table)


@app.command()
def fid(
    reference: Annotated[str, typer.Argument(help="The real images: a dataset split (mnist:test; a bare name is its test split), a folder, or .npy/.npz.")],
    samples: Annotated[str, typer.Argument(help="The images to judge, in the same forms.")],
    features: Annotated[Optional[str], typer.Option(help="mnist, fashion-mnist (bundled) or a features .onnx (default: the dataset named in REFERENCE or SAMPLES).")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Use the first N images of each set.")] = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = Device.auto,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Sample-quality figures of SAMPLES against REFERENCE (fid, kid, precision, recall, ...).

    fid, kid, precision, recall, density, coverage and the classifier score, on a gentool feature
    network (not Inception)."""
    import numpy as np

    from gentool import data
    from gentool.runtime import quality

    features = features or next((n for n in (reference.split(":")[0], samples.split(":")[0]) if n in quality.BUNDLED_FEATURES), None)
    if features is None:
        raise UsageError("name the feature network: --features mnist (for digits), fashion-mnist (for clothing), or PATH.onnx "
                         "for other images (the features.onnx of `gentool train classifier --data YOUR-DATA`)")
    network, name = quality.feature_network(features, device.value)
    if limit is not None:
        _positive("--limit", limit)
    sets = [data.image_set(spec, limit) for spec in (reference, samples)]
    real, fake = (quality.features(network, _conformed(s, network.image_shape) / np.float32(255)) for s in sets)
    result = {"features": name, "n_reference": len(sets[0]), "n_samples": len(sets[1]), **quality.compare(real[0], fake[0], fake[1], seed=seed)}
    _report(result, f"gentool FID ({name} features): {samples} against {reference}", as_json)


@app.command()
def export(
    run: Annotated[str, typer.Argument(help="A run directory, a checkpoint, or a model name (its newest run).")],
    onnx: Annotated[bool, typer.Option("--onnx", help="ONNX graphs: the one format, written with or without this flag.")] = False,
    out: Annotated[Optional[Path], typer.Option("-o", "--out", help="Output directory (default: the run directory).")] = None,
    opset: Annotated[Optional[int], typer.Option(help="ONNX opset (default: the tested one).")] = None,
) -> None:
    """(Re-)export a trained model's graphs, one .onnx per role, with a parity check (--onnx is optional)."""
    _needs_torch("export")
    from gentool import checkpoint, runs
    from gentool.export import OPSET, export as run_export

    path = runs.resolve(run, checkpoint.WEIGHTS, "a checkpoint")
    model, meta = checkpoint.load(path)
    target = out or (path if path.is_dir() else path.parent)
    differences = run_export(model, meta, target, opset or OPSET)
    for role, diff in differences.items():
        _err(f"{role}: {target / (role + '.onnx')}  max |torch - onnxruntime| = {diff:.1e}")
    _out(str(target))


@app.command("plot")
def plot_figure(
    run: Annotated[str, typer.Argument(help="A run directory or a model name (its newest run); with --latent any artifact with an encoder.")],
    latent: Annotated[bool, typer.Option("--latent", help="Instead: the test split's codes coloured by class (the first two principal components of wider codes).")] = False,
    data: Annotated[Optional[str], typer.Option(help="--latent: the data whose test split is encoded (default: the model's).")] = None,
    limit: Annotated[Optional[int], typer.Option(help=f"--latent: the first N test images (default {SCATTER_POINTS}).")] = None,
    out: Annotated[Optional[str], typer.Option("-o", "--out", help="A .png, .svg or .pdf file, or '-' for a PNG on stdout (default: results.png, or latent.png, in the run directory).")] = None,
    device: DeviceOpt = Device.auto,
) -> None:
    """Draw a run's training curves (results.png), or a scatter of its test codes (--latent).

    Training writes results.png itself when matplotlib is installed (pip install 'gentool[plot]')."""
    from gentool import plots, runs

    if out is not None:
        plots.check_target(out)
    path = runs.resolve(run, "encoder.onnx" if latent else "metrics.jsonl", "an encoder" if latent else "training metrics")
    if not latent:
        if limit is not None or data is not None:
            raise UsageError("--limit and --data go with --latent")
        target = out or str(path / "results.png")
        plots.training_curves(path, target)
    else:
        import numpy as np

        from gentool import data as datasets
        from gentool.runtime import latent as latents

        _positive("--limit", SCATTER_POINTS if limit is None else limit)
        art, encode = _open(str(path), device, "encode")
        source = data or art.meta.get("data")
        if not source:
            raise UsageError("this artifact does not say what data it was trained on: pass --data")
        split = datasets.check_shape(datasets.load(source, "test", limit or SCATTER_POINTS), art.image_shape, "test")
        codes = latents.code_of(encode(art, split.images / np.float32(255)))
        target = out or str((path if path.is_dir() else path.parent) / "latent.png")
        plots.latent_scatter(target, codes, split.labels, split.classes, f"{art.model} codes of {split.name} test ({len(split)} images)")
    from gentool.files import STDOUT_PATHS

    if target not in STDOUT_PATHS:  # else the PNG itself went to stdout
        _out(target)


LabelOpt = Annotated[Optional[str], typer.Option(help="Conditional models: the class to draw (a name or index; default: the classes in turn).")]


def _labels(art, label: str | None, n: int):
    """`n` copies of the class `label` names, for a conditional model; None when no label is given."""
    import numpy as np

    from gentool.runtime import latent

    return None if label is None else np.full(n, latent.label_index(art, label))


@app.command()
@_sampler_options("sample")
def sample(
    artifact: ArtifactArg,
    n: Annotated[int, typer.Option("-n", help="Number of images.")] = 64,
    seed: SeedOpt = 0,
    label: LabelOpt = None,
    nrow: Annotated[Optional[int], typer.Option(help="Images per grid row.")] = None,
    out: OutOpt = None,
    device: DeviceOpt = Device.auto,
    options: dict | None = None,
) -> None:
    """Draw new images from the model (a grid PNG).

    The sampler's own options follow: each applies to the models its help names."""
    _positive("-n", n, MAX_IMAGES)
    art, run = _open(artifact, device, "sample", options)
    _write(art, run(art, n, seed, _labels(art, label, n)), out, nrow)


@app.command()
def reconstruct(
    artifact: ArtifactArg,
    inputs: Annotated[list[str], typer.Argument(help="Images (PNG/JPEG paths, or '-' for stdin).")],
    out: OutOpt = None,
    device: DeviceOpt = Device.auto,
) -> None:
    """Encode and decode images; several inputs give a grid in input order."""
    art, run = _open(artifact, device, "reconstruct")
    _write(art, run(art, _read(art, inputs)), out)


class CodeFormat(str, Enum):
    auto = "auto"
    json = "json"
    csv = "csv"
    npy = "npy"


@app.command()
def encode(
    artifact: ArtifactArg,
    inputs: Annotated[list[str], typer.Argument(help="Images (PNG/JPEG paths, or '-' for stdin).")],
    out: OutOpt = None,
    fmt: Annotated[CodeFormat, typer.Option("--format", help="auto: from the -o suffix (.npy, .csv), else JSON lines.")] = CodeFormat.auto,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines on stdout (same as --format json).")] = False,
    device: DeviceOpt = Device.auto,
) -> None:
    """Latent codes of images: JSON lines (one per input), CSV, or .npy."""
    from gentool.runtime import codes

    art, run = _open(artifact, device, "encode")
    codes.write(run(art, _read(art, inputs)), inputs, out, "json" if as_json else fmt.value)


@app.command()
def decode(
    artifact: ArtifactArg,
    codes_in: Annotated[str, typer.Argument(metavar="CODES", help=".npy, .csv or JSON lines of codes (a path, or '-').")],
    out: OutOpt = None,
    nrow: Annotated[Optional[int], typer.Option(help="Images per grid row.")] = None,
    device: DeviceOpt = Device.auto,
) -> None:
    """Images from latent codes (one code: one image; several: a grid)."""
    from gentool.runtime import codes

    art, run = _open(artifact, device, "decode")
    _write(art, run(art, codes.read(codes_in)), out, nrow)


def _int_pair(option: str, text: str) -> tuple[int, int]:
    try:
        a, b = (int(s) for s in text.split(","))
    except ValueError:
        raise UsageError(f"{option} takes two integers 'A,B', got '{text}'") from None
    return a, b


@app.command()
def interpolate(
    artifact: ArtifactArg,
    ends: Annotated[Optional[list[str]], typer.Argument(metavar="[A B]", help="Two images to go between.")] = None,
    seeds: Annotated[Optional[str], typer.Option(help="Instead of images: two seeds 'A,B' whose prior draws are the ends.")] = None,
    steps: Annotated[int, typer.Option(help="Images in the strip, both ends included.")] = 8,
    slerp: Annotated[bool, typer.Option("--slerp", help="Spherical interpolation (keeps Gaussian codes at a typical norm).")] = False,
    label: LabelOpt = None,
    out: OutOpt = None,
    device: DeviceOpt = Device.auto,
) -> None:
    """A strip of images decoded along the line (or great circle) between two latent codes."""
    from gentool.runtime import latent, verbs

    _positive("--steps", steps, MAX_STEPS, least=2)
    art, run = _open(artifact, device, "interpolate")
    if seeds is not None:
        if ends:
            raise UsageError("give two images or --seeds, not both")
        start, end = latent.seed_codes(art, list(_int_pair("--seeds", seeds)), "interpolate --seeds")
    else:
        if not ends or len(ends) != 2:
            raise UsageError("interpolate needs two images A B (or --seeds A,B)")
        encode = verbs.find(art, "encode", "interpolate A B")
        start, end = latent.code_of(encode(art, _read(art, ends)))
    _write(art, run(art, start, end, steps, slerp, _labels(art, label, steps)), out, nrow=steps)


def _seed_list(option: str, text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",")]
    except ValueError:
        raise UsageError(f"{option} takes seeds 'A,B,...', got '{text}'") from None


def _conformed(dataset, shape):
    """A dataset's uint8 images in the channels and size a network takes, with a note per conversion."""
    from gentool import images

    converted, notes = images.conform(dataset.images, shape, dataset.name)
    for note in notes:
        _err(f"note: {note}")
    return converted


def _term_codes(art, spec: str):
    """The codes of an arithmetic term's images: one image file, or a set (folder, .npy/.npz, dataset split)."""
    import numpy as np

    from gentool import data, images
    from gentool.runtime import latent, verbs

    encode = verbs.find(art, "encode", "arithmetic --plus/--minus IMAGES")
    if Path(spec).suffix.lower() in images.FORMATS:
        x = _read(art, [spec])
    else:
        x = _conformed(data.image_set(spec), art.image_shape) / np.float32(255)
    return latent.code_of(encode(art, x))


@app.command()
def arithmetic(
    artifact: ArtifactArg,
    plus: Annotated[Optional[list[str]], typer.Option(help="A term to add: images (a folder, .npy/.npz, a dataset split or one image) taken at their mean code. Repeatable.")] = None,
    minus: Annotated[Optional[list[str]], typer.Option(help="A term to subtract, in the same forms. Repeatable.")] = None,
    plus_seeds: Annotated[Optional[list[str]], typer.Option(help="Instead of images: a term as seeds 'A,B,...' whose prior draws are averaged. Repeatable.")] = None,
    minus_seeds: Annotated[Optional[list[str]], typer.Option(help="A term of seeds to subtract. Repeatable.")] = None,
    label: LabelOpt = None,
    out: OutOpt = None,
    device: DeviceOpt = Device.auto,
) -> None:
    """Latent vector arithmetic: decoded mean codes of the terms, then of their sum.

    Radford et al. 2016: a strip of each term's mean code decoded, plus terms then minus terms, and
    last their sum (plus - minus)."""
    from gentool.runtime import latent

    art, run = _open(artifact, device, "arithmetic")
    plus, minus, plus_seeds, minus_seeds = plus or [], minus or [], plus_seeds or [], minus_seeds or []
    if (plus or minus) and (plus_seeds or minus_seeds):
        raise UsageError("give image terms (--plus/--minus) or seed terms (--plus-seeds/--minus-seeds), not both")
    if plus_seeds or minus_seeds:
        terms = [[latent.seed_codes(art, _seed_list(option, text), "arithmetic") for text in texts]
                 for option, texts in (("--plus-seeds", plus_seeds), ("--minus-seeds", minus_seeds))]
    else:
        terms = [[_term_codes(art, spec) for spec in specs] for specs in (plus, minus)]
    if not terms[0]:
        raise UsageError("arithmetic needs a term to add: --plus IMAGES or --plus-seeds A,B")
    count = len(terms[0]) + len(terms[1]) + 1
    if label is None and "label" in art.input_names(latent.z_role(art)):
        raise UsageError("this model is conditional: give the --label its terms are drawn as")
    _write(art, run(art, *terms, _labels(art, label, count)), out, nrow=count)


@app.command()
def manifold(
    artifact: ArtifactArg,
    size: Annotated[int, typer.Option(help="Grid side (size x size images).")] = 20,
    dims: Annotated[Optional[str], typer.Option(help="The two latent dimensions to sweep, 'I,J' (default: a VAE's two most active, else 0,1).")] = None,
    out: OutOpt = None,
    device: DeviceOpt = Device.auto,
) -> None:
    """The learned-manifold picture: decoded prior quantiles over two latent dimensions."""
    from gentool.runtime import latent

    _positive("--size", size, MAX_SIDE, least=2)
    art, run = _open(artifact, device, "manifold")
    pair = latent.most_active_dims(art) if dims is None else _int_pair("--dims", dims)
    _write(art, run(art, size, pair), out, nrow=size)
    if dims is None:
        _err(f"manifold: dims {pair[0]},{pair[1]}")


@app.command()
@_sampler_options("score")
def score(
    artifact: ArtifactArg,
    inputs: Annotated[list[str], typer.Argument(help="Images (PNG/JPEG paths, or '-' for stdin).")],
    as_json: Annotated[bool, typer.Option("--json", help='JSON lines {"input", "score", "kind"} on stdout.')] = False,
    seed: SeedOpt = 0,
    device: DeviceOpt = Device.auto,
    options: dict | None = None,
) -> None:
    """Anomaly score per image, higher = more anomalous: -ELBO in nats (Bernoulli VAE), else reconstruction MSE."""
    art, run = _open(artifact, device, "score", options)
    scores, kind = run(art, _read(art, inputs), seed)
    _out("\n".join(json.dumps({"input": name, "score": float(value), "kind": kind}) if as_json else f"{name}  {value:.6g}"
                   for name, value in zip(inputs, scores)))
    if not as_json:
        _err(f"scores: {kind} (higher is more anomalous)")


@app.command()
def denoise(
    image: Annotated[str, typer.Argument(metavar="IN", help="A PNG/JPEG image of any size (a path, or '-' for stdin).")],
    out: OutOpt = None,
    model: Annotated[Optional[str], typer.Option(help="A dae artifact: run or export directory, .onnx, or model name (default: the bundled denoiser).")] = None,
    device: DeviceOpt = Device.auto,
) -> None:
    """Remove noise from an image of any size.

    A grayscale model (like the bundled one) denoises each channel of a colour image as a grayscale
    image."""
    from gentool.runtime import image_to_image

    art, run = _open(model or str(image_to_image.bundled_denoiser()), device, "denoise")
    _write(art, run(art, _read_any_size(art, image))[None], out)


@app.command()
def upscale(
    image: Annotated[str, typer.Argument(metavar="IN", help="A PNG/JPEG image of any size (a path, or '-' for stdin).")],
    factor: Annotated[Optional[int], typer.Option(help="Scale factor (default: the model's own; the bundled model does 2).")] = None,
    out: OutOpt = None,
    model: Annotated[Optional[str], typer.Option(help="An sr artifact: run or export directory, .onnx, or model name (default: the bundled upscaler).")] = None,
    device: DeviceOpt = Device.auto,
) -> None:
    """Enlarge an image of any size with a super-resolution model.

    A grayscale model (like the bundled one) upscales each channel of a colour image as a grayscale
    image."""
    from gentool.runtime import image_to_image

    if factor is not None and factor < 2:
        raise UsageError(f"--factor must be at least 2, got {factor}")
    art, run = _open(model or str(image_to_image.bundled_upscaler(factor or 2)), device, "upscale")
    _write(art, run(art, _read_any_size(art, image), factor)[None], out)


def _terminated(signum, frame):
    """SIGTERM unwinds like an error, so that temporary files are removed on the way out."""
    raise SystemExit(128 + signum)


# Folders named by the environment; a relative one means the folder the user named from where they were.
DIRECTORY_VARIABLES = ("GENTOOL_DATA_DIR", "GENTOOL_CACHE_DIR")


def _pin_directories() -> None:
    """Make a relative $GENTOOL_DATA_DIR or $GENTOOL_CACHE_DIR absolute once, at start-up, so that
    whatever gentool starts later (torchrun's workers, a process in another folder) reads the same one."""
    for name in DIRECTORY_VARIABLES:
        if os.environ.get(name):
            os.environ[name] = os.path.abspath(os.path.expanduser(os.environ[name]))


def main() -> None:
    from gentool.files import guard_standard_streams

    guard_standard_streams()
    _pin_directories()
    signal.signal(signal.SIGTERM, _terminated)
    try:
        code = app(standalone_mode=False)
    except typer.Exit as e:  # raised by --help and friends in non-standalone mode
        code = e.exit_code
    except typer.Abort:
        _err("gentool: aborted")
        code = 130
    except GentoolError as e:
        if _state["debug"]:
            raise
        _err(f"gentool: error: {e}")
        code = e.exit_code
    except Exception as e:  # click's usage errors and anything unexpected
        usage = getattr(e, "exit_code", None) == 2 and hasattr(e, "format_message")
        if _state["debug"]:
            raise
        if usage:
            if e.format_message():  # bare `gentool` prints its help and has nothing to add
                _err(f"gentool: error: {e.format_message()}")
            code = 2
        else:
            _err(f"gentool: internal error: {type(e).__name__}: {e} (run with --debug for the traceback)")
            code = 1
    sys.exit(code or 0)
