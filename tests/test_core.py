"""The generator core: typed multi-input graphs, samplers shared by torch and onnxruntime, one
metadata encoding, the family's own --help, and torchrun."""

import json
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from safetensors.torch import load_file
from torch import nn

from conftest import gentool, png
from gentool import __version__ as gentool_version, checkpoint
from gentool.export import export, parity_inputs
from gentool.graphs import TorchGraphs
from gentool.runtime import latent
from gentool.runtime.artifact import Artifact
from gentool.zoo.base import GenerativeModel, Graph

CLASSES = ["a", "b", "c"]


class ConditionalDecoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed, self.linear = nn.Embedding(3, 64), nn.Linear(2, 64)

    def forward(self, z, label):
        return torch.sigmoid(self.linear(z) + self.embed(label)).view(-1, 1, 8, 8)


class Conditional(GenerativeModel):
    """A two-input generator (z float, label int64), as a conditional GAN's will be."""

    name = "conditional-toy"

    def __init__(self):
        super().__init__((1, 8, 8), {}, len(CLASSES))
        self.generator = ConditionalDecoder()

    def graphs(self, batch=2):
        z, label = torch.randn(batch, 2), torch.arange(batch) % 3
        return {"generator": Graph(self.generator, (z, label), ["z", "label"], ["x"], int_bounds={"label": 3})}

    def graph_metadata(self):
        return {"latent_dim": 2, "prior": {"mean": [0.0, 0.0], "cov": [[1.0, 0.0], [0.0, 1.0]]}}


def test_a_two_input_graph_exports_with_typed_inputs_and_samples_alike_on_both_sides(tmp_path):
    torch.manual_seed(0)
    model = Conditional().eval()
    meta = {"model": model.name, "data": "toy", "classes": CLASSES}
    graph = model.graphs()["generator"]
    assert len(set(parity_inputs(graph)[1].tolist())) > 1  # integer inputs vary across the parity batch
    assert export(model, meta, tmp_path)["generator"] < 1e-5
    session_inputs = {i.name: (i.type, i.shape[0]) for i in Artifact(str(tmp_path), "cpu").session("generator").get_inputs()}
    assert session_inputs["z"][0] == "tensor(float)" and session_inputs["label"][0] == "tensor(int64)"
    assert session_inputs["z"][1] == session_inputs["label"][1]  # one batch axis
    artifact = Artifact(str(tmp_path), "cpu")
    assert artifact.meta["classes"] == CLASSES and artifact.meta["image_shape"] == [1, 8, 8]
    onnx_side = latent.sample(artifact, 7, seed=4)
    torch_side = latent.sample(TorchGraphs(model, meta), 7, seed=4)
    assert np.abs(onnx_side - torch_side).max() < 1e-5
    # labels run through the classes unless given; given ones are used
    z = latent.prior_draws(artifact, 7, 4)
    with torch.no_grad():
        expected = model.generator(torch.from_numpy(z).float(), torch.arange(7) % 3).numpy()
    assert np.abs(onnx_side - expected).max() < 1e-5
    ones = latent.sample(artifact, 7, seed=4, labels=np.ones(7))
    assert np.abs(ones - model.generator(torch.from_numpy(z).float(), torch.ones(7, dtype=torch.long)).detach().numpy()).max() < 1e-5
    proc = gentool("sample", tmp_path, "-n", "6", torch_free=True)
    assert png(proc.stdout).shape == (2 * 8 + 3 * 2, 3 * 8 + 4 * 2)


def _onnx_with_meta(tmp_path, meta: dict):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1, 4, 4])
    proto = helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "id", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 18)])
    proto.ir_version = 9
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, tmp_path / "denoiser.onnx")
    return tmp_path / "denoiser.onnx"


