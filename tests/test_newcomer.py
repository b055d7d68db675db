"""What a newcomer expects of the command line: versions and help, a torch-free model list, runs
that can be found, tables on stdout, an environment report, data found beside a checkout, and the
start of a training saying what it does."""

import json
import os
import shutil
import time

import pytest

from conftest import DATA, gentool
from gentool import __version__, cli, progress, zoo


def test_version_help_completion_and_bare_gentool():
    assert gentool("--version", torch_free=True, fresh=True).stdout.decode().strip() == f"gentool {__version__}"
    assert b"Usage" in gentool("-h", torch_free=True).stdout and b"--seed" in gentool("sample", "-h", torch_free=True).stdout
    assert b"--install-completion" in gentool("--help", torch_free=True).stdout
    words = {"_GENTOOL_COMPLETE": "complete_bash", "COMP_CWORD": "2"}
    assert gentool(env={**words, "COMP_WORDS": "gentool train wg"}, torch_free=True, fresh=True).stdout.split() == [b"wgan-gp"]
    assert gentool(env={**words, "COMP_WORDS": "gentool sa", "COMP_CWORD": "1"}, torch_free=True, fresh=True).stdout.split() == [b"sample"]
    bare = gentool(torch_free=True, check=False)
    assert bare.returncode == 2 and b"Commands" in bare.stdout and "error" not in bare.stderr


def test_each_verb_says_what_it_does_in_one_line():
    """The command list shows a docstring's first paragraph: one line, or it is cut mid-sentence."""
    for command in cli.app.registered_commands:
        summary = command.callback.__doc__.split("\n\n")[0]
        assert "\n" not in summary and len(summary) <= 110, command.callback.__name__


def test_models_lists_choices_without_torch_and_the_catalog_is_current():
    listed = json.loads(gentool("models", "--json", torch_free=True).stdout)
    assert listed == zoo.catalog() == {name: zoo.entry(cls) for name, cls in sorted(zoo.families().items())}, \
        "run `python -m gentool.zoo` after changing a family"
    assert listed["gan"]["options"]["loss"] == {"type": "str", "default": "ns", "choices": ["ns", "minimax", "lsgan"]}
    text = gentool("models", "dae", torch_free=True).stdout.decode()
    assert "gaussian|mask|salt-pepper" in text and "--blind" in text and "lr_schedule=cosine" in text
    unknown = gentool("models", "nope", torch_free=True, check=False)
    assert unknown.returncode == 2 and "choose one of ae," in unknown.stderr


def test_export_needs_no_format_flag(runs, tmp_path):
    """(`--onnx`, as the design card writes it, is what the other export tests pass.)"""
    gentool("export", runs["vae"], "-o", tmp_path / "plain")
    assert sorted(p.name for p in (tmp_path / "plain").iterdir()) == ["decoder.onnx", "encoder.onnx"]


def test_decode_of_an_image_says_so(runs, digits):
    proc = gentool("decode", runs["vae"], digits[0], torch_free=True, check=False)
    assert proc.returncode == 2 and "is an image, not codes" in proc.stderr and len(proc.stderr.splitlines()) == 1


def test_runs_are_listed_and_a_bare_name_says_which_it_took(runs, tmp_path):
    for i, name in enumerate(["vae-mnist", "vae-mnist-2"]):
        shutil.copytree(runs["vae"], tmp_path / "runs" / name)
        os.utime(tmp_path / "runs" / name, (time.time() - 100 + i, time.time() - 100 + i))
    shutil.copytree(runs["ae"], tmp_path / "runs" / "ae-mnist")
    rows = [json.loads(line) for line in gentool("runs", "vae", "--json", cwd=tmp_path, torch_free=True).stdout.splitlines()]
    assert [r["run"] for r in rows] == ["runs/vae-mnist-2", "runs/vae-mnist"]
    assert rows[0]["model"] == "vae" and rows[0]["epoch"] == rows[0]["epochs"] == 1 and rows[0]["graphs"] == ["decoder", "encoder"]
    assert rows[0]["test_loss"] > 0
    table = gentool("runs", cwd=tmp_path, torch_free=True).stdout.decode()
    assert "runs/ae-mnist" in table and "runs/vae-mnist-2" in table
    drawn = gentool("sample", "vae", "-n", "1", cwd=tmp_path, torch_free=True)
    assert "'vae' is runs/vae-mnist-2 (1 epoch), the newest of 2" in drawn.stderr
    result = json.loads(gentool("evaluate", "vae", "--limit", "50", "--iw-samples", "0", "--json", cwd=tmp_path).stdout)
    assert result["model"] == "vae" and result["n"] == 50


