"""Sample quality, torch-free: image sets through a `features` graph, compared by `gentool.metrics`.

The feature networks are gentool's own `classifier` models (bundled per dataset, or any `features`
graph with gentool metadata), never Inception: the figures are "gentool FID (mnist features)", not
comparable with Inception FIDs, nor across feature networks.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from gentool import files, metrics, progress
from gentool.errors import UsageError, check_count
from gentool.runtime import ASSETS, verbs
from gentool.runtime.artifact import Artifact, Graphs
from gentool.runtime.declaration import Role, Sampler, Tensor

BUNDLED_FEATURES = {"mnist": ASSETS / "features-mnist.onnx", "fashion-mnist": ASSETS / "features-fashion-mnist.onnx"}
SAMPLES = 10_000
MAX_SAMPLES = 100_000  # what one `evaluate --samples` draws at most
# images per feature pass; a longer set shows a progress bar on a terminal
CHUNK = 2_000


def feature_network(spec: str, device: str = "auto") -> tuple[Artifact, str]:
    """A bundled network by dataset name, or a path to a `features` graph; and the name it goes by."""
    if spec in BUNDLED_FEATURES:
        path = BUNDLED_FEATURES[spec]
        if not path.is_file():
            raise UsageError(f"this gentool has no bundled {spec} feature network ({path} is missing): pass --features PATH.onnx")
        return Artifact(str(path), device), spec
    graphs = Artifact(spec, device)
    if "features" not in graphs.roles:
        raise UsageError(f"'{spec}' has no features graph (it has {', '.join(graphs.roles)}): --features takes mnist, fashion-mnist or a classifier's features.onnx")
    return graphs, Path(spec).name


MAX_FEATURES = 4096  # Inception's pool features are 2,048; a 4,096 x 4,096 covariance is 128 MiB


def features(graphs: Graphs, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Images (N, C, H, W) in [0, 1] of the network's image shape -> features (N, D) and logits (N, K)
    (None for a network without them)."""
    if tuple(images.shape[1:]) != graphs.image_shape:
        raise UsageError(f"the feature network takes images of shape {list(graphs.image_shape)}, not {list(images.shape[1:])}")
    starts = range(0, len(images), CHUNK)
    if len(images) > CHUNK:
        starts = progress.track(starts, "features")
    parts = []
    for i in starts:
        part = graphs.run("features", {"x": np.asarray(images[i : i + CHUNK], np.float32)})
        if not parts and part["features"].shape[1] > MAX_FEATURES:  # before the N x D features and the D x D covariances
            raise UsageError(f"the feature network gives {part['features'].shape[1]:,} features an image; "
                             f"gentool takes at most {MAX_FEATURES:,} (the FID needs a D x D covariance)")
        parts.append(part)
    logits = np.concatenate([p["logits"] for p in parts]) if "logits" in parts[0] else None
    return np.concatenate([p["features"] for p in parts]).astype(np.float64), logits


def compare(real: np.ndarray, fake: np.ndarray, fake_logits: np.ndarray | None = None,
            labels: np.ndarray | None = None, seed: int = 0, radii: dict | None = None) -> dict[str, float]:
    """The suite's figures for generated features against real ones: fid, kid (+ kid_std), precision,
    recall, density, coverage; from the logits of the generated images `classifier_score`, and with
    the labels they were drawn for `label_accuracy`. `radii`: the real set's `metrics.real_radii`,
    when several generated sets are compared with one real set."""
    kid, kid_std = metrics.kernel_inception_distance(real, fake, seed=seed)
    out = {"fid": metrics.frechet_distance(*metrics.gaussian_stats(real), *metrics.gaussian_stats(fake)),
           "kid": kid, "kid_std": kid_std, **metrics.manifold_metrics(real, fake, radii)}
    if fake_logits is not None:
        out["classifier_score"] = metrics.classifier_score(fake_logits)
        if labels is not None:
            out["label_accuracy"] = metrics.label_accuracy(fake_logits, labels)
    return out


def network_key(network: Artifact) -> str:
    """What identifies a feature network in the cache: a hash of its file's bytes."""
    return hashlib.sha256(network.files["features"].read_bytes()).hexdigest()