def test_metadata_is_json_with_one_reader(tmp_path, digits):
    good = {"gentool.model": '"dae"', "gentool.role": '"denoiser"', "gentool.image_shape": "[1, 4, 4]"}
    assert Artifact(str(_onnx_with_meta(tmp_path, good)), "cpu").meta == {"model": "dae", "image_shape": [1, 4, 4]}
    old = {**good, "gentool.image_shape": "1,4,4"}
    proc = gentool("denoise", digits[0], "--model", _onnx_with_meta(tmp_path, old), torch_free=True, check=False)
    assert proc.returncode == 2 and "gentool.image_shape is not JSON" in proc.stderr and len(proc.stderr.splitlines()) == 1


def test_the_runs_sample_grid_is_what_gentool_sample_draws(runs):
    for name in ("vae", "ae"):
        grid = png((runs[name] / "grids" / "samples-001.png").read_bytes())
        assert np.array_equal(png(gentool("sample", runs[name], "--seed", "0", torch_free=True).stdout), grid)
        assert not np.array_equal(png(gentool("sample", runs[name], "--seed", "1", torch_free=True).stdout), grid)


def test_a_written_image_says_what_made_it(runs, tmp_path):
    import io
    import json

    from PIL import Image

    drawn = gentool("sample", runs["vae"], "-n", "4", "--seed", "3", "--truncation", "1.5", torch_free=True).stdout
    text = Image.open(io.BytesIO(drawn)).text
    made = json.loads(text["gentool"])
    assert text["Software"] == f"gentool {gentool_version}" and made["verb"] == "sample" and made["version"] == gentool_version
    assert (made["artifact"], made["n"], made["seed"], made["truncation"]) == (str(runs["vae"]), 4, 3, 1.5)
    assert made["origin"] == Artifact(str(runs["vae"]), "cpu").meta["origin"] and "out" not in made
    grid = json.loads(Image.open(runs["vae"] / "grids" / "samples-001.png").text["gentool"])
    assert (grid["verb"], grid["grid"], grid["epoch"], grid["run"]) == ("train", "samples", 1, str(runs["vae"]))
    gentool("sample", made["artifact"], "-n", made["n"], "--seed", made["seed"], "--truncation", made["truncation"],
            "-o", tmp_path / "again.jpg", torch_free=True)
    assert json.loads(Image.open(tmp_path / "again.jpg").info["comment"])["seed"] == 3
    assert np.array_equal(png(drawn), png(gentool("sample", made["artifact"], "-n", "4", "--seed", "3", "--truncation", "1.5").stdout))
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "vae-mnist").symlink_to(runs["vae"])
    laid_out = json.loads(Image.open(io.BytesIO(gentool("sample", "vae", "-n", "4", "--nrow", "2", cwd=tmp_path).stdout)).text["gentool"])
    assert laid_out["nrow"] == 2 and laid_out["artifact"] == str(tmp_path / "runs" / "vae-mnist")  # the run, not the bare name


def test_slerp_keeps_the_ends_and_a_gaussian_norm(runs):
    artifact = Artifact(str(runs["vae"]), "cpu")
    linear, spherical = (latent.interpolate(artifact, None, [1, 2], 5, slerp) for slerp in (False, True))
    assert np.abs(linear[[0, -1]] - spherical[[0, -1]]).max() < 1e-6 and np.abs(linear[2] - spherical[2]).max() > 1e-3
    strip = gentool("interpolate", runs["vae"], "--seeds", "1,2", "--steps", "5", "--slerp", torch_free=True).stdout
    assert png(strip).shape == (28 + 4, 5 * 28 + 6 * 2)


def test_train_help_lists_the_family_options():
    out = gentool("train", "dae", "--help").stdout.decode()
    assert "--noise-level" in out and "gaussian|mask|salt-pepper" in out and "default 0.5" in out and "--resume" in out
    assert "--latent-dim" not in gentool("train", "--help").stdout.decode()
    proc = gentool("train", "vae", "--data", "mnist", "--latent-dim", "x", check=False)
    assert proc.returncode == 2 and "--latent-dim expects a int" in proc.stderr


