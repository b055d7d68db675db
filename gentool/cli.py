"""The `gentool` command line: one thin function per verb.

Importing this module never imports torch: training-side verbs import it inside the command, and
the inference verbs run on onnxruntime and numpy alone. Errors are one line on stderr; exit code 2
for usage and input errors, 1 for failures while running (`--debug` shows the traceback).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from gentool import cli_params as parts, console, inputs, values
from gentool.cli_params import MAX_IMAGES, MAX_SIDE, MAX_STEPS, ArtifactArg, CodeFormat, Device, DeviceOpt, LabelOpt, OutOpt, SeedOpt, Side
from gentool.errors import UsageError, check_count, exit_code

app = typer.Typer(
    name="gentool",
    help="Train, evaluate, export and run autoencoders and generative models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
_state = {"debug": False}


@app.callback()
def _options(
    debug: Annotated[bool, typer.Option(help="Show tracebacks.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=parts.show_version, is_eager=True, help="Show the version and exit.")] = False,
) -> None:
    _state["debug"] = debug


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []})
def train(
    ctx: typer.Context,
    model: Annotated[Optional[str], typer.Argument(help="Model family (`gentool models` lists them).", autocompletion=parts.family_names)] = None,
    data: Annotated[Optional[str], typer.Option(help="mnist, fashion-mnist, a folder of images, or a .npy/.npz file.")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Epochs (model default when omitted).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Batch size (model default when omitted).")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Learning rate (model default when omitted).")] = None,
    lr_schedule: Annotated[Optional[str], typer.Option(help="constant, or cosine (annealed to 0 over the run) (model default when omitted).")] = None,
    precision: Annotated[Optional[str], typer.Option(help="fp32, or bf16 (bfloat16 autocast where the device computes it natively; float32 elsewhere) (model default when omitted).")] = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = Device.auto,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Run directory (default runs/<model>-<data>).")] = None,
    resume: Annotated[Optional[Path], typer.Option(help="Continue a run directory where it stopped.")] = None,
    init: Annotated[Optional[Path], typer.Option(help="Fine-tune: start from the weights of this run or checkpoint (the model and its options come from it; data and training settings are this run's).")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Train on the first N examples only (and take the per-epoch test loss on the first N test images).")] = None,
    binarize: Annotated[bool, typer.Option(help="Dynamically binarized pixels (NLLs comparable with binarized-MNIST tables).")] = False,
    classes: Annotated[Optional[str], typer.Option(help="Train on these classes only (names or indices, e.g. 3 or 3,5); the others are anomalies for `evaluate --anomaly`.")] = None,
    size: Annotated[Optional[str], typer.Option(metavar="H[xW]", help="Resize every image to H x W pixels as it loads (Lanczos; done once, then cached): images of mixed sizes, or sides the model cannot take.")] = None,
    export: Annotated[bool, typer.Option("--export/--no-export", help="Export the ONNX graphs at the end (--no-export: later, with `gentool export RUN`).")] = True,
    show_help: Annotated[bool, typer.Option("--help", "-h", help="Show this message (with MODEL: and the model's own options) and exit.")] = False,
) -> None:
    """Train a model: evaluates each epoch and exports ONNX at the end.

    Model options follow, e.g. --beta 4 (`gentool train MODEL --help` lists them)."""
    if show_help:
        parts.train_help(ctx, model)
    parts.needs_torch("train")
    from gentool import train as training
    from gentool.data import parse_size

    run_dir = training.run(training.Options(
        model=model or "", data=data, epochs=epochs, batch_size=batch_size, lr=lr, lr_schedule=lr_schedule, precision=precision, seed=seed,
        device=device.value, out=out, resume=resume, init=init, limit=limit, binarize=binarize, hparam_args=tuple(ctx.args),
        classes=classes, size=parse_size(size) if size else None, export=export).check())
    if run_dir is not None:  # None in the processes of rank > 0 under torchrun
        console.out(str(run_dir))


@app.command()
def models(
    name: Annotated[Optional[str], typer.Argument(help="One family only.", autocompletion=parts.family_names)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout: each family's summary, options (type, default, choices) and training defaults.")] = False,
) -> None:
    """List the model families, their options (with choices and defaults) and training defaults."""
    from gentool import zoo

    names = [name] if name else list(zoo.catalog())
    console.out(console.to_json({n: zoo.catalog_entry(n) for n in names}, indent=1) if as_json else "\n\n".join(map(zoo.describe, names)))


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
        console.err(f"no runs{' of ' + model if model else ''} in {runs.ROOT}/ (`gentool train MODEL --data D` makes one)")
        return
    if as_json:
        console.out("\n".join(map(console.to_json, found)))
    else:
        console.table(None, list(runs.COLUMNS), [runs.cells(row) for row in found])


@app.command()
def env(as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False) -> None:
    """Report versions, onnxruntime's providers, whether CUDA really works, and where data and caches are."""
    from gentool import environment

    found = environment.report()
    console.out(console.to_json(found, indent=1) if as_json else environment.describe(found))


