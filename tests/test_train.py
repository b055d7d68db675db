"""Training, checkpoints, resume, evaluation and export on the torch side."""

import json
import os
import signal

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from safetensors.torch import load_file

from conftest import gentool, in_process
from gentool import checkpoint, train as training


def tiny(tmp_path, name="run", **kw):
    options = dict(model="vae", data="mnist", epochs=2, batch_size=64, limit=192, out=tmp_path / name,
                   device="cpu", hparam_args=("--arch", "mlp", "--hidden", "32", "--latent-dim", "4"), export=False)
    options.update(kw)
    return training.Options(**options)


def weights(run_dir):
    return load_file(str(run_dir / checkpoint.WEIGHTS))


def assert_same_weights(a, b):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


def test_run_directory_is_self_describing(runs):
    run = runs["vae"]
    assert {p.name for p in run.iterdir()} >= {"model.safetensors", "resume.pt", "metrics.jsonl", "grids", "encoder.onnx", "decoder.onnx"}
    meta = checkpoint.read_meta(run)
    assert meta["model"] == "vae" and meta["hparams"]["arch"] == "mlp" and meta["hparams"]["latent_dim"] == 20
    assert meta["image_shape"] == [1, 28, 28] and meta["data"] == "mnist" and meta["epoch"] == 1
    assert meta["seed"] == 0 and set(meta["versions"]) == {"gentool", "torch"}
    assert abs(meta["data_stats"]["mean"] - 0.13) < 0.02
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1] and "test_neg_elbo" in rows[0] and "train_kl" in rows[0]
    assert sorted(p.name for p in (run / "grids").iterdir()) == ["reconstructions-001.png", "samples-001.png"]
    model, _ = checkpoint.load(run)
    assert sum(p.numel() for p in model.parameters()) == 652824


def test_init_fine_tunes_from_a_run_on_other_data(tmp_path, runs):
    start = runs["vae"]
    tuned = training.run(training.Options(model="", init=start, data="fashion-mnist", epochs=1, batch_size=64, limit=64,
                                           lr=1e-12, out=tmp_path / "tuned", device="cpu"))
    meta = checkpoint.read_meta(tuned)
    assert meta["model"] == "vae" and meta["hparams"] == checkpoint.read_meta(start)["hparams"]
    assert meta["data"] == "fashion-mnist" and meta["train"]["init"] == str(start) and meta["epoch"] == 1
    before, after = weights(start), weights(tuned)
    assert before.keys() == after.keys()
    assert all(torch.allclose(before[k], after[k], atol=1e-8) for k in before if k.startswith(("encoder", "decoder")))
    np.save(tmp_path / "wide.npy", np.zeros((8, 28, 36), np.uint8))
    for args, message in [
        (["train", "ae", "--init", start, "--data", "mnist"], "is a vae model, not ae"),
        (["train", "--init", start, "--data", "mnist", "--beta", "2"], "--init takes the model and its options"),
        (["train", "--init", start, "--resume", start], "--init takes the model and its options"),
        (["train", "--init", runs["ae"], "--data", tmp_path / "wide.npy"], "its weights do not fit images of shape [1, 28, 36]"),
    ]:
        proc = gentool(*args, check=False, cwd=tmp_path)
        assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, (args, proc.stderr)


@pytest.mark.parametrize("schedule, signum", [("constant", signal.SIGINT), ("cosine", signal.SIGTERM)])
def test_ctrl_c_or_sigterm_saves_a_checkpoint_that_resumes_exactly(tmp_path, monkeypatch, schedule, signum):
    straight = training.run(tiny(tmp_path, "straight", lr_schedule=schedule))
    from gentool.zoo.vae import VAE

    original, calls = VAE.phase_losses, []

    def interrupt_at_step_5(self, *args):
        calls.append(1)
        if len(calls) == 5:
            os.kill(os.getpid(), signum)
        return original(self, *args)

    monkeypatch.setattr(VAE, "phase_losses", interrupt_at_step_5)
    with pytest.raises(SystemExit) as stop:
        training.run(tiny(tmp_path, "interrupted", lr_schedule=schedule))
    assert stop.value.code == 128 + signum
    assert checkpoint.read_meta(tmp_path / "interrupted")["step"] == 2  # 3 steps an epoch: epoch 2, step 2
    monkeypatch.setattr(VAE, "phase_losses", original)
    resumed = training.run(training.Options(model="", resume=tmp_path / "interrupted", device="cpu", export=False))
    assert_same_weights(straight, resumed)
    assert checkpoint.read_meta(resumed)["train"]["lr_schedule"] == schedule