def test_torchrun_two_processes_train_the_weights_of_one(tmp_path):
    """2 CPU processes (gloo), global batch 64, 301 images (the last batch 45, split 23 + 22), one
    epoch and then `--resume` to a second, also under torchrun: the single-process run's weights and
    metrics, in one run directory. (The conv vae agrees to about 1e-5 after as many steps: its weight
    gradients sum the batch in another order; the mlp's to about 1e-7.)"""
    args = ["--data", "mnist", "--limit", "301", "--batch-size", "64", "--device", "cpu", "--no-export"]
    gentool("train", "vae", "--arch", "mlp", *args, "--epochs", "2", "--out", tmp_path / "one")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "gentool", "train"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for extra in (["vae", "--arch", "mlp", *args, "--epochs", "1", "--out", str(tmp_path / "two")],
                  ["--resume", str(tmp_path / "two"), "--epochs", "2", "--device", "cpu", "--no-export"]):
        proc = subprocess.run([*torchrun, *extra], capture_output=True, cwd=tmp_path, env=env)
        assert proc.returncode == 0, proc.stderr.decode()[-2000:]
        assert proc.stdout.decode().split() == [str(tmp_path / "two")]  # rank 0 alone writes and reports
    one, two = (load_file(str(tmp_path / d / checkpoint.WEIGHTS)) for d in ("one", "two"))
    assert max(float((one[k] - two[k]).abs().max()) for k in one) < 1e-5
    rows = {d: [json.loads(line) for line in (tmp_path / d / "metrics.jsonl").read_text().splitlines()] for d in ("one", "two")}
    assert [r["epoch"] for r in rows["two"]] == [1, 2]
    for a, b in zip(rows["one"], rows["two"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5) and a["test_loss"] == pytest.approx(b["test_loss"], rel=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "two"]


def test_torchrun_ends_soon_when_one_process_fails_before_the_others_wait_for_it(tmp_path):
    """Rank 0 refuses a used --out (only it claims the run directory) while rank 1 goes on to wait
    for it in a collective that never comes: torchrun's SIGTERM ends rank 1 within its grace, not
    torchrun's 30 s."""
    import time

    from gentool.distributed import STOP_GRACE

    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").touch()
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "gentool", "train"]
    started = time.monotonic()
    proc = subprocess.run([*torchrun, "vae", "--arch", "mlp", "--data", "mnist", "--limit", "64", "--device", "cpu", "--out", str(tmp_path / "used")],
                          capture_output=True, cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=60)
    assert proc.returncode != 0 and "already exists and is not empty" in proc.stderr.decode()
    assert time.monotonic() - started < STOP_GRACE + 20 and b"forcefully exiting via 9" not in proc.stderr


def test_graphs_outside_what_gentool_exports_are_refused(tmp_path, digits):
    """A Loop (which could run for ever), a custom-domain op, and a decoder whose input does not fit
    its metadata never get to run."""
    from gentool.runtime import graphcheck

    meta = {"gentool.model": '"dae"', "gentool.role": '"denoiser"', "gentool.image_shape": "[1, 4, 4]"}
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1, 4, 4])
    body = helper.make_graph([helper.make_node("Identity", ["cond_in"], ["cond_out"])], "body",
                             [helper.make_tensor_value_info(n, t, []) for n, t in (("i", TensorProto.INT64), ("cond_in", TensorProto.BOOL))],
                             [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, [])])
    steps = helper.make_tensor("steps", TensorProto.INT64, [], [2**62])
    keep = helper.make_tensor("keep", TensorProto.BOOL, [], [True])
    looping = helper.make_graph([helper.make_node("Loop", ["steps", "keep"], [], body=body), helper.make_node("Identity", ["x"], ["y"])],
                                "loop", [x], [y], [steps, keep])
    for name, graph, extra in (("loop", looping, {}),
                               ("custom", helper.make_graph([helper.make_node("Noise", ["x"], ["y"], domain="evil.ops")], "c", [x], [y]), {})):
        proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("evil.ops", 1)])
        proto.ir_version = 9
        for key, value in {**meta, **extra}.items():
            proto.metadata_props.add(key=key, value=value)
        onnx.save(proto, tmp_path / f"{name}.onnx")
        proc = gentool("denoise", digits[0], "--model", tmp_path / f"{name}.onnx", torch_free=True, check=False)
        assert proc.returncode == 2 and "uses operators gentool does not run" in proc.stderr, proc.stderr
    assert {"Loop"} & graphcheck.ALLOWED == set()
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", 3])
    out = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])
    proto = helper.make_model(helper.make_graph([helper.make_node("Identity", ["z"], ["x"])], "d", [z], [out]),
                              opset_imports=[helper.make_opsetid("", 18)])
    proto.ir_version = 9
    for key, value in {"gentool.model": '"vae"', "gentool.role": '"decoder"', "gentool.image_shape": "[1, 4, 4]",
                       "gentool.latent_dim": "5"}.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, tmp_path / "decoder.onnx")
    proc = gentool("sample", tmp_path / "decoder.onnx", torch_free=True, check=False)
    assert proc.returncode == 2 and "input z has shape ['batch', 3], which does not fit its metadata" in proc.stderr


