"""Figures as PNG files, drawn with matplotlib (the `plot` extra), never on the inference path:
a run's training curves (`results.png`), the ROC curve of `evaluate --anomaly`, a scatter of test
codes coloured by class, and sample quality against truncation (`evaluate --truncation ... --plot`). Torch-free; each figure is written whole or not at all, with the
gentool version in its PNG text.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from gentool import __version__, files
from gentool.errors import UsageError


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise UsageError("plots need matplotlib: pip install 'gentool[plot]'") from None
    matplotlib.use("Agg")  # files only: no display is needed or opened
    import matplotlib.pyplot as plt

    return plt


FORMATS = (".png", ".svg", ".pdf")  # by the output's suffix; stdout gets PNG


def check_target(out: str | Path) -> None:
    """Fail before any work is done: without matplotlib, or for a file type figures are not written as."""
    _pyplot()
    if str(out) not in files.STDOUT_PATHS and Path(out).suffix.lower() not in FORMATS:
        raise UsageError(f"figures are written as {', '.join(FORMATS)}, not '{Path(out).suffix or out}'")


def _save(figure, out: str | Path) -> None:
    check_target(out)
    kind = "png" if str(out) in files.STDOUT_PATHS else Path(out).suffix.lower()[1:]
    buffer = io.BytesIO()
    maker = f"gentool {__version__}"
    figure.savefig(buffer, format=kind, dpi=110, metadata={"Software": maker} if kind == "png" else {"Creator": maker})
    _pyplot().close(figure)
    if str(out) in files.STDOUT_PATHS:
        files.write_stdout(buffer.getvalue())
    else:
        files.atomic_write(Path(out), buffer.getvalue())


PLOTTABLE = 1e100  # beyond this a value is not a figure but a diverged run's overflow


def curves(rows: list[dict]) -> dict[str, dict[str, list]]:
    """Panel name -> {'train'/'test'/'': (epochs, values)}: each loss term with its train and test
    values, and the quick FID on its own. Only numbers are drawn, and only those a plot can scale
    to (a diverged run's NaN, inf or 1e308 would break its axes)."""
    panels: dict[str, dict[str, list]] = {}
    for row in rows:
        for key, value in row.items():
            if key in ("epoch", "seconds") or isinstance(value, bool) or not isinstance(value, (int, float)) or not abs(value) < PLOTTABLE:
                continue
            split, _, name = key.partition("_") if key.startswith(("train_", "test_")) else ("", "", key)
            epochs, values = panels.setdefault(name, {}).setdefault(split, ([], []))
            epochs.append(row["epoch"])
            values.append(value)
    return panels


def training_curves(run: Path, out: str | Path) -> None:
    """`results.png`: one panel per loss term (train and test per epoch), and the quick FID."""
    plt = _pyplot()
    from gentool.runs import read_metrics

    rows = read_metrics(run)
    if not rows:
        raise UsageError(f"'{Path(run) / 'metrics.jsonl'}' has no epochs yet")
    panels = curves(rows)
    if not panels:
        raise UsageError(f"'{Path(run) / 'metrics.jsonl'}' has no figures to draw (no finite losses in any epoch)")
    columns = min(len(panels), 3)
    figure, axes = plt.subplots(math.ceil(len(panels) / columns), columns, figsize=(4.2 * columns, 3.2 * math.ceil(len(panels) / columns)),
                                squeeze=False)
    for ax, (name, series) in zip(axes.flat, panels.items()):
        for split, (epochs, values) in series.items():
            ax.plot(epochs, values, marker="o", markersize=3, label=split or name)
        ax.set_title(name if len(series) > 1 else f"{next(iter(series))} {name}".strip())
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        if len(series) > 1:
            ax.legend()
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    figure.suptitle(str(run))
    figure.tight_layout()
    _save(figure, out)


def roc_curve(out: str | Path, fpr: np.ndarray, tpr: np.ndarray, auroc: float, title: str) -> None:
    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(4.6, 4.4))
    ax.plot(fpr, tpr, label=f"AUROC {auroc:.3f}")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="chance")
    ax.set(xlabel="false positive rate (normal flagged)", ylabel="true positive rate (anomalies found)", title=title,
           xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    figure.tight_layout()
    _save(figure, out)


def project_2d(codes: np.ndarray) -> tuple[np.ndarray, tuple[str, str]]:
    """The codes themselves when they are 2-D, else their first two principal components; and the
    axes' names."""
    if codes.shape[1] == 2:
        return codes, ("code 1", "code 2")
    centred = codes - codes.mean(0)
    _, singular, basis = np.linalg.svd(centred, full_matrices=False)
    share = singular**2 / (singular**2).sum()
    return centred @ basis[:2].T, (f"principal component 1 ({share[0]:.0%} of the variance)",
                                   f"principal component 2 ({share[1]:.0%})")


def latent_scatter(out: str | Path, codes: np.ndarray, labels: np.ndarray | None, class_names: list[str] | None, title: str) -> None:
    plt = _pyplot()
    points, (x_name, y_name) = project_2d(np.asarray(codes, np.float64))
    figure, ax = plt.subplots(figsize=(6.2, 5.2))
    if labels is None:
        ax.scatter(points[:, 0], points[:, 1], s=3, alpha=0.6)
    else:
        colours = plt.get_cmap("tab10" if len(class_names or []) <= 10 else "tab20")
        for index in np.unique(labels):
            mine = labels == index
            name = class_names[index] if class_names else str(index)
            ax.scatter(points[mine, 0], points[mine, 1], s=3, alpha=0.6, color=colours(index % colours.N), label=name)
        ax.legend(markerscale=4, fontsize="small", loc="center left", bbox_to_anchor=(1, 0.5))
    ax.set(xlabel=x_name, ylabel=y_name, title=title)
    figure.tight_layout()
    _save(figure, out)


def quality_curves(out: str | Path, rows: list[dict], title: str) -> None:
    """FID, and precision, recall, density and coverage, against the truncation of the latent draws;
    a row without truncation sits at the right end, marked 'none'."""
    plt = _pyplot()
    finite = [r["truncation"] for r in rows if r["truncation"] is not None]
    untruncated = 1.25 * max(finite, default=2.0)
    ordered = sorted(rows, key=lambda r: untruncated if r["truncation"] is None else r["truncation"])
    x = [untruncated if r["truncation"] is None else r["truncation"] for r in ordered]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    left.plot(x, [r["fid"] for r in ordered], marker="o")
    left.set(title="FID (lower is better)", ylabel="fid")
    for key in ("precision", "recall", "density", "coverage"):
        right.plot(x, [r[key] for r in ordered], marker="o", label=key)
    right.set(title="precision, recall, density, coverage")
    right.legend(fontsize="small")
    for ax in (left, right):
        ax.set_xticks(x, [("none" if r["truncation"] is None else f"{r['truncation']:g}") for r in ordered])
        ax.set_xlabel("truncation (latent values within +-T)")
        ax.grid(alpha=0.3)
    figure.suptitle(title, fontsize="medium")
    figure.tight_layout()
    _save(figure, out)


SCATTER_POINTS = 5_000  # test images in `plot --latent` unless a limit says otherwise


def latent_figure(path: Path, device: str, data_spec: str | None, limit: int | None, out: str | None) -> str:
    """`plot --latent`: the test split's codes under the artifact at `path`, coloured by class, into
    `out` (default: latent.png beside the graphs); returns where it went."""
    from gentool import data
    from gentool.errors import check_count
    from gentool.runtime import latent, verbs
    from gentool.runtime.artifact import Artifact

    check_count("--limit", SCATTER_POINTS if limit is None else limit)
    graphs = Artifact(str(path), device)
    encode = verbs.find(graphs, "encode")
    source = data_spec or graphs.meta.get("data")
    if not source:
        raise UsageError("this artifact does not say what data it was trained on: pass --data")
    split = data.check_shape(data.load(source, "test", limit or SCATTER_POINTS), graphs.image_shape, "test")
    codes = latent.code_of(encode(graphs, split.images / np.float32(255)))
    target = out or str((path if path.is_dir() else path.parent) / "latent.png")
    latent_scatter(target, codes, split.labels, split.classes, f"{graphs.model} codes of {split.name} test ({len(split)} images)")
    return target


def figure(run: str, latent: bool, device: str, data_spec: str | None, limit: int | None, out: str | None) -> str:
    """`gentool plot RUN [--latent]`: the run's training curves, or (`latent`) the scatter of its
    test codes, into `out` (checked first; default beside the run); returns where it went."""
    from gentool import runs

    if out is not None:
        check_target(out)
    path = runs.resolve(run, "encoder.onnx" if latent else "metrics.jsonl", "an encoder" if latent else "training metrics")
    if latent:
        return latent_figure(path, device, data_spec, limit, out)
    if limit is not None or data_spec is not None:
        raise UsageError("--limit and --data go with --latent")
    target = out or str(path / "results.png")
    training_curves(path, target)
    return target