@app.command()
@parts.model_options
def evaluate(
    run: Annotated[str, typer.Argument(help="A run directory, a .safetensors checkpoint or a model name (its newest run); with --samples (or for an export) any generator artifact.")],
    data: Annotated[Optional[str], typer.Option(help="Evaluate on other data (default: the run's).")] = None,
    split: Annotated[str, typer.Option(help="train or test.")] = "test",
    limit: Annotated[Optional[int], typer.Option(help="Use the first N examples only.")] = None,
    anomaly: Annotated[bool, typer.Option("--anomaly", help="One-class protocol: AUROC of `score` on the split, the run's --classes being normal.")] = False,
    plot: Annotated[Optional[str], typer.Option(metavar="FILE", help="Draw into this .png, .svg or .pdf (needs gentool[plot]): the ROC curve of --anomaly, or the quality curves of several --truncation values.")] = None,
    probe: Annotated[Optional[int], typer.Option(metavar="N", help="Logistic-regression probe on the codes of N labelled training images per class, and k-means NMI; both also on pixels.")] = None,
    samples: Annotated[Optional[int], typer.Option(help="Sample quality instead: draw N samples and compare them with the test split (default for an export: 10000).")] = None,
    features: Annotated[Optional[str], typer.Option(help="With --samples: mnist, fashion-mnist or a features .onnx (default: the model's data).")] = None,
    truncation: Annotated[Optional[str], typer.Option(metavar="T[,T...]", help="Sample quality of draws with latent values within +-T (as `sample --truncation`); several values, 'none' among them for no truncation, give a row each and the curves of --plot.")] = None,
    setting: Annotated[Optional[list[str]], typer.Option(metavar="K=V[,K=V...]", help="Sample quality with these sampler options (e.g. sampler=ddim,steps=10); repeat it for a row each.")] = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = Device.auto,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    options: dict | None = None,
) -> None:
    """Metrics of a trained model on a data split, or the quality of its samples.

    Sample quality with --samples, --truncation or --setting, for an export, and for a family whose
    evaluation it is. The table goes to stdout (`--json`: one object); what it is computing, to
    stderr. The model options follow: each applies to the families its help names."""
    from gentool import files, runs

    files.one_stdout(**{"the table": files.STDOUT_PATHS[0], "--plot": plot})
    path = runs.resolve(run, "model.safetensors", "a checkpoint")
    if samples is not None or truncation is not None or setting or runs.evaluates_samples(path):
        if options or anomaly or probe is not None or limit is not None or split != "test":
            raise UsageError("--samples reports sample quality on the test split alone: drop the model options, --anomaly, --probe, --limit and --split")
        from gentool.runtime import quality

        rows, heading = quality.samples_report(path, device.value, data, samples, features, truncation, seed, plot, setting)
        return console.report_rows(rows, heading, as_json, "setting" if setting else "truncation")
    parts.needs_torch("evaluate")
    from gentool.evaluate import evaluate as run_evaluation

    result = run_evaluation(path, data, split, device.value, limit, seed, anomaly, probe, plot, **options)
    console.report(result, f"{result['model']} on {result['data']} ({result['split']}, n={result['n']})", as_json, ("model", "data", "split", "n"))


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

    All of them (density, coverage, the classifier score too) on a gentool feature network, not Inception."""
    from gentool.runtime import quality

    console.report(*quality.fid(reference, samples, features, limit, seed, device.value), as_json)


@app.command()
def export(
    run: Annotated[str, typer.Argument(help="A run directory, a checkpoint, or a model name (its newest run).")],
    onnx: Annotated[bool, typer.Option("--onnx", help="ONNX graphs: the one format, written with or without this flag.")] = False,
    out: Annotated[Optional[Path], typer.Option("-o", "--out", help="Output directory (default: the run directory).")] = None,
    opset: Annotated[Optional[int], typer.Option(help="ONNX opset (default: the tested one).")] = None,
) -> None:
    """(Re-)export a trained model's graphs, one .onnx per role, with a parity check (--onnx is optional)."""
    parts.needs_torch("export")
    from gentool.export import export_run

    console.out(str(export_run(run, out, opset)))