def test_evaluate_prints_its_table_on_stdout(runs):
    proc = gentool("evaluate", runs["ae"], "--limit", "50")
    assert "psnr_db" in proc.stdout.decode() and "psnr_db" not in proc.stderr


def test_env_reports_versions_providers_and_data_without_torch():
    found = json.loads(gentool("env", "--json", torch_free=True).stdout)
    assert found["gentool"] == __version__ and found["torch"] is None and found["packages"]["numpy"]
    assert "CPUExecutionProvider" in found["onnxruntime"]["providers"]
    assert found["onnxruntime"]["cuda"] == "works" or found["onnxruntime"]["cuda"].startswith("no: ")
    assert found["datasets"]["mnist"] == str(DATA / "mnist")
    with_torch = json.loads(gentool("env", "--json").stdout)["torch"]
    assert with_torch["version"] and (with_torch["cuda"] == "works" or with_torch["cuda"].startswith("no: "))


def test_named_data_is_found_beside_a_checkout(tmp_path):
    (tmp_path / "shared" / "data").mkdir(parents=True)
    (tmp_path / "shared" / "data" / "mnist").symlink_to(DATA / "mnist")
    (tmp_path / "checkout").mkdir()
    unset = {"GENTOOL_DATA_DIR": None, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    found = json.loads(gentool("fid", "mnist:test", "mnist:train", "--limit", "100", "--json", cwd=tmp_path / "checkout",
                               env=unset, torch_free=True).stdout)
    assert found["n_reference"] == found["n_samples"] == 100


def test_a_training_starts_by_saying_what_it_does(tmp_path):
    proc = gentool("train", "ae", "--data", "mnist", "--limit", "64", "--epochs", "1", "--arch", "mlp", "--out", tmp_path / "ae", "--no-export")
    first = proc.stderr.splitlines()[0]
    for part in ("gentool train ae:", "parameters", "64 training and 64 test images of 1x28x28", "1 epoch of 1 step (batch 128",
                 "device cpu", f"run directory {tmp_path / 'ae'}"):
        assert part in first, part


def test_progress_off_a_terminal_is_a_line_now_and_then(capsys, monkeypatch):
    monkeypatch.setattr(progress, "HEARTBEAT", 0.0)
    reporter = progress.Reporter(steps=3, batch_size=2, examples=5)
    reporter.start_epoch("epoch 1/1", 0)
    for _ in range(3):
        reporter.step("loss 1.0")
    lines = capsys.readouterr().err.splitlines()
    assert [line.split("  ")[:2] for line in lines] == [["epoch 1/1", f"step {i}/3"] for i in (1, 2, 3)]
    assert all(line.endswith("img/s  loss 1.0") for line in lines)


def test_roc_curve_area_is_the_auroc():
    import numpy as np

    from gentool import metrics

    rng = np.random.default_rng(0)
    scores, positive = rng.integers(0, 8, 400).astype(float), rng.random(400) < 0.3  # many ties
    fpr, tpr = metrics.roc_curve(scores, positive)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1) and np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert np.trapezoid(tpr, fpr) == pytest.approx(metrics.auroc(scores, positive), abs=1e-12)


