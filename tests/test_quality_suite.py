"""The sample-quality suite: the classifier family (feature networks), `gentool fid`, image sets."""

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import gentool
from gentool import data, metrics
from gentool.errors import UsageError
from gentool.runtime import quality
from gentool.runtime.artifact import Artifact


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """A narrow classifier trained for one epoch (64 steps) on 4,096 MNIST images."""
    run = tmp_path_factory.mktemp("classifier") / "run"
    gentool("train", "classifier", "--data", "mnist", "--limit", "4096", "--epochs", "1", "--batch-size", "64", "--lr", "1e-2",
            "--width", "8", "--out", run)
    return run


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """1,000 MNIST test images, 1,000 training images, and the test images with Gaussian noise, as .npy."""
    root = tmp_path_factory.mktemp("sets")
    test, train = data.load("mnist", "test", 1000).images, data.load("mnist", "train", 1000).images
    noisy = np.clip(test / 255 + 0.3 * np.random.default_rng(0).standard_normal(test.shape), 0, 1).astype(np.float32)
    for name, images in (("test", test), ("train", train), ("noisy", noisy)):
        np.save(root / f"{name}.npy", images)
    return root


def test_classifier_learns_and_exports_features_and_logits(classifier):
    result = json.loads(gentool("evaluate", classifier, "--limit", "1000", "--json").stdout)
    assert result["accuracy"] > 0.6 and result["cross_entropy_nats"] < 1.5
    art = Artifact(str(classifier), "cpu")
    assert art.roles == ["features"]
    features, logits = quality.features(art, data.load("mnist", "test", 5).images / np.float32(255))
    assert features.shape == (5, 32) and logits.shape == (5, 10)


def test_classifier_needs_labels(tmp_path):
    np.save(tmp_path / "unlabelled.npy", np.zeros((64, 28, 28), np.uint8))
    proc = gentool("train", "classifier", "--data", tmp_path / "unlabelled.npy", check=False)
    assert proc.returncode == 2 and "a classifier trains on labelled data" in proc.stderr


def test_fid_torch_free_ranks_noise_above_other_real_images(classifier, sets):
    features = str(classifier / "features.onnx")
    same = json.loads(gentool("fid", sets / "test.npy", sets / "train.npy", "--features", features, "--json", torch_free=True).stdout)
    noisy = json.loads(gentool("fid", sets / "test.npy", sets / "noisy.npy", "--features", features, "--json", torch_free=True).stdout)
    keys = {"features", "n_reference", "n_samples", "fid", "kid", "kid_std", "precision", "recall", "density", "coverage", "classifier_score"}
    assert same.keys() == keys and same["features"] == "features.onnx" and same["n_samples"] == 1000
    assert noisy["fid"] > 5 * same["fid"] and noisy["kid"] > same["kid"] and noisy["precision"] < same["precision"]
    assert 0.7 < same["precision"] <= 1 and 0.7 < same["recall"] <= 1 and 0.7 < same["coverage"] <= 1
    human = gentool("fid", sets / "test.npy", sets / "train.npy", "--features", features, torch_free=True)
    assert "gentool FID (features.onnx features)" in human.stdout.decode() and "fid" not in human.stderr


def test_fid_converts_a_set_of_another_kind_with_a_note(classifier, sets, tmp_path):
    """RGB 32x32 copies of the test images are converted back (luma, Lanczos) as the other verbs
    convert an image, to within rounding and the resampling's blur."""
    from PIL import Image

    from conftest import psnr
    from gentool import images

    original = np.load(sets / "test.npy")[:50]
    (tmp_path / "rgb").mkdir()
    for i, image in enumerate(original[:, 0]):
        Image.fromarray(image).convert("RGB").resize((32, 32), Image.Resampling.LANCZOS).save(tmp_path / "rgb" / f"{i:02d}.png")
    converted, notes = images.conform(data.image_set(str(tmp_path / "rgb")).images, (1, 28, 28), "rgb")
    assert notes == ["rgb: RGB converted to grayscale", "rgb: resized 32x32 -> 28x28"]
    assert converted.shape == original.shape and min(psnr(a[0] / 255, b[0] / 255) for a, b in zip(converted, original)) > 25
    proc = gentool("fid", sets / "train.npy", tmp_path / "rgb", "--features", classifier / "features.onnx", "--json", torch_free=True)
    assert proc.stderr.splitlines()[:2] == ["note: " + note for note in notes] and json.loads(proc.stdout)["n_samples"] == 50


