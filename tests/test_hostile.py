"""The third reliability round: a test per root of what a hostile-but-fair run found."""

import json
import os
import shutil

import numpy as np
import pytest

from conftest import gentool
from gentool import console


def test_json_is_strict_and_says_what_was_not_finite(capsys):
    text = console.to_json({"fid": float("nan"), "rows": [1, np.float32(2.5), np.int64(3), float("inf")], "ok": True, "none": None})
    assert json.loads(text) == {"fid": None, "rows": [1, 2.5, 3, None], "ok": True, "none": None}
    assert "note: fid, rows: not a finite number, written as null" in capsys.readouterr().err


def _copy_run(source, runs_dir, name):
    shutil.copytree(source, runs_dir / name)
    return runs_dir / name


def test_listings_read_each_run_in_isolation(runs, tmp_path):
    """Garbage appended to metrics.jsonl, a string or non-finite loss, metadata whose epochs are
    not a number, a FIFO or a foreign file named model.safetensors: each run is listed (the
    unreadable ones as broken, with why), and a bare name still finds its newest run."""
    from safetensors.numpy import save_file

    from gentool import runs as listing

    root = tmp_path / "runs"
    _copy_run(runs["vae"], root, "vae-mnist")
    with open(_copy_run(runs["vae"], root, "vae-garbage") / "metrics.jsonl", "a") as f:
        f.write('42\n{"epoch": 2, "test_loss": "low"}\n')
    with open(_copy_run(runs["vae"], root, "vae-nan") / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 2, "test_loss": NaN, "fid_1k": Infinity}\n')
    odd = _copy_run(runs["vae"], root, "vae-odd")
    meta = listing.checkpoint_meta(odd / "model.safetensors")
    save_file({"w": np.zeros(1, np.float32)}, str(odd / "model.safetensors"),
              metadata={"gentool": json.dumps({**meta, "epoch": "one", "train": {"epochs": "ten"}})})
    (root / "vae-fifo").mkdir()
    os.mkfifo(root / "vae-fifo" / "model.safetensors")
    (root / "vae-foreign").mkdir()
    save_file({"w": np.zeros(1, np.float32)}, str(root / "vae-foreign" / "model.safetensors"))
    rows = {r["run"]: r for r in map(json.loads, gentool("runs", "--json", cwd=tmp_path, torch_free=True).stdout.splitlines())}
    assert rows["runs/vae-garbage"]["test_loss"] is None and rows["runs/vae-nan"]["test_loss"] is None
    assert rows["runs/vae-odd"]["model"] == "vae" and rows["runs/vae-odd"]["epochs"] is None
    assert rows["runs/vae-fifo"]["broken"] == "model.safetensors is not a regular file"
    assert rows["runs/vae-foreign"]["broken"] == "model.safetensors has no readable gentool metadata"
    assert rows["runs/vae-mnist"]["test_loss"] > 0 and "broken" not in rows["runs/vae-mnist"]
    table = gentool("runs", "vae", cwd=tmp_path, torch_free=True)
    assert table.returncode == 0 and "broken: model.safetensors is not a regular file" in table.stdout.decode()
    os.utime(odd, (2e9, 2e9))
    drawn = gentool("sample", "vae", "-n", "1", cwd=tmp_path, torch_free=True)
    assert "'vae' is runs/vae-odd, the newest of" in drawn.stderr


@pytest.mark.parametrize("name", ["*", "**", "v?e", "[v]ae"])
def test_a_bare_model_name_is_never_a_pattern(runs, tmp_path, name):
    _copy_run(runs["vae"], tmp_path / "runs", "vae-mnist")
    proc = gentool("sample", name, cwd=tmp_path, torch_free=True, check=False)
    assert proc.returncode == 2 and f"no run of a model '{name}'" in proc.stderr and len(proc.stderr.splitlines()) == 1


def test_stdout_has_one_owner(runs, tmp_path):
    """`evaluate --plot -` would put the PNG and the table into one stream: refused before any work."""
    for args in (["--samples", "20", "--truncation", "0.5,none"], ["--anomaly"]):
        proc = gentool("evaluate", runs["vae"], *args, "--plot", "-", check=False)
        assert proc.returncode == 2 and "the table and --plot would both go to stdout" in proc.stderr and proc.stdout == b""