def test_training_draws_its_curves_and_plot_redraws_them(runs, tmp_path):
    from PIL import Image

    assert Image.open(runs["vae"] / "results.png").text["Software"] == f"gentool {__version__}"
    gentool("plot", runs["vae"], "-o", tmp_path / "curves.png", torch_free=True)
    piped = gentool("plot", runs["vae"], "-o", "-", torch_free=True).stdout
    assert piped.startswith(b"\x89PNG") and piped.endswith(b"IEND\xaeB`\x82")  # the PNG alone
    gentool("plot", runs["ae"], "--latent", "--limit", "300", "-o", tmp_path / "codes.png", torch_free=True)
    assert all(Image.open(tmp_path / name).size[0] > 300 for name in ("curves.png", "codes.png"))
    wrong = gentool("plot", runs["ae"], "--limit", "3", torch_free=True, check=False)
    assert wrong.returncode == 2 and "go with --latent" in wrong.stderr
    gentool("plot", runs["vae"], "-o", tmp_path / "curves.svg", torch_free=True)
    assert b"<svg" in (tmp_path / "curves.svg").read_bytes()[:500]
    wrong = gentool("plot", runs["vae"], "-o", tmp_path / "curves.jpg", torch_free=True, check=False)
    assert wrong.returncode == 2 and "figures are written as .png, .svg, .pdf" in wrong.stderr


def test_latent_scatter_projects_onto_the_widest_directions():
    import numpy as np

    from gentool import plots

    rng = np.random.default_rng(0)
    codes = rng.standard_normal((500, 5)) * [10, 0.1, 3, 0.1, 0.1]
    points, names = plots.project_2d(codes)
    assert abs(np.corrcoef(points[:, 0], codes[:, 0])[0, 1]) > 0.99 and abs(np.corrcoef(points[:, 1], codes[:, 2])[0, 1]) > 0.99
    assert "principal component 1" in names[0]
    assert plots.project_2d(codes[:, :2])[1] == ("code 1", "code 2")


def test_plots_without_matplotlib_say_how_to_get_it(monkeypatch):
    import sys

    from gentool import plots
    from gentool.errors import UsageError

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(UsageError, match=r"pip install 'gentool\[plot\]'"):
        plots.training_curves(".", "x.png")


def test_a_run_that_stopped_early_says_so(tmp_path):
    import struct

    from gentool import runs

    def checkpoint(run, epoch, epochs):
        header = json.dumps({"__metadata__": {"gentool": json.dumps({"model": "vae", "epoch": epoch, "train": {"epochs": epochs}})}}).encode()
        run.mkdir()
        (run / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)

    checkpoint(tmp_path / "short", 3, 10)
    checkpoint(tmp_path / "whole", 10, 10)
    assert runs._trained(tmp_path / "short") == " (3 of 10 epochs)" and runs._trained(tmp_path / "whole") == " (10 epochs)"
    assert runs.checkpoint_meta(tmp_path / "nothing.safetensors") is None


def test_an_output_folder_gets_one_png_per_image(runs, digits, tmp_path):
    """`-o DIR/` (or an existing folder): 000.png, 001.png, ..., each the grid's tile, with its index
    in the PNG text; the folder is made when it ends in '/'."""
    import numpy as np
    from PIL import Image

    from conftest import png

    proc = gentool("sample", runs["vae"], "-n", "12", "--seed", "5", "-o", f"{tmp_path / 'new'}/", torch_free=True)
    assert "wrote 12 images to" in proc.stderr and "000.png to 011.png" in proc.stderr
    names = sorted(p.name for p in (tmp_path / "new").iterdir())
    assert names == [f"{i:03d}.png" for i in range(12)]
    grid = png(gentool("sample", runs["vae"], "-n", "12", "--seed", "5", "--nrow", "12", torch_free=True).stdout)
    for i, name in enumerate(names):
        image = Image.open(tmp_path / "new" / name)
        assert json.loads(image.text["gentool"])["image"] == i
        assert np.array_equal(np.asarray(image, np.float64) / 255, grid[2:30, 2 + 30 * i : 30 + 30 * i])
    (tmp_path / "there").mkdir()
    gentool("reconstruct", runs["vae"], *digits, "-o", tmp_path / "there", torch_free=True)
    assert sorted(p.name for p in (tmp_path / "there").iterdir()) == ["000.png", "001.png"]
    (tmp_path / "file").write_text("x")
    proc = gentool("sample", runs["vae"], "-n", "2", "-o", f"{tmp_path / 'file'}/", torch_free=True, check=False)
    assert proc.returncode == 2 and "cannot create the folder" in proc.stderr


