"""The plug-in promise: a new way of generating (a sampler module with a new role, an integer input
`t` and its own option `--steps`) and a family that exports it, both registered from this test,
get the CLI's flags, graph checks, previews, the quick FID, export parity and the conformance test
with no edit to any core file."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import test_conformance as conformance
from conftest import in_process, png
from gentool import noise, zoo
from gentool.errors import UsageError
from gentool.runtime import verbs
from gentool.runtime.declaration import Option, Role, Sampler, Tensor, Verb, positive_int
from gentool.zoo.base import GenerativeModel, Graph

STEPS = 10  # the toy process' time steps


def refine(graphs, n, seed, labels=None, steps=None):
    """Uniform noise, refined `steps` (default STEPS) times by the `refiner` graph, from the last time step down."""
    steps = STEPS if steps is None else steps
    if not 1 <= steps <= graphs.meta["max_t"]:
        raise UsageError(f"--steps must be in 1..{graphs.meta['max_t']}, got {steps}")
    x = np.random.default_rng(seed).random((n, *graphs.image_shape), dtype=np.float32)
    for t in np.linspace(graphs.meta["max_t"] - 1, 0, steps).round().astype(np.int64):
        (x,) = graphs.run("refiner", {"x": x, "t": np.full(n, t)}).values()
    return x


STEPPER = Sampler(
    name="stepper",
    roles={"refiner": Role(inputs=(Tensor("x", "N C H W"), Tensor("t", "N", "int64")), outputs=((Tensor("*", "N C H W"),),))},
    verbs={"sample": Verb(refine, (("refiner",),), options=(Option("steps", int, None, f"Refinement steps (default {STEPS})."),), cheapest={"steps": 2})},
    metadata={"max_t": lambda v, meta: positive_int(v)},
)


class RefinerNet(nn.Module):
    def __init__(self, channels: int, width: int):
        super().__init__()
        self.inner, self.outer = nn.Conv2d(channels + 1, width, 3, padding=1), nn.Conv2d(width, channels, 3, padding=1)

    def forward(self, x, t):
        time = x[:, :1] * 0 + (t.float() / STEPS).view(-1, 1, 1, 1)
        return torch.sigmoid(self.outer(F.relu(self.inner(torch.cat([x, time], 1)))))


class Stepper(GenerativeModel):
    """A toy refiner: noise mixed into an image by t/T, and a net that takes it back."""

    name = "test-stepper"
    defaults = {"width": 4}
    train_defaults = {"epochs": 1, "batch_size": 16, "lr": 1e-3, "lr_schedule": "constant"}
    preview_samples = 8
    quick_fid_samples = 50

    def __init__(self, image_shape, hparams, num_classes=None):
        super().__init__(image_shape, hparams, num_classes)
        self.net = RefinerNet(self.image_shape[0], self.hparams["width"])

    def losses(self, x, y=None):
        t = (noise.rand_like(x[:, 0, 0, 0]) * STEPS).long()
        mix = (t.float() / STEPS).view(-1, 1, 1, 1)
        return {"loss": F.mse_loss(self.net((1 - mix) * x + mix * noise.rand_like(x), t), x)}

    def graphs(self, batch=2):
        inputs = (torch.rand(batch, *self.image_shape), torch.arange(batch) % STEPS)
        return {"refiner": Graph(self.net, inputs, ["x", "t"], ["refined"], int_bounds={"t": STEPS})}

    def graph_metadata(self):
        return {"max_t": STEPS}


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    verbs.register(STEPPER)
    zoo.register(Stepper)
    yield conformance.runs_of(Stepper.name, tmp_path_factory.mktemp("stepper"))
    verbs._REGISTERED.remove(STEPPER)
    zoo._REGISTRY.pop(Stepper.name)


def test_the_conformance_test_passes_for_it(plugin, tmp_path):
    conformance.test_builds_with_no_flags_and_its_losses_are_finite(Stepper.name)
    conformance.test_resume_equals_an_uninterrupted_run(plugin)
    conformance.test_checkpoint_round_trips(plugin, tmp_path)
    conformance.test_every_graph_exported_and_the_preview_matches_the_export(plugin)


def test_its_previews_and_quick_fid_use_its_cheapest_setting(plugin):
    import json

    _, run, _ = plugin
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(row["fid_1k"]) for row in rows)
    grid = png((run / "grids" / "samples-002.png").read_bytes())
    drawn = png(in_process("sample", run, "-n", "8", "--nrow", "8", "--steps", "2", "--seed", "0").stdout)
    assert np.array_equal(grid, drawn)  # the run's grid is `sample --steps 2` (torch side = export)
    assert not np.array_equal(grid, png(in_process("sample", run, "-n", "8", "--nrow", "8", "--seed", "0").stdout))


def test_the_cli_lists_and_routes_its_options(plugin, runs):
    _, run, _ = plugin
    shown = " ".join(in_process("sample", "--help").stdout.decode().replace("│", " ").split())
    assert "--steps" in shown and "--truncation" in shown and "or a refiner)" in shown  # one --steps for every sampler that takes it
    proc = in_process("sample", run, "-n", "2", "--truncation", "1")
    assert proc.returncode == 2 and "--truncation: not an option of 'sample' for this test-stepper artifact (it takes --steps)" in proc.stderr
    proc = in_process("sample", runs["vae"], "--steps", "3")
    assert proc.returncode == 2 and "it takes --truncation" in proc.stderr
    proc = in_process("sample", run, "--steps", "99")
    assert proc.returncode == 2 and "--steps must be in 1..10" in proc.stderr


def test_its_graphs_are_checked_against_its_declaration(plugin, tmp_path):
    import onnx

    _, run, _ = plugin
    model = onnx.load(run / "refiner.onnx")
    (max_t,) = (prop for prop in model.metadata_props if prop.key == "gentool.max_t")
    max_t.value = "0"
    onnx.save(model, tmp_path / "refiner.onnx")
    proc = in_process("sample", tmp_path / "refiner.onnx")
    assert proc.returncode == 2 and "metadata gentool.max_t = 0 does not fit" in proc.stderr
    max_t.value = str(STEPS)
    model.graph.input[1].type.tensor_type.elem_type = onnx.TensorProto.FLOAT
    onnx.save(model, tmp_path / "refiner.onnx")
    proc = in_process("sample", tmp_path / "refiner.onnx")
    assert proc.returncode == 2 and "input t is tensor(float), not the int64 a refiner graph takes" in proc.stderr
    verbs._REGISTERED.remove(STEPPER)  # a role no module declares is refused
    try:
        proc = in_process("sample", run)
    finally:
        verbs.register(STEPPER)
    assert proc.returncode == 2 and "a role this gentool does not run" in proc.stderr