def _decoder(tmp_path, name, rows, sizes):
    """A decoder of 16-value codes for 1x4x4 images whose output is the code reshaped to (rows x N,
    *sizes), every size computed from the input's shape at run time, so that no static shape shows
    the lie: only the values the graph gives can."""
    import onnx
    from onnx import TensorProto, helper

    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", "k"])
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, None)
    const = lambda n, v: helper.make_tensor(n, TensorProto.INT64, [1], [v])  # noqa: E731
    nodes = [helper.make_node("Shape", ["z"], ["s"]), helper.make_node("Gather", ["s", "i0"], ["n"]), helper.make_node("Gather", ["s", "i1"], ["k"]),
             helper.make_node("Mul", ["n", "rows"], ["d0"])]
    initializers = [const("i0", 0), const("i1", 1), const("rows", rows)]
    for i, size in enumerate(sizes, 1):  # size = k / (16 / size)
        initializers.append(const(f"q{i}", 16 // size))
        nodes.append(helper.make_node("Div", ["k", f"q{i}"], [f"d{i}"]))
    nodes += [helper.make_node("Concat", [f"d{i}" for i in range(len(sizes) + 1)], ["shape"], axis=0), helper.make_node("Reshape", ["z", "shape"], ["x"])]
    proto = helper.make_model(helper.make_graph(nodes, name, [z], [x], initializers), opset_imports=[helper.make_opsetid("", 18)])
    proto.ir_version = 9
    meta = {"model": "vae", "role": "decoder", "image_shape": [1, 4, 4], "latent_dim": 16, "prior": {"mean": [0.0] * 16, "cov": np.eye(16).tolist()}}
    for key, value in meta.items():
        proto.metadata_props.add(key=f"gentool.{key}", value=json.dumps(value))
    onnx.save(proto, tmp_path / f"{name}.onnx")
    return tmp_path / f"{name}.onnx"


@pytest.mark.parametrize("name, rows, sizes", [("honest", 1, [1, 4, 4]), ("rows", 4, [1, 2, 2]), ("side", 1, [1, 2, 8]),
                                               ("channels", 1, [4, 2, 2])])
def test_what_a_graph_gives_is_checked_against_its_metadata(tmp_path, name, rows, sizes):
    """A decoder declared 1x4x4 that gives 4N images of 2x2, 1x2x8 images, or 4 channels (a wrong
    rank shows in the static shape, which the graph's role is checked against when it is opened)."""
    proc = gentool("sample", _decoder(tmp_path, name, rows, sizes), "-n", "3", torch_free=True, check=False)
    if name == "honest":
        assert proc.returncode == 0 and proc.stdout.startswith(b"\x89PNG"), proc.stderr
        return
    assert proc.returncode == 2 and "it does not fit its metadata" in proc.stderr and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert proc.stdout == b""


def test_a_feature_network_too_wide_for_its_covariance_is_refused_before_it_costs(tmp_path):
    """A 200-byte features graph whose rows are 5,488 wide would ask fid for D x D covariances."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, 28, 28])
    features = helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", "d"])
    nodes = [helper.make_node("Flatten", ["x"], ["flat"]), helper.make_node("Tile", ["flat", "repeats"], ["features"])]
    repeats = helper.make_tensor("repeats", TensorProto.INT64, [2], [1, 7])
    proto = helper.make_model(helper.make_graph(nodes, "wide", [x], [features], [repeats]), opset_imports=[helper.make_opsetid("", 18)])
    proto.ir_version = 9
    for key, value in {"model": "classifier", "role": "features", "image_shape": [1, 28, 28]}.items():
        proto.metadata_props.add(key=f"gentool.{key}", value=json.dumps(value))
    onnx.save(proto, tmp_path / "wide.onnx")
    proc = gentool("fid", "mnist:test", "mnist:train", "--features", tmp_path / "wide.onnx", "--limit", "50", torch_free=True, check=False)
    assert proc.returncode == 2 and "gives 5,488 features an image; gentool takes at most 4,096" in proc.stderr, proc.stderr


@pytest.mark.parametrize("labels, message", [(np.full(8, 1e30), "labels must be 8 non-negative integers"),
                                             (np.full(8, 10**12), "labels must be class indices below 100000")])
def test_labels_are_checked_before_any_table_is_sized_by_them(tmp_path, labels, message):
    np.savez(tmp_path / "set.npz", images=np.zeros((8, 28, 28), np.uint8), labels=labels)
    proc = gentool("train", "gan", "--conditional", "--data", tmp_path / "set.npz", "--epochs", "1", "--out", tmp_path / "run", check=False)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr


def _dead_pid() -> int:
    import subprocess
    import sys

    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout)


def test_a_claim_is_released_however_a_training_ends_and_a_dead_ones_is_taken_over(runs, tmp_path, warm):
    """A run directory left by a training killed before its first checkpoint (only its claim, from
    a process that is gone) is trained into again; a live claim refuses --resume; of two --resume
    of one run at once, one trains and the other is told; and a finished training holds no claim."""
    import socket

    from gentool import checkpoint, runs as listing

    left = tmp_path / "left"
    left.mkdir()
    (left / listing.CLAIM).write_text(f"{_dead_pid()} {socket.gethostname()}\n")
    args = ["vae", "--arch", "mlp", "--hidden", "16", "--data", "mnist", "--limit", "64", "--epochs", "1", "--no-export"]
    proc = gentool("train", *args, "--out", left)
    assert "which is gone: taking it over" in proc.stderr and not (left / listing.CLAIM).exists()
    (left / listing.CLAIM).write_text(f"{os.getpid()} {socket.gethostname()}\n")  # a live process's
    proc = gentool("train", "--resume", left, "--epochs", "2", check=False)
    assert proc.returncode == 2 and f"is being trained by process {os.getpid()}" in proc.stderr
    (left / listing.CLAIM).unlink()
    shutil.copytree(runs["vae"], tmp_path / "both")
    resume = ["train", "--resume", tmp_path / "both", "--epochs", "4", "--no-export"]
    results = sorted((p.returncode, p.stderr) for p in warm.run(resume, resume))
    assert [code for code, _ in results] == [0, 2] and "is being trained by process" in results[1][1], results
    assert checkpoint.read_meta(tmp_path / "both")["epoch"] == 4 and not (tmp_path / "both" / listing.CLAIM).exists()


def test_plot_draws_what_is_drawable_of_any_metrics(runs, tmp_path):
    """Epochs without losses, or with NaN, Infinity, 1e308, strings and flags, are no internal error."""
    run = _copy_run(runs["vae"], tmp_path, "run")
    (run / "metrics.jsonl").write_text('{"epoch": 1}\n{"epoch": 2, "test_loss": NaN, "train_loss": 1e308, "fid_1k": Infinity, "x": "a", "ok": true}\n')
    proc = gentool("plot", run, "-o", tmp_path / "none.png", check=False)
    assert proc.returncode == 2 and "has no figures to draw" in proc.stderr and not (tmp_path / "none.png").exists()
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 3, "test_loss": 540.5}\n')
    gentool("plot", run, "-o", tmp_path / "some.png")
    assert (tmp_path / "some.png").stat().st_size > 1000
