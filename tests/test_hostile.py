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