def test_a_relative_data_dir_means_the_folder_named_from_where_gentool_started(tmp_path):
    (tmp_path / "work").mkdir()
    found = json.loads(gentool("env", "--json", cwd=tmp_path / "work", env={"GENTOOL_DATA_DIR": "../store"}, torch_free=True).stdout)
    assert found["data_dir"] == str(tmp_path / "store")


def test_training_on_images_of_mixed_sizes_resizes_them_once(tmp_path, monkeypatch):
    """`--size`: every image resized as it loads (cached, and the run records it for evaluate);
    without it, mixed sizes and sides the network cannot take say which --size would do."""
    import numpy as np
    from PIL import Image

    from gentool import data, train as training

    rng = np.random.default_rng(0)
    (tmp_path / "photos").mkdir()
    for i in range(20):
        h, w = rng.integers(20, 50, 2)
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(tmp_path / "photos" / f"{i}.png")
    monkeypatch.setenv("GENTOOL_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(training.UsageError, match=r"all images must have one size \(`gentool train --size"):
        data.load(str(tmp_path / "photos"))
    resized = data.load(str(tmp_path / "photos"), "train", size=(12, 16))
    assert resized.images.shape == (18, 3, 12, 16) and len(list((tmp_path / "cache" / "resized").iterdir())) == 1
    assert np.array_equal(data.load(str(tmp_path / "photos"), "train", size=(12, 16)).images, resized.images)  # from the cache
    with pytest.raises(training.UsageError, match="divisible by 4 .*: resize them as they load with --size 28x28"):
        training.run(training.Options(model="ae", data=str(tmp_path / "photos"), size=(30, 30), out=tmp_path / "odd", device="cpu"))
    run = training.run(training.Options(model="ae", data=str(tmp_path / "photos"), size=(12, 16), epochs=1, out=tmp_path / "run",
                                        device="cpu", hparam_args=("--arch", "mlp", "--hidden", "16", "--latent-dim", "2")))
    assert json.loads(gentool("evaluate", run, "--json").stdout)["n"] == 2
    for wrong in ("0", "12x", "axb", "1x2x3"):
        with pytest.raises(training.UsageError, match="--size takes H or HxW"):
            data.parse_size(wrong)


def test_a_training_ends_by_saying_where_its_results_are_and_what_to_try(runs):
    from gentool import run_summary
    from gentool.runtime.artifact import Artifact

    meta = {"model": "vae", "data": "mnist", "epoch": 1}
    rows = [{"epoch": 1, "test_loss": 250.5, "fid_1k": 80.25, "seconds": 1.5}]
    text = run_summary.closing(runs["vae"], meta, rows, Artifact(str(runs["vae"]), "cpu"), True)
    assert text.splitlines()[0] == "done: vae on mnist, 1 epoch (2s of training); test loss 250.500  fid_1k 80.25"
    for part in ("results.png", "grids/", "decoder.onnx, encoder.onnx", f"gentool sample {runs['vae']} -n 64",
                 f"gentool evaluate {runs['vae']}", f"gentool export {runs['vae']} -o exports/vae"):
        assert part in text, part


def test_progress_off_a_terminal_is_a_line_per_stage_and_per_heartbeat(capsys, monkeypatch):
    monkeypatch.setattr(progress, "HEARTBEAT", 0.0)
    assert list(progress.track(range(2), "counting", 2)) == [0, 1]
    monkeypatch.setattr(progress, "HEARTBEAT", 0.02)
    with progress.stage("thinking"):
        time.sleep(0.05)
    lines = capsys.readouterr().err.splitlines()
    assert lines[:3] == ["counting ...", "counting: 0/2 done, 0s", "counting: 1/2 done, 0s"]
    assert lines[3] == "thinking ..." and lines[4].startswith("thinking: ")


def test_a_verb_that_needs_a_missing_graph_names_what_was_asked(runs, digits, tmp_path):
    shutil.copytree(runs["vae"], tmp_path / "decoder-only")
    (tmp_path / "decoder-only" / "encoder.onnx").unlink()
    proc = gentool("interpolate", tmp_path / "decoder-only", *digits, torch_free=True, check=False)
    assert proc.returncode == 2 and "'interpolate A B' needs an encoder graph" in proc.stderr