@app.command("plot")
def plot_figure(
    run: Annotated[str, typer.Argument(help="A run directory or a model name (its newest run); with --latent any artifact with an encoder.")],
    latent: Annotated[bool, typer.Option("--latent", help="Instead: the test split's codes coloured by class (the first two principal components of wider codes).")] = False,
    data: Annotated[Optional[str], typer.Option(help="--latent: the data whose test split is encoded (default: the model's).")] = None,
    limit: Annotated[Optional[int], typer.Option(help="--latent: the first N test images (default 5000).")] = None,
    out: Annotated[Optional[str], typer.Option("-o", "--out", help="A .png, .svg or .pdf file, or '-' for a PNG on stdout (default: results.png, or latent.png, in the run directory).")] = None,
    device: DeviceOpt = Device.auto,
) -> None:
    """Draw a run's training curves (results.png), or a scatter of its test codes (--latent).

    Training writes results.png itself when matplotlib is installed (pip install 'gentool[plot]')."""
    from gentool import plots
    from gentool.files import STDOUT_PATHS

    target = plots.figure(run, latent, device.value, data, limit, out)
    if target not in STDOUT_PATHS:  # else the PNG itself went to stdout
        console.out(target)


@app.command()
@parts.sampler_options("sample")
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
    check_count("-n", n, MAX_IMAGES)
    art, run = parts.open_artifact(artifact, device, "sample", options)
    parts.write_images(art, run(art, n, seed, parts.labels(art, label, n)), out, nrow)


@app.command()
def reconstruct(
    artifact: ArtifactArg,
    paths: Annotated[list[str], typer.Argument(metavar="INPUTS", help="Images (PNG/JPEG paths, or '-' for stdin).")],
    out: OutOpt = None,
    device: DeviceOpt = Device.auto,
) -> None:
    """Encode and decode images; several inputs give a grid in input order."""
    art, run = parts.open_artifact(artifact, device, "reconstruct")
    parts.write_images(art, run(art, inputs.batch(art, paths)), out)


@app.command()
def encode(
    artifact: ArtifactArg,
    paths: Annotated[list[str], typer.Argument(metavar="INPUTS", help="Images (PNG/JPEG paths, or '-' for stdin).")],
    out: OutOpt = None,
    fmt: Annotated[CodeFormat, typer.Option("--format", help="auto: from the -o suffix (.npy, .csv), else JSON lines.")] = CodeFormat.auto,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines on stdout (same as --format json).")] = False,
    device: DeviceOpt = Device.auto,
) -> None:
    """Latent codes of images: JSON lines (one per input), CSV, or .npy."""
    from gentool.runtime import codes

    art, run = parts.open_artifact(artifact, device, "encode")
    codes.write(run(art, inputs.batch(art, paths)), paths, out, "json" if as_json else fmt.value)


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

    art, run = parts.open_artifact(artifact, device, "decode")
    parts.write_images(art, run(art, codes.read(codes_in)), out, nrow)


@app.command()
@parts.sampler_options("interpolate")
def interpolate(
    artifact: ArtifactArg,
    ends: Annotated[Optional[list[str]], typer.Argument(metavar="[A B]", help="Two images to go between.")] = None,
    seeds: Annotated[Optional[str], typer.Option(help="Instead of images: two seeds 'A,B' whose prior draws are the ends.")] = None,
    steps: Annotated[int, typer.Option(help="Images in the strip, both ends included.")] = 8,
    slerp: Annotated[bool, typer.Option("--slerp", help="Spherical interpolation (keeps Gaussian codes at a typical norm).")] = False,
    label: LabelOpt = None,
    out: OutOpt = None,
    device: DeviceOpt = Device.auto,
    options: dict | None = None,
) -> None:
    """A strip of images between two latent codes (or two seeds' initial noise, for diffusion)."""
    check_count("--steps", steps, MAX_STEPS, least=2)
    art, run = parts.open_artifact(artifact, device, "interpolate", options)
    ends_given = inputs.batch(art, ends) if ends else None
    pair = None if seeds is None else values.seeds("--seeds", seeds, 2)
    parts.write_images(art, run(art, ends_given, pair, steps, slerp, parts.labels(art, label, steps)), out, nrow=steps)


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

    art, run = parts.open_artifact(artifact, device, "arithmetic")
    seeds = [[values.seeds(option, text) for text in texts or []] for option, texts in (("--plus-seeds", plus_seeds), ("--minus-seeds", minus_seeds))]
    terms = latent.arithmetic_terms(art, plus or [], minus or [], *seeds)
    count = len(terms[0]) + len(terms[1]) + 1
    parts.write_images(art, run(art, *terms, parts.labels(art, label, count)), out, nrow=count)