def test_fid_bad_input(classifier, sets, tmp_path):
    proc = gentool("fid", sets / "test.npy", sets / "train.npy", torch_free=True, check=False)
    assert proc.returncode == 2 and "name the feature network" in proc.stderr
    proc = gentool("fid", sets / "test.npy", sets / "train.npy", "--features", classifier / "metrics.jsonl", torch_free=True, check=False)
    assert proc.returncode == 2 and "is not an .onnx file" in proc.stderr


def test_image_sets():
    assert len(data.image_set("mnist")) == 10000 and len(data.image_set("mnist:train")) == 60000 == len(data.image_set("mnist:train", 90000))
    assert len(data.image_set("mnist:train", 5)) == 5
    with pytest.raises(UsageError, match="unknown dataset"):
        data.image_set("nothing-here")


def test_image_set_of_a_path_is_all_of_it(tmp_path):
    np.savez(tmp_path / "split.npz", x_train=np.zeros((30, 8, 8), np.uint8), x_test=np.ones((5, 8, 8), np.uint8))
    np.save(tmp_path / "flat.npy", np.zeros((50, 8, 8), np.uint8))
    assert len(data.image_set(str(tmp_path / "split.npz"))) == 35 and len(data.image_set(f"{tmp_path}/split.npz:test")) == 5
    assert len(data.image_set(str(tmp_path / "flat.npy"))) == 50 and len(data.image_set(f"{tmp_path}/flat.npy:test")) == 5
    np.savez(tmp_path / "mixed.npz", x_train=np.zeros((30, 8, 8), np.uint8), x_test=np.ones((5, 9, 9), np.uint8))
    with pytest.raises(UsageError, match="different shapes"):
        data.image_set(str(tmp_path / "mixed.npz"))


def test_evaluate_samples_of_a_run_and_of_an_export_torch_free(runs, classifier, tmp_path):
    import os
    import shutil

    features = str(classifier / "features.onnx")
    args = ["--samples", "300", "--features", features, "--json"]
    cache = list((Path(os.environ["GENTOOL_CACHE_DIR"]) / "features").glob("*.npy"))
    result = json.loads(gentool("evaluate", runs["vae"], *args, torch_free=True).stdout)
    assert result["model"] == "vae" and result["samples"] == 300 and result["data"] == "mnist" and result["features"] == "features.onnx"
    assert {"fid", "kid", "kid_std", "precision", "recall", "density", "coverage", "classifier_score", "fid_train_vs_test"} <= result.keys()
    assert result["fid_train_vs_test"] < result["fid"] and "label_accuracy" not in result
    cached = set((Path(os.environ["GENTOOL_CACHE_DIR"]) / "features").glob("*.npy")) - set(cache)
    assert len(cached) == 2  # the test split, and the first 300 training images
    for path in ("encoder.onnx", "decoder.onnx"):
        (tmp_path / "export").mkdir(exist_ok=True)
        shutil.copy(runs["vae"] / path, tmp_path / "export")
    again = json.loads(gentool("evaluate", tmp_path / "export", *args, torch_free=True).stdout)
    assert untimed(again) == untimed(result)  # the same draws, and the cached real features
    proc = gentool("evaluate", runs["vae"], "--samples", "300", "--probe", "10", check=False)
    assert proc.returncode == 2 and "--samples reports sample quality" in proc.stderr
    proc = gentool("evaluate", tmp_path / "export", "--samples", "300", "--data", tmp_path, torch_free=True, check=False)
    assert proc.returncode == 2 and "pass --features PATH.onnx" in proc.stderr


def untimed(row: dict) -> dict:
    """A sample-quality row less the one figure that is a measured time."""
    assert row["seconds_per_1000"] > 0
    return {k: v for k, v in row.items() if k != "seconds_per_1000"}