def split_features(network: Artifact, key: str, data_name: str, split: str, limit: int | None = None) -> np.ndarray:
    """The features of a real split (its first `limit` images, converted to the network's channels
    and size with a note when they differ), computed once and cached, keyed by the network's `key`,
    the data (its files' paths, sizes and modification times), the split and limit."""
    from gentool import data, inputs

    digest = hashlib.sha256(json.dumps([key, data.signature(data_name), split, limit]).encode())
    path = data.cache_dir() / "features" / f"{digest.hexdigest()[:24]}.npy"
    if path.is_file():
        return np.load(path)
    dataset = data.load(data_name, split, limit)
    found = features(network, inputs.conformed(dataset, network.image_shape) / np.float32(255))[0].astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    with files.atomic_path(path) as tmp:
        np.save(tmp, found)
    return found


def conditional_labels(graphs: Graphs, n: int) -> np.ndarray | None:
    """The labels `sample` draws for (cycling through the classes) when the model is conditional."""
    if any("label" in graphs.input_names(role) for role in graphs.roles):
        return np.arange(n) % len(graphs.need("classes", "evaluate"))
    return None


def evaluate_generator(graphs: Graphs, n: int, seed: int, network: Artifact, network_name: str, data_name: str | None = None,
                       options: dict | None = None) -> dict:
    """`n` samples drawn with the artifact's own sampler (with its `options`, each reported beside
    the figures) against its data's test split (or `data_name`'s), with the floor
    `fid_train_vs_test`: the first min(n, test size) real training images against the test split."""
    return evaluate_settings(graphs, n, seed, network, network_name, data_name, [options or {}])[0]


def evaluate_settings(graphs: Graphs, n: int, seed: int, network: Artifact, network_name: str, data_name: str | None,
                      settings: list[dict]) -> list[dict]:
    """`evaluate_generator` for each setting of the sampler's options, the real features and the
    floor taken once."""
    data_name = data_name or graphs.meta.get("data")
    if not data_name:
        raise UsageError("this artifact does not say what data it was trained on: pass --data")
    samplers = [verbs.find(graphs, "sample", options=options) for options in settings]  # usage errors before the long part
    labels = conditional_labels(graphs, n)
    key = network_key(network)
    with progress.stage(f"features of the real {data_name} images"):
        test = split_features(network, key, data_name, "test")
        train = split_features(network, key, data_name, "train", min(n, len(test)))
    floor = metrics.frechet_distance(*metrics.gaussian_stats(train), *metrics.gaussian_stats(test))
    radii = metrics.real_radii(test) if len(settings) > 1 else None  # once for every row
    rows = []
    for options, sample in zip(settings, samplers):
        with progress.stage(f"drawing {n} samples" + (f" ({setting_name(options)})" if options else "")):
            started = time.perf_counter()
            images = sample(graphs, n, seed, labels)
            seconds = time.perf_counter() - started
        fake, logits = features(network, images)
        with progress.stage("fid, kid, precision, recall, density, coverage"):
            rows.append({"model": graphs.model, "data": data_name, "split": "test", "samples": n, "features": network_name,
                         **options,
                         **compare(test, fake, logits, labels, seed, radii), "fid_train_vs_test": floor,
                         "seconds_per_1000": seconds * 1000 / n})
    return rows


def quick_fid(graphs: Graphs, network: Artifact, real: np.ndarray, seed: int, options: dict) -> float:
    """FID of as many samples as `real` has rows (the features of real test images), drawn from
    `seed` with the sampler's `options`."""
    labels = conditional_labels(graphs, len(real))
    fake, _ = features(network, verbs.find(graphs, "sample", options=options)(graphs, len(real), seed, labels))
    return metrics.frechet_distance(*metrics.gaussian_stats(real), *metrics.gaussian_stats(fake))


def sample_quality(spec: str, device: str, data_name: str | None, n: int | None, features_spec: str | None,
                   settings: list[dict], seed: int) -> tuple[list[dict], str]:
    """`evaluate --samples`: a row of figures per setting of the sampler's options, and the heading
    that says what was compared. The feature network: `features_spec`, else the data's bundled one."""
    n = SAMPLES if n is None else n
    check_count("--samples", n, MAX_SAMPLES)
    graphs = Artifact(spec, device)
    wanted = features_spec or data_name or graphs.meta.get("data")
    if features_spec is None and wanted not in BUNDLED_FEATURES:
        raise UsageError(f"gentool bundles feature networks for {', '.join(BUNDLED_FEATURES)}, not '{wanted}': pass --features PATH.onnx")
    network, name = feature_network(wanted, device)
    rows = evaluate_settings(graphs, n, seed, network, name, data_name, settings)
    return rows, f"gentool FID ({name} features): {n} samples of {spec} against {rows[0]['data']} test"