@app.command()
def manifold(
    artifact: ArtifactArg,
    size: Annotated[int, typer.Option(help="Grid side (size x size images).")] = 20,
    dims: Annotated[Optional[str], typer.Option(help="The two latent dimensions to sweep, 'I,J' (default: the two most active where the model records it, else 0,1).")] = None,
    out: OutOpt = None,
    device: DeviceOpt = Device.auto,
) -> None:
    """The learned-manifold picture: decoded prior quantiles over two latent dimensions."""
    from gentool.runtime import latent

    check_count("--size", size, MAX_SIDE, least=2)
    art, run = parts.open_artifact(artifact, device, "manifold")
    pair = latent.most_active_dims(art) if dims is None else parts.int_pair("--dims", dims)
    parts.write_images(art, run(art, size, pair), out, nrow=size)
    if dims is None:
        console.err(f"manifold: dims {pair[0]},{pair[1]}")


@app.command()
@parts.sampler_options("score")
def score(
    artifact: ArtifactArg,
    paths: Annotated[list[str], typer.Argument(metavar="INPUTS", help="Images (PNG/JPEG paths, or '-' for stdin).")],
    as_json: Annotated[bool, typer.Option("--json", help='JSON lines {"input", "score", "kind"} on stdout.')] = False,
    seed: SeedOpt = 0,
    device: DeviceOpt = Device.auto,
    options: dict | None = None,
) -> None:
    """Anomaly score per image, higher = more anomalous, and its kind (e.g. -ELBO in nats, reconstruction MSE)."""
    art, run = parts.open_artifact(artifact, device, "score", options)
    console.scores(paths, *run(art, inputs.batch(art, paths), seed), as_json)


@app.command()
@parts.sampler_options("denoise")
def denoise(
    image: Annotated[str, typer.Argument(metavar="IN", help="A PNG/JPEG image of any size (a path, or '-' for stdin).")],
    out: OutOpt = None,
    model: Annotated[Optional[str], typer.Option(help="A denoiser or diffusion artifact: run or export directory, .onnx, or model name (default: the bundled denoiser).")] = None,
    device: DeviceOpt = Device.auto,
    options: dict | None = None,
) -> None:
    """Remove noise from an image of any size (a diffusion model: of its own size).

    A grayscale model (like the bundled one) denoises each channel of a colour image as a grayscale
    image."""
    from gentool.runtime import image_to_image

    art, run = parts.open_artifact(model or str(image_to_image.bundled_denoiser()), device, "denoise", options)
    parts.write_images(art, run(art, inputs.any_size(art, image))[None], out)


@app.command()
@parts.sampler_options("complete")
def complete(
    artifact: ArtifactArg,
    paths: Annotated[list[str], typer.Argument(metavar="INPUTS", help="Images (PNG/JPEG paths, or '-' for stdin).")],
    mask: Annotated[Optional[str], typer.Option(help="A PNG/JPEG mask: white where the model draws, black where the input is kept.")] = None,
    keep: Annotated[Optional[Side], typer.Option(help="Instead of --mask: keep this half of each input and draw the rest.")] = None,
    n: Annotated[int, typer.Option("-n", help="Completions per input (a row of the grid each).")] = 1,
    seed: SeedOpt = 0,
    out: OutOpt = None,
    device: DeviceOpt = Device.auto,
    options: dict | None = None,
) -> None:
    """Fill in the unknown part of images (inpainting): keep what the mask keeps, draw the rest."""
    check_count("-n", n, MAX_IMAGES)
    art, run = parts.open_artifact(artifact, device, "complete", options)
    images = inputs.batch(art, paths)
    parts.write_images(art, run(art, images, inputs.kept_region(art, mask, keep and keep.value), n, seed), out, nrow=n)


@app.command()
def upscale(
    image: Annotated[str, typer.Argument(metavar="IN", help="A PNG/JPEG image of any size (a path, or '-' for stdin).")],
    factor: Annotated[Optional[int], typer.Option(help="Scale factor (default: the model's own; the bundled model does 2).")] = None,
    out: OutOpt = None,
    model: Annotated[Optional[str], typer.Option(help="An upscaler artifact: run or export directory, .onnx, or model name (default: the bundled upscaler).")] = None,
    device: DeviceOpt = Device.auto,
) -> None:
    """Enlarge an image of any size with a super-resolution model.

    A grayscale model (like the bundled one) upscales each channel of a colour image as a grayscale
    image."""
    from gentool.runtime import image_to_image

    check_count("--factor", factor or 2, least=2)
    art, run = parts.open_artifact(model or str(image_to_image.bundled_upscaler(factor or 2)), device, "upscale")
    parts.write_images(art, run(art, inputs.any_size(art, image), factor)[None], out)


def main() -> None:
    from gentool.files import guard_standard_streams, pin_directories
    from gentool.progress import unwind_on_sigterm

    guard_standard_streams()
    pin_directories()
    unwind_on_sigterm()
    try:
        code = app(standalone_mode=False)
    except Exception as e:
        if _state["debug"] and not isinstance(e, (typer.Exit, typer.Abort)):
            raise
        code = exit_code(e)
    sys.exit(code or 0)