def test_sample_quality_against_truncation(runs, tmp_path):
    args = ["evaluate", runs["vae"], "--samples", "100", "--json"]
    rows = [json.loads(line) for line in gentool(*args, "--truncation", "0.3,none", "--plot", tmp_path / "curve.png",
                                                 torch_free=True).stdout.splitlines()]
    assert [r["truncation"] for r in rows] == [0.3, None] and (tmp_path / "curve.png").stat().st_size > 10_000
    untruncated = json.loads(gentool(*args, torch_free=True).stdout)
    assert untimed({k: v for k, v in rows[1].items() if k != "truncation"}) == untimed(untruncated) and "truncation" not in untruncated
    assert rows[0]["fid"] != untruncated["fid"]
    assert untimed(json.loads(gentool(*args, "--truncation", "0.3", torch_free=True).stdout)) == untimed(rows[0])
    for bad, message in [("0", "must be positive numbers"), ("0.5,inf", "must be positive numbers"), ("x", "positive numbers or 'none'")]:
        proc = gentool(*args, "--truncation", bad, torch_free=True, check=False)
        assert proc.returncode == 2 and message in proc.stderr
    proc = gentool(*args, "--truncation", "1", "--plot", tmp_path / "one.png", torch_free=True, check=False)
    assert proc.returncode == 2 and "give several --truncation values" in proc.stderr
    proc = gentool(*args, "--truncation", "1,2", "--plot", tmp_path / "curve.jpg", torch_free=True, check=False)
    assert proc.returncode == 2 and "figures are written as" in proc.stderr


def _blur(images: np.ndarray, sigma: float) -> np.ndarray:
    """A separable Gaussian blur of (N, C, H, W) images, edges replicated."""
    radius = int(3 * sigma) + 1
    taps = np.exp(-np.arange(-radius, radius + 1) ** 2 / (2 * sigma**2))
    taps /= taps.sum()
    padded = np.pad(images, ((0, 0), (0, 0), (radius, radius), (radius, radius)), mode="edge")
    h, w = images.shape[2:]
    rows = sum(t * padded[:, :, i : i + h, :] for i, t in enumerate(taps))
    return sum(t * rows[:, :, :, i : i + w] for i, t in enumerate(taps))


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_bundled_features_rank_noise_and_blur(name):
    """On 2,000 real test images: FID rises with Gaussian noise sigma 0.05/0.1/0.2/0.4 and with blur,
    and 2,000 real training images are far closer than the mildest of them."""
    network, _ = quality.feature_network(name, "cpu")
    test = data.load(name, "test", 2000).images / np.float32(255)
    real = metrics.gaussian_stats(quality.features(network, test)[0])
    rng = np.random.default_rng(0)

    def fid(images):
        fake = quality.features(network, np.clip(images, 0, 1).astype(np.float32))[0]
        return metrics.frechet_distance(*real, *metrics.gaussian_stats(fake))

    noise = [fid(test + s * rng.standard_normal(test.shape)) for s in (0.05, 0.1, 0.2, 0.4)]
    blur = [fid(_blur(test, s)) for s in (1.0, 1.5, 2.0)]
    floor = fid(data.load(name, "train", 2000).images / np.float32(255))
    assert noise == sorted(noise) and blur == sorted(blur) and len(set(noise + blur)) == 7
    assert floor < min(noise + blur) / 2


def test_a_conditional_generator_gets_label_accuracy(tmp_path):
    """Samples drawn for each label are classified: the figure is the share the classifier gives
    the label they were drawn for (here a generator that draws the class's first test image)."""
    import torch
    from torch import nn

    from gentool.export import export
    from gentool.zoo.base import GenerativeModel, Graph

    test = data.load("mnist", "test", 100)
    means = torch.stack([torch.from_numpy(test.images[test.labels == k][0] / 255).float() for k in range(10)])

    class FirstDigit(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("means", means)

        def forward(self, z, label):
            return (self.means[label] + 0 * z.sum(1)[:, None, None, None]).clamp(0, 1)

    class Toy(GenerativeModel):
        name = "first-digit"

        def __init__(self):
            super().__init__((1, 28, 28), {}, 10)
            self.generator = FirstDigit()

        def graphs(self, batch=2):
            return {"generator": Graph(self.generator, (torch.randn(batch, 2), torch.arange(batch)), ["z", "label"], ["x"], int_bounds={"label": 10})}

        def graph_metadata(self):
            return {"latent_dim": 2, "prior": {"mean": [0.0, 0.0], "cov": [[1.0, 0.0], [0.0, 1.0]]}}

    export(Toy(), {"model": "first-digit", "data": "mnist", "classes": [str(k) for k in range(10)]}, tmp_path)
    network, name = quality.feature_network("mnist", "cpu")
    result = quality.evaluate_generator(Artifact(str(tmp_path), "cpu"), 100, 0, network, name)
    logits = quality.features(network, means.numpy())[1]
    assert result["label_accuracy"] == np.mean(logits.argmax(1) == np.arange(10)) and result["label_accuracy"] == 1.0