def sampler_settings(texts: list[str]) -> list[dict]:
    """`evaluate --setting sampler=ddim,steps=10 --setting ...` as the sample options of each row,
    each value of the type the sampler modules declare for it ('none': the option's default)."""
    declared = verbs.options("sample")
    rows = []
    for text in texts:
        row = {}
        for item in text.split(","):
            name, _, value = (part.strip() for part in item.partition("="))
            key = name.lstrip("-").replace("-", "_")
            if key not in declared or not value:
                raise UsageError(f"--setting takes NAME=VALUE pairs of sampler options ({', '.join(sorted(declared))}), got '{item}'")
            option = declared[key][0]
            try:
                row[key] = None if value.lower() == "none" else option.type(value)
            except ValueError:
                kind = {int: "a whole number", float: "a number"}.get(option.type, "text")
                raise UsageError(f"--setting {name} takes {kind}, got '{value}'") from None
        rows.append(row)
    return rows


def setting_name(options: dict) -> str:
    """A row's sampler options as `--setting` writes them: 'sampler=ddim,steps=10'."""
    return ",".join(f"{k}={'none' if v is None else v}" for k, v in options.items()) or "defaults"


def samples_report(path: Path, device: str, data_name: str | None, n: int | None, features_spec: str | None,
                   truncation: str | None, seed: int, plot: str | None, settings_given: list[str] | None = None) -> tuple[list[dict], str]:
    """`evaluate --samples [--truncation T,... | --setting K=V,...] [--plot FILE]` of the artifact at
    `path` (a checkpoint: the graphs beside it): the rows of `sample_quality`, one per truncation
    value or setting, with the truncation curves drawn into `plot` (which needs several values)."""
    from gentool import plots
    from gentool.runtime import latent

    if truncation is not None and settings_given:
        raise UsageError("give --truncation values or --setting rows, not both (a setting may hold truncation=T)")
    if plot and settings_given:
        raise UsageError("--plot draws sample quality against --truncation values, not --setting rows")
    settings = sampler_settings(settings_given) if settings_given else latent.truncation_settings(truncation)
    if plot:
        if len(settings) < 2:
            raise UsageError("--plot draws sample quality against truncation: give several --truncation values (e.g. 0.5,1,1.5,2,none)")
        plots.check_target(plot)
    rows, heading = sample_quality(str(path.parent if path.suffix == ".safetensors" else path), device, data_name, n, features_spec, settings, seed)
    if settings_given:
        rows = [{"setting": setting_name(options), **row} for options, row in zip(settings, rows)]
    if plot:
        plots.quality_curves(plot, rows, heading)
    return rows, heading


def fid(reference: str, samples: str, features_spec: str | None, limit: int | None, seed: int, device: str) -> tuple[dict, str]:
    """`gentool fid`: the suite's figures of one image set against another, and the heading. The
    feature network: `features_spec`, else the bundled one of a dataset either set names."""
    from gentool import data, inputs

    features_spec = features_spec or next((s.split(":")[0] for s in (reference, samples) if s.split(":")[0] in BUNDLED_FEATURES), None)
    if features_spec is None:
        raise UsageError("name the feature network: --features mnist (for digits), fashion-mnist (for clothing), or PATH.onnx "
                         "for other images (the features.onnx of `gentool train classifier --data YOUR-DATA`)")
    network, name = feature_network(features_spec, device)
    if limit is not None:
        check_count("--limit", limit)
    sets = [data.image_set(spec, limit) for spec in (reference, samples)]
    real, fake = (features(network, inputs.conformed(s, network.image_shape) / np.float32(255)) for s in sets)
    result = {"features": name, "n_reference": len(sets[0]), "n_samples": len(sets[1]), **compare(real[0], fake[0], fake[1], seed=seed)}
    return result, f"gentool FID ({name} features): {samples} against {reference}"

SAMPLER = Sampler(
    name="features",
    roles={"features": Role(inputs=(Tensor("x", "N C H W"),),
                            outputs=((Tensor("features", "N D"),), (Tensor("features", "N D"), Tensor("logits", "N K"))))},
)
