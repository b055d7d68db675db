"""Every family in the zoo, through the whole protocol, with no flags: a new family gets all of this
by being registered."""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from gentool import checkpoint, data, runs, train as training, zoo
from gentool.graphs import TorchGraphs
from gentool.runtime import graphcheck
from gentool.runtime.artifact import Artifact

FAMILIES = sorted(zoo.families())


def test_the_families_are_covered():
    assert {"ae", "vae", "sparse-ae", "cae", "dae", "sr", "classifier", "gan", "wgan-gp", "ddpm"} <= set(FAMILIES)


@pytest.mark.parametrize("name", FAMILIES)
def test_builds_with_no_flags_and_its_losses_are_finite(name):
    torch.manual_seed(0)
    model = zoo.get(name)((1, 28, 28), {}, 10)
    assert model.num_classes == 10 and set(model.hparams) == set(model.defaults)
    losses = model.losses(torch.rand(8, 1, 28, 28), torch.arange(8))
    assert "loss" in losses and all(torch.isfinite(v) for v in losses.values())
    losses["loss"].backward()
    assert any(p.grad is not None for p in model.parameters())


def runs_of(name: str, root):
    """Two one-step epochs straight, and one epoch then --resume to the second: (name, both runs).
    Only the straight run is exported: the others' weights are all a test reads."""
    def options(out, epochs, export):
        return training.Options(model=name, data="mnist", epochs=epochs, batch_size=16, limit=16, out=root / out, device="cpu",
                                export=export)

    straight = training.run(options("straight", 2, True))
    training.run(options("halves", 1, False))
    resumed = training.run(training.Options(model="", resume=root / "halves", epochs=2, device="cpu", export=False))
    return name, straight, resumed


@pytest.fixture(scope="module", params=FAMILIES)
def family_runs(request, tmp_path_factory):
    return runs_of(request.param, tmp_path_factory.mktemp(request.param))


def test_resume_equals_an_uninterrupted_run(family_runs):
    _, straight, resumed = family_runs
    a, b = load_file(str(straight / checkpoint.WEIGHTS)), load_file(str(resumed / checkpoint.WEIGHTS))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [row["epoch"] for row in runs.read_metrics(resumed)] == [1, 2]


def test_checkpoint_round_trips(family_runs, tmp_path):
    name, straight, _ = family_runs
    model, meta = checkpoint.load(straight)
    assert meta["model"] == name and meta["epoch"] == 2 and model.num_classes == 10
    checkpoint.save(tmp_path, model, meta)
    again, meta_again = checkpoint.load(tmp_path)
    assert meta_again["hparams"] == meta["hparams"]
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items())


def test_every_graph_exported_and_the_preview_matches_the_export(family_runs):
    """The run's graphs exist (export checks their parity), and the preview drawn over the torch
    modules equals the same samplers over the exported graphs."""
    _, straight, _ = family_runs
    model, meta = checkpoint.load(straight)
    artifact = Artifact(str(straight), "cpu")
    assert artifact.roles == sorted(model.graphs())
    images = data.load("mnist", "test", 8).images / np.float32(255)
    torch_side, onnx_side = model.preview(TorchGraphs(model, meta), images, 3), model.preview(artifact, images, 3)
    assert torch_side and torch_side.keys() == onnx_side.keys()
    for key in torch_side:
        assert np.abs(torch_side[key] - onnx_side[key]).max() < 1e-4, key
    assert {p.name.rsplit("-", 1)[0] for p in (straight / "grids").glob("*-002.png")} == set(torch_side)
    for file in artifact.files.values():  # the runtime's operator list covers what the exporter emitted
        assert {op for _, op in graphcheck.operators(file.read_bytes())} <= graphcheck.ALLOWED