def test_cosine_annealing_runs_each_group_from_its_own_rate_to_zero():
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in range(3)]
    optimizers = {"g": torch.optim.Adam(params[:1], lr=2e-4), "d": torch.optim.Adam(params[1:], lr=1e-3)}
    rates = []
    for done in (0, 5, 10):
        training.anneal(optimizers, done, 10)
        rates.append([opt.param_groups[0]["lr"] for opt in optimizers.values()])
    assert rates[0] == [2e-4, 1e-3] and rates[1] == pytest.approx([1e-4, 5e-4]) and rates[2] == pytest.approx([0, 0])


def test_train_refuses_bad_options(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for args, message in [
        (["train", "nope", "--data", "mnist"], "unknown model 'nope'"),
        (["train", "vae", "--data", "nope"], "unknown dataset 'nope'"),
        (["train", "vae"], "--data is required"),
        (["train", "vae", "--data", "mnist", "--bogus", "1"], "has no option --bogus"),
        (["train", "vae", "--data", "mnist", "--epochs", "0"], "--epochs must be positive"),
        (["train", "vae", "--data", "mnist", "--lr-schedule", "step"], "--lr-schedule must be one of constant, cosine"),
        (["train", "vae", "--data", "mnist", "--limit", "-3"], "--limit must be at least 1"),
        (["train", "vae", "--data", "mnist", "--device", "cuda"], "--device cuda"),
        (["train", "--resume", tmp_path], "no checkpoint at"),
    ]:
        proc = in_process(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert message in proc.stderr and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_evaluate_reports_the_documented_keys(runs):
    vae = json.loads(gentool("evaluate", runs["vae"], "--json", "--limit", "200", "--iw-samples", "5").stdout)
    assert set(vae) == {"model", "data", "split", "n", "mse", "bce", "psnr_db", "ssim", "neg_elbo_nats", "kl_nats",
                        "iw_nll_nats", "iw_samples", "iw_images", "active_units", "compression_ratio"}
    assert vae["n"] == vae["iw_images"] == 200 and vae["split"] == "test" and vae["iw_nll_nats"] < vae["neg_elbo_nats"] + 5
    ae = json.loads(gentool("evaluate", runs["ae"], "--json", "--limit", "200").stdout)
    assert set(ae) == {"model", "data", "split", "n", "mse", "bce", "psnr_db", "ssim", "compression_ratio"}
    assert 0 < ae["ssim"] < 1 and ae["psnr_db"] > 5


def test_the_iw_bound_takes_evenly_spaced_images_unless_full(runs, monkeypatch, capsys):
    """The slow figure on an evenly spaced subset by default, said in the output; --full on the whole
    split; and a line on stderr when the evaluation starts, off a terminal too."""
    from gentool.evaluate import evaluate
    from gentool.zoo import base, vae

    assert [len(base.evenly_spaced(torch.arange(250), {"n": 1000, "offset": o, "full": False}, 100)) for o in (0, 250, 500)] == [25] * 3
    assert base.evenly_spaced(torch.arange(250), {"n": 1000, "offset": 250, "full": False}, 300)[:2].tolist() == [2, 5]
    monkeypatch.setattr(vae, "IW_IMAGES", 60)
    subset = evaluate(runs["vae"], limit=200, iw_samples=3)
    assert subset["n"] == 200 and subset["iw_images"] == 67 and subset["iw_samples"] == 3
    assert "vae metrics of 200 images ..." in capsys.readouterr().err
    assert evaluate(runs["vae"], limit=200, iw_samples=3, full=True)["iw_images"] == 200
    with pytest.raises(training.UsageError, match="--full is for cae, ddpm, vae models"):
        evaluate(runs["ae"], limit=10, full=True)


@pytest.mark.parametrize("damage", ["missing", "truncated", "not-gentool"])
def test_bad_checkpoints_are_usage_errors(runs, tmp_path, damage):
    target = tmp_path / "model.safetensors"
    if damage == "truncated":
        target.write_bytes((runs["ae"] / "model.safetensors").read_bytes()[:1000])
    elif damage == "not-gentool":
        from safetensors.torch import save_file

        save_file({"w": torch.zeros(2)}, str(target))
    proc = gentool("evaluate", target, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) == 1


def test_export_writes_checked_graphs_with_metadata(runs, tmp_path):
    proc = gentool("export", runs["vae"], "--onnx", "-o", tmp_path / "exp")
    assert "max |torch - onnxruntime|" in proc.stderr
    model, _ = checkpoint.load(runs["vae"])
    for role in ("encoder", "decoder"):
        proto = onnx.load(tmp_path / "exp" / f"{role}.onnx")
        onnx.checker.check_model(proto)
        meta = {p.key: p.value for p in proto.metadata_props}
        meta = {k: json.loads(v) for k, v in meta.items()}
        assert meta["gentool.model"] == "vae" and meta["gentool.role"] == role and meta["gentool.classes"] == [str(d) for d in range(10)]
        assert meta["gentool.image_shape"] == [1, 28, 28] and meta["gentool.latent_dim"] == 20 and meta["gentool.version"]
    session = onnxruntime.InferenceSession(str(tmp_path / "exp" / "decoder.onnx"), providers=["CPUExecutionProvider"])
    z = np.random.default_rng(0).standard_normal((5, 20)).astype(np.float32)
    with torch.no_grad():
        expected = torch.sigmoid(model.decoder(torch.from_numpy(z))).numpy()
    assert np.abs(session.run(None, {"z": z})[0] - expected).max() < 1e-5


def test_onnx_without_gentool_metadata_is_refused(runs, tmp_path):
    proto = onnx.load(runs["ae"] / "decoder.onnx")
    del proto.metadata_props[:]
    onnx.save(proto, tmp_path / "plain.onnx")
    proc = gentool("sample", tmp_path / "plain.onnx", check=False)
    assert proc.returncode == 2 and "has no gentool metadata" in proc.stderr


def test_two_trainings_into_one_directory_one_wins(tmp_path, warm):
    """Started together into one --out: exactly one trains, the other exits 2 saying why; a training
    that fails before its first checkpoint leaves the directory reusable."""
    args = ["train", "vae", "--arch", "mlp", "--hidden", "16", "--data", "mnist", "--limit", "64", "--epochs", "1", "--out", tmp_path / "run"]
    results = sorted((p.returncode, p.stderr) for p in warm.run(args, args))
    assert [code for code, _ in results] == [0, 2], results
    assert "already exists and is not empty (or another training is writing it)" in results[1][1]
    assert checkpoint.read_meta(tmp_path / "run")["epoch"] == 1
    proc = gentool("train", "vae", "--data", "mnist", "--epochs", "1", "--lr", "nan", "--out", tmp_path / "fails", check=False)
    assert proc.returncode != 0 and list((tmp_path / "fails").iterdir()) == []


def test_a_checkpoint_is_one_unit(tmp_path, monkeypatch):
    """Killed between writing resume.pt and model.safetensors, the run still resumes exactly; an old
    resume.pt is refused; a full disk says so."""
    import safetensors.torch

    straight = training.run(tiny(tmp_path, "straight", epochs=3))
    original, saves = safetensors.torch.save_file, []

    def killed_at_the_second_weights_write(*args, **kwargs):
        saves.append(1)
        if len(saves) == 2:
            raise KeyboardInterrupt  # as if killed: resume.pt of epoch 2 is written, model.safetensors is not
        return original(*args, **kwargs)

    monkeypatch.setattr(safetensors.torch, "save_file", killed_at_the_second_weights_write)
    with pytest.raises(KeyboardInterrupt):
        training.run(tiny(tmp_path, "killed", epochs=3))
    monkeypatch.setattr(safetensors.torch, "save_file", original)
    assert checkpoint.read_meta(tmp_path / "killed")["epoch"] == 1
    resumed = training.run(training.Options(model="", resume=tmp_path / "killed", device="cpu", export=False))
    assert_same_weights(straight, resumed)

    state = torch.load(resumed / checkpoint.RESUME, weights_only=True)
    torch.save({k: v for k, v in state.items() if k not in ("model", "meta")}, resumed / checkpoint.RESUME)
    with pytest.raises(training.UsageError, match="written by an older gentool"):
        checkpoint.load_resume(resumed)

    def disk_full(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:319] . unexpected pos 204992 vs 204880")  # torch's words for it

    from gentool import files

    monkeypatch.setattr(torch, "save", disk_full)
    monkeypatch.setattr(files.shutil, "disk_usage", lambda path: type("Usage", (), {"free": 0})())
    model, meta = checkpoint.load(straight)
    with pytest.raises(files.GentoolError, match="^no space left on device: cannot write"):
        checkpoint.save(tmp_path / "straight", model, meta, {"epoch": 3})
    assert sorted(p.name for p in (tmp_path / "straight").iterdir() if p.name.startswith(".") and p.name != ".gentool-run") == []


def test_an_export_is_one_unit_of_one_origin(runs, digits, tmp_path, monkeypatch):
    """Graphs of different checkpoints are refused together; a failing export replaces nothing."""
    import shutil

    from gentool import export as exporting

    model, meta = checkpoint.load(runs["vae"])
    exporting.export(model, meta, tmp_path / "a")
    with torch.no_grad():
        next(model.decoder.parameters()).add_(0.1)
    exporting.export(model, meta, tmp_path / "b")
    assert gentool("reconstruct", tmp_path / "a", digits[0], torch_free=True).stdout.startswith(b"\x89PNG")
    shutil.copy(tmp_path / "b" / "decoder.onnx", tmp_path / "a" / "decoder.onnx")
    proc = gentool("reconstruct", tmp_path / "a", digits[0], torch_free=True, check=False)
    assert proc.returncode == 2 and "exported from another checkpoint" in proc.stderr
    before = {p.name: p.read_bytes() for p in (tmp_path / "b").iterdir()}
    from pathlib import Path

    original, calls = Path.write_bytes, []

    def fails_on_the_second_graph(self, data):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return original(self, data)

    monkeypatch.setattr(Path, "write_bytes", fails_on_the_second_graph)
    with pytest.raises(exporting.GentoolError, match="^no space left on device: cannot write .*decoder.onnx"):
        exporting.export(model, {**meta, "epoch": 7}, tmp_path / "b")
    assert {p.name: p.read_bytes() for p in (tmp_path / "b").iterdir()} == before


# Code a killed training runs first: SIGKILL as the n-th rename onto a file whose name ends so is
# about to happen (its new content written whole beside it), or at the n-th step.
_KILLER = """
import os, signal
name, nth = KILL_AT.rsplit(":", 1)
seen = [0]
def hit():
    seen[0] += 1
    if seen[0] == int(nth):
        os.kill(os.getpid(), signal.SIGKILL)
if name == "step":
    import gentool.train as training
    step = training.train_step
    def counted(*args, **kwargs):
        hit()
        return step(*args, **kwargs)
    training.train_step = counted
else:
    replace = os.replace
    def counted(src, dst):
        if str(dst).endswith(name):
            hit()
        return replace(src, dst)
    os.replace = counted
"""
# Where each run is killed, in turn: before its first checkpoint, mid-epoch, between the two files of
# a checkpoint, while the metrics and a grid are written, and during the export.
KILLS = ["model.safetensors:1", "step:5", "resume.pt:2", "metrics.jsonl:3", ".png:4", ".onnx:1"]


def test_kill_9_at_chosen_moments_then_resume_is_exact(tmp_path, warm):
    """A short run killed with SIGKILL at each moment of KILLS, resumed each time: its final weights
    are the uninterrupted run's, and no temporary file of a killed write is left."""
    import shutil

    args = ["--data", "mnist", "--limit", "96", "--batch-size", "32", "--epochs", "8", "--device", "cpu"]
    model = ["vae", "--arch", "mlp", "--hidden", "32", "--latent-dim", "4"]
    gentool("train", *model, *args, "--out", tmp_path / "straight", "--no-export")
    run = tmp_path / "killed"
    for kill in KILLS:
        resumable = (run / checkpoint.RESUME).is_file()
        if not resumable and run.exists():  # killed before its first checkpoint: start again
            shutil.rmtree(run)
        command = ["--resume", run, "--device", "cpu"] if resumable else [*model, *args, "--out", run]
        (proc,) = warm.run(["train", *command], prelude=f"KILL_AT = {kill!r}\n{_KILLER}")
        assert proc.returncode == -signal.SIGKILL, (kill, proc.stderr[-500:])
    gentool("train", "--resume", run, "--device", "cpu")
    assert_same_weights(tmp_path / "straight", run)
    assert sorted(p.name for p in run.glob("*.onnx")) == ["decoder.onnx", "encoder.onnx"]
    assert not [p for p in run.rglob("*") if ".tmp" in p.name]


@pytest.mark.parametrize("raw", ["{not json", '"a string"', '{"model": "vae"}', '{"model": "vae", "image_shape": [1, 28, 28], "hparams": {"latent_dim": "many"}}'])
def test_garbled_checkpoint_metadata_is_a_usage_error(runs, tmp_path, raw):
    from safetensors.torch import save_file

    save_file(weights(runs["vae"]), str(tmp_path / "model.safetensors"), metadata={"gentool": raw})
    proc = gentool("evaluate", tmp_path, check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "internal error" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("key, value", [("size_multiple", "0"), ("factor", '"two"'), ("image_shape", "[1, 28]"), ("classes", "7")])
def test_lying_graph_metadata_is_a_usage_error(runs, digits, tmp_path, key, value):
    import shutil

    from test_score_probe import _set_meta

    for role in ("encoder", "decoder"):
        shutil.copy(runs["vae"] / f"{role}.onnx", tmp_path)
        _set_meta(tmp_path / f"{role}.onnx", f"gentool.{key}", value)
    proc = gentool("reconstruct", tmp_path, digits[0], torch_free=True, check=False)
    assert proc.returncode == 2 and f"metadata gentool.{key} = " in proc.stderr and len(proc.stderr.splitlines()) == 1