def test_metadata_that_lies_and_non_finite_outputs_are_clear_errors(runs, tmp_path):
    import shutil

    from test_score_probe import _set_meta

    shutil.copy(runs["ae"] / "decoder.onnx", tmp_path / "decoder.onnx")
    _set_meta(tmp_path / "decoder.onnx", "gentool.prior", json.dumps({"mean": [0.0] * 32, "cov": [[-1.0] * 32] * 32}))
    proc = gentool("sample", tmp_path / "decoder.onnx", torch_free=True, check=False)
    assert proc.returncode == 2 and "prior is not a Gaussian over its 32 latent dimensions" in proc.stderr
    _set_meta(tmp_path / "decoder.onnx", "gentool.prior", json.dumps({"mean": [0.0] * 32, "cov": np.diag([1e300] * 32).tolist()}))
    proc = gentool("sample", tmp_path / "decoder.onnx", torch_free=True, check=False)
    assert proc.returncode == 2 and "codes must be finite numbers" in proc.stderr and len(proc.stderr.splitlines()) == 1
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", 16])
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, 4, 4])
    shape = helper.make_tensor("shape", TensorProto.INT64, [4], [-1, 1, 4, 4])
    nodes = [helper.make_node("Abs", ["z"], ["a"]), helper.make_node("Neg", ["a"], ["n"]), helper.make_node("Log", ["n"], ["l"]),
             helper.make_node("Reshape", ["l", "shape"], ["x"])]  # log of a negative number: NaN
    proto = helper.make_model(helper.make_graph(nodes, "nan", [z], [x], [shape]), opset_imports=[helper.make_opsetid("", 18)])
    proto.ir_version = 9
    prior = {"mean": [0.0] * 16, "cov": np.eye(16).tolist()}
    for key, value in {"model": "vae", "role": "decoder", "image_shape": [1, 4, 4], "latent_dim": 16, "prior": prior}.items():
        proto.metadata_props.add(key=f"gentool.{key}", value=json.dumps(value))
    onnx.save(proto, tmp_path / "nan.onnx")
    proc = gentool("sample", tmp_path / "nan.onnx", torch_free=True, check=False)
    assert proc.returncode == 2 and "gave non-finite values (NaN or inf) for x" in proc.stderr and len(proc.stderr.splitlines()) == 1


