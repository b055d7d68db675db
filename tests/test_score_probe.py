"""Anomaly scores (`score`, `evaluate --anomaly`, `train --classes`), probes, clustering and their metrics."""

import json
import math
import shutil

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

from conftest import gentool
from gentool import data, metrics
from gentool.errors import UsageError
from gentool.kmeans import kmeans
from gentool.probe import per_class_sample, probe_accuracy


def test_auroc_matches_a_brute_force_pair_count():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 6, 300).astype(float)  # many ties
    positive = rng.random(300) < 0.3
    pos, neg = scores[positive][:, None], scores[~positive][None]
    pairs = (pos > neg).sum() + 0.5 * (pos == neg).sum()
    assert metrics.auroc(scores, positive) == pytest.approx(pairs / (pos.size * neg.size), abs=1e-12)
    assert metrics.auroc([1, 2, 3, 4], [0, 0, 1, 1]) == 1
    assert metrics.auroc([4, 3, 2, 1], [0, 0, 1, 1]) == 0
    assert metrics.auroc([7, 7, 7], [0, 1, 1]) == 0.5
    with pytest.raises(UsageError, match="both positive"):
        metrics.auroc([1, 2], [1, 1])


def test_nmi_by_hand():
    assert metrics.nmi([0, 0, 1, 1, 2], [5, 5, 9, 9, 1]) == pytest.approx(1)  # the same grouping, renamed
    assert metrics.nmi([0, 0, 1, 1], [0, 1, 0, 1]) == pytest.approx(0)  # independent
    assert metrics.nmi([3, 3, 3], [1, 1, 1]) == 1
    # H(A) = ln 2, H(B) = ln 3, I(A; B) = 2/3 ln 2 (worked out by hand from the 2x3 contingency table).
    expected = (2 / 3 * math.log(2)) / ((math.log(2) + math.log(3)) / 2)
    assert metrics.nmi([0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 2, 2]) == pytest.approx(expected, abs=1e-12)


def test_kmeans_finds_separated_blobs_and_is_seeded():
    rng = np.random.default_rng(1)
    truth = np.repeat(np.arange(4), 50)
    x = rng.normal(size=(200, 3)) * 0.1 + np.array([[0, 0, 0], [5, 0, 0], [0, 5, 0], [0, 0, 5]])[truth]
    labels = kmeans(x, 4, seed=3)
    assert metrics.nmi(truth, labels) == pytest.approx(1)
    assert np.array_equal(labels, kmeans(x, 4, seed=3))


def test_probe_helpers():
    labels = np.repeat(np.arange(3), 20)
    chosen = per_class_sample(labels, 5, seed=0)
    assert np.array_equal(np.bincount(labels[chosen]), [5, 5, 5]) and len(set(chosen)) == 15
    assert np.array_equal(chosen, per_class_sample(labels, 5, seed=0))
    assert not np.array_equal(chosen, per_class_sample(labels, 5, seed=1))
    with pytest.raises(UsageError, match="only 20"):
        per_class_sample(labels, 21, seed=0)
    x = np.eye(3)[labels] * 2 + np.random.default_rng(0).normal(size=(60, 3)) * 0.1
    assert probe_accuracy(x[chosen], labels[chosen], x, labels) == 1


def test_training_set_keeps_the_asked_classes(tmp_path):
    images, classes = data.training_set("mnist", 50, "5,3")
    assert classes == [3, 5] and len(images) == 50 and set(images.labels) == {3, 5}
    assert data.training_set("fashion-mnist", 3, "Bag")[1] == [8]
    with pytest.raises(UsageError, match="has no class '11'"):
        data.training_set("mnist", None, "3,11")
    np.save(tmp_path / "plain.npy", np.zeros((20, 8, 8), np.uint8))
    with pytest.raises(UsageError, match="needs labelled data"):
        data.training_set(str(tmp_path / "plain.npy"), None, "0")


@pytest.fixture(scope="module")
def one_class_run(tmp_path_factory):
    """A tiny MLP autoencoder trained on 512 MNIST ones (16 steps)."""
    out = tmp_path_factory.mktemp("one-class") / "ae-ones"
    gentool("train", "ae", "--data", "mnist", "--classes", "1", "--limit", "512", "--epochs", "1", "--batch-size", "32",
            "--arch", "mlp", "--latent-dim", "8", "--out", out)
    return out


def test_one_class_protocol_probe_roc_and_compression_ratio(one_class_run, runs):
    from gentool import checkpoint
    from gentool.anomaly import evaluate_anomaly

    assert checkpoint.read_meta(one_class_run)["train"]["classes"] == [1]
    result = json.loads(gentool("evaluate", one_class_run, "--anomaly", "--probe", "3", "--limit", "500", "--json",
                                "--plot", one_class_run / "roc.png").stdout)
    assert (one_class_run / "roc.png").stat().st_size > 10_000
    assert result["anomaly_score"] == "reconstruction_mse" and result["normal_classes"] == [1]
    assert result["auroc"] > 0.9  # the other digits reconstruct worse
    assert result["probe_per_class"] == 3
    for key in ("probe_accuracy", "pixel_probe_accuracy", "cluster_nmi", "pixel_cluster_nmi"):
        assert 0.1 < result[key] <= 1, key
    assert "mse" not in result  # --anomaly and --probe report their own figures only
    assert json.loads(gentool("evaluate", one_class_run, "--limit", "100", "--json").stdout)["compression_ratio"] == 784 / (8 * 4)
    with pytest.raises(UsageError, match="trained on some classes only"):
        evaluate_anomaly(*checkpoint.load_with_split(runs["vae"], None, "test", 5))