def test_outputs_must_fit_the_role(tmp_path, digits):
    """A denoiser that gives two outputs, and an upscaler whose factor metadata lies, are refused."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, "h", "w"])
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", 1, "h", "w"]) for n in ("y", "extra")]
    nodes = [helper.make_node("Identity", ["x"], ["y"]), helper.make_node("Identity", ["x"], ["extra"])]
    for name, role, graph_outputs, graph_nodes, extra in (
        ("two", "denoiser", outs, nodes, {}),
        ("liar", "upscaler", outs[:1], nodes[:1], {"gentool.factor": "2"}),  # an identity, said to upscale by 2
    ):
        proto = helper.make_model(helper.make_graph(graph_nodes, name, [x], graph_outputs), opset_imports=[helper.make_opsetid("", 18)])
        proto.ir_version = 9
        meta = {"gentool.model": '"toy"', "gentool.role": f'"{role}"', "gentool.image_shape": "[1, 28, 28]", **extra}
        for key, value in meta.items():
            proto.metadata_props.add(key=key, value=value)
        onnx.save(proto, tmp_path / f"{name}.onnx")
    proc = gentool("denoise", digits[0], "--model", tmp_path / "two.onnx", torch_free=True, check=False)
    assert proc.returncode == 2 and "a denoiser graph gives one batch" in proc.stderr
    proc = gentool("upscale", digits[0], "--model", tmp_path / "liar.onnx", torch_free=True, check=False)
    assert proc.returncode == 2 and "not 2 times larger as its metadata says" in proc.stderr


def _hand_graph(path, inputs, outputs, nodes, meta, initializers=()):
    proto = helper.make_model(helper.make_graph(nodes, "hand", inputs, outputs, list(initializers)), opset_imports=[helper.make_opsetid("", 18)])
    proto.ir_version = 9
    for key, value in meta.items():
        proto.metadata_props.add(key=f"gentool.{key}", value=json.dumps(value))
    onnx.save(proto, path)
    return path


def test_sizes_and_classes_that_lie_are_clear_errors(runs, tmp_path, digits):
    """A decoder drawing another image size, an encoder taking one, a conditional generator with more
    classes than its table and activity for another latent size: each one line, exit 2."""
    import shutil

    from test_score_probe import _set_meta

    prior = {"mean": [0.0] * 2, "cov": np.eye(2).tolist()}
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", 2])
    label = helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"])
    image = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, 2, 2])
    four = helper.make_tensor("four", TensorProto.INT64, [4], [-1, 1, 2, 2])
    table = helper.make_tensor("table", TensorProto.FLOAT, [2, 4], [0.5] * 8)  # two classes' rows
    reshape = helper.make_node("Reshape", ["rows", "four"], ["x"])
    said = {"model": "toy", "role": "generator", "image_shape": [1, 2, 2], "latent_dim": 2, "prior": prior}
    liar = _hand_graph(tmp_path / "generator.onnx", [z, label], [image], [helper.make_node("Gather", ["table", "label"], ["rows"]), reshape],
                       {**said, "classes": ["a", "b", "c", "d", "e"]}, [four, table])
    proc = gentool("sample", liar, "-n", "5", torch_free=True, check=False)
    assert proc.returncode == 2 and "the generator graph of" in proc.stderr and "does not fit its metadata" in proc.stderr
    assert len(proc.stderr.splitlines()) == 1
    _set_meta(liar, "gentool.image_shape", "[1, 3, 3]")
    proc = gentool("sample", liar, torch_free=True, check=False)
    assert proc.returncode == 2 and "a generator graph gives one batch (N, 1, 3, 3)" in proc.stderr
    shutil.copy(runs["ae"] / "encoder.onnx", tmp_path / "encoder.onnx")
    _set_meta(tmp_path / "encoder.onnx", "gentool.image_shape", "[1, 32, 32]")
    proc = gentool("encode", tmp_path / "encoder.onnx", digits[0], torch_free=True, check=False)
    assert proc.returncode == 2 and "input x has shape [" in proc.stderr and "does not fit its metadata" in proc.stderr
    shutil.copy(runs["vae"] / "decoder.onnx", tmp_path / "decoder.onnx")
    _set_meta(tmp_path / "decoder.onnx", "gentool.activity", "[1.0, 2.0, 3.0]")
    proc = gentool("manifold", tmp_path / "decoder.onnx", torch_free=True, check=False)
    assert proc.returncode == 2 and "gentool.activity = [1.0, 2.0, 3.0] does not fit" in proc.stderr