def test_evaluate_scores_are_the_score_verbs(runs, tmp_path):
    """`evaluate --anomaly` and `score` compute the same seeded numbers."""
    from gentool import checkpoint
    from gentool.anomaly import split_scores

    model, meta, dataset = checkpoint.load_with_split(runs["vae"], None, "test", 5)
    expected, kind = split_scores(model, meta, dataset, seed=7)
    paths = []
    for i, image in enumerate(dataset.images):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(image[0]).save(paths[-1])
    rows = [json.loads(line) for line in gentool("score", runs["vae"], *paths, "--json", "--seed", "7", torch_free=True).stdout.splitlines()]
    assert kind == "neg_elbo_nats" and {r["kind"] for r in rows} == {kind}
    assert np.allclose([r["score"] for r in rows], expected, rtol=1e-5)


def test_score_is_the_neg_elbo_of_the_torch_model(runs):
    import torch

    from gentool import checkpoint, data
    from gentool.runtime import latent
    from gentool.runtime.artifact import Artifact

    x = data.load("mnist", "test", 20).images / np.float32(255)
    scores, _ = latent.score(Artifact(str(runs["vae"]), "cpu"), x, seed=0, samples=100)
    model, _ = checkpoint.load(runs["vae"])
    torch.manual_seed(0)
    with torch.no_grad():
        neg_elbo = torch.stack([model.elbo_terms(torch.from_numpy(x))["neg_elbo"] for _ in range(100)]).mean(0).numpy()
    assert abs(scores.mean() - neg_elbo.mean()) < 1  # nats; the two sample means differ by noise only


def test_score_output_and_seeds(runs, digits):
    proc = gentool("score", runs["vae"], *digits, torch_free=True)
    lines = proc.stdout.decode().splitlines()
    assert [line.split("  ")[0] for line in lines] == [str(d) for d in digits]
    assert all(float(line.split("  ")[1]) > 0 for line in lines)
    assert "neg_elbo_nats" in proc.stderr
    assert gentool("score", runs["vae"], *digits, torch_free=True).stdout == proc.stdout
    assert gentool("score", runs["vae"], *digits, "--seed", "1", torch_free=True).stdout != proc.stdout
    assert gentool("score", runs["vae"], *digits, "--samples", "3", torch_free=True).stdout != proc.stdout
    alone = gentool("score", runs["vae"], digits[1], torch_free=True).stdout.decode()
    reversed_pair = gentool("score", runs["vae"], digits[1], digits[0], torch_free=True).stdout.decode().splitlines()
    assert alone.split()[1] == lines[1].split()[1] == reversed_pair[0].split()[1]  # the image's own score
    ae = json.loads(gentool("score", runs["ae"], digits[0], "--json", torch_free=True).stdout)
    assert ae["kind"] == "reconstruction_mse" and 0 < ae["score"] < 1 and ae["input"] == str(digits[0])


def _set_meta(path, key, value):
    proto = onnx.load(path)
    kept = [(p.key, p.value) for p in proto.metadata_props if p.key != key]
    del proto.metadata_props[:]
    for k, v in kept + ([(key, value)] if value is not None else []):
        proto.metadata_props.add(key=k, value=v)
    onnx.save(proto, path)


@pytest.mark.parametrize("likelihood", ['"gaussian"', None])
def test_score_falls_back_to_reconstruction_error(runs, digits, tmp_path, likelihood):
    """A Gaussian decoder (or an export from before `gentool.likelihood`) gives no Bernoulli -ELBO."""
    for role in ("encoder", "decoder"):
        shutil.copy(runs["vae"] / f"{role}.onnx", tmp_path)
        _set_meta(tmp_path / f"{role}.onnx", "gentool.likelihood", likelihood)
    row = json.loads(gentool("score", tmp_path, digits[0], "--json", torch_free=True).stdout)
    assert row["kind"] == "reconstruction_mse" and 0 < row["score"] < 1


def test_score_with_a_denoiser_alone(digits, tmp_path):
    """A graph whose only role is `denoiser` (here x -> x / 2) scores the MSE of its output."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, 28, 28])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1, 28, 28])
    half = helper.make_tensor("half", TensorProto.FLOAT, [], [0.5])
    graph = helper.make_graph([helper.make_node("Mul", ["x", "half"], ["y"])], "halve", [x], [y], [half])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    proto.ir_version = 9
    for key, value in {"gentool.model": '"dae"', "gentool.role": '"denoiser"', "gentool.image_shape": "[1, 28, 28]"}.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, tmp_path / "denoiser.onnx")
    row = json.loads(gentool("score", tmp_path / "denoiser.onnx", digits[0], "--json", torch_free=True).stdout)
    pixels = np.asarray(Image.open(digits[0]), np.float64) / 255
    assert row["kind"] == "reconstruction_mse" and row["score"] == pytest.approx((0.25 * pixels**2).mean(), rel=1e-5)
