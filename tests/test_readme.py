"""The README as a newcomer follows it: every command of its `sh` blocks runs, in order, as written
(the installs aside, which `.ci/run` performs), in a fresh folder holding the input files the examples
name; only trainings are shortened (one epoch of a few images) and evaluations made smaller."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT
from gentool import data

SHORT_TRAINING = ["--epochs", "1", "--limit", "64", "--batch-size", "32"]
SETUP = re.compile(r"python3 -m venv|pip install|pytest")  # what .ci/run does, not an example to run here


def readme_commands() -> list[str]:
    """The command lines of the README's `sh` blocks, without comments and without the set-up steps."""
    text = (ROOT / "README.md").read_text()
    lines = [re.sub(r"\s+#\s.*$", "", line).strip() for block in re.findall(r"^```sh\n(.*?)^```", text, re.S | re.M)
             for line in block.splitlines()]
    commands = []
    for line in filter(None, lines):
        parts = [part.removeprefix(".venv/bin/") for part in line.split(" && ") if not SETUP.search(part)]
        if parts:
            commands.append(" && ".join(parts))
    return commands


def shortened(command: str) -> str:
    """One simple command, with its training cut to SHORT_TRAINING and its evaluation to a few images
    (the words added before any redirection)."""
    redirection = re.search(r"\s[0-9]?(>>?|<)\s", command)
    command, tail = (command[: redirection.start()], command[redirection.start():]) if redirection else (command, "")
    words = shlex.split(command)
    if "gentool" not in words:
        return command + tail
    verb = words[words.index("gentool") + 1:][:1]
    if verb == ["train"] and "--help" not in words:
        words += SHORT_TRAINING
    elif verb == ["evaluate"]:
        if "--samples" in words:
            words[words.index("--samples") + 1] = "200"
        else:
            words += ["--limit", "100"]
    elif verb == ["fid"]:
        words += ["--limit", "300"]
    return shlex.join(words) + tail


def runnable(line: str) -> str:
    """A README line with each of its simple commands (between `&&`, `;` and `|`) shortened."""
    pieces = re.split(r"(\s*(?:&&|;|\|)\s*)", line)
    return "".join(piece if i % 2 else shortened(piece) for i, piece in enumerate(pieces))


def write_inputs(folder: Path) -> None:
    """The files the examples name: digits (digit.png, a.png, b.png), a noisy and a small one, three
    folders of digits for `arithmetic`, and photos/ of mixed sizes in colour for `train --size`."""
    digits = data.load("mnist", "test", 40).images[:, 0]
    save = lambda array, name: Image.fromarray(array).save(folder / name)  # noqa: E731
    for name, digit in zip(("digit.png", "a.png", "b.png"), digits):
        save(digit, name)
    noise = np.random.default_rng(0).normal(0, 40, digits[3].shape)
    save(np.clip(digits[3] + noise, 0, 255).astype(np.uint8), "noisy.png")
    Image.fromarray(digits[4]).resize((14, 14), Image.Resampling.LANCZOS).save(folder / "small.png")
    for k, name in enumerate(("glasses", "plain", "women")):
        (folder / name).mkdir()
        for i in range(3):
            save(digits[5 + 3 * k + i], f"{name}/{i}.png")
    (folder / "photos").mkdir()
    for i, digit in enumerate(digits[14:40]):
        side = 24 + 4 * (i % 5)
        Image.fromarray(digit).convert("RGB").resize((side, side + 8 * (i % 2))).save(folder / "photos" / f"{i}.png")


@pytest.mark.readme
def test_every_readme_command_runs_as_written(tmp_path):
    commands = readme_commands()
    assert any(c.startswith("gentool train vae --data mnist && gentool sample") for c in commands), "the first command"
    assert sum(c.startswith("gentool ") for c in commands) > 30
    write_inputs(tmp_path)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "HOME": str(tmp_path),
           "NO_COLOR": "1"}
    failed = []
    for command in commands:
        proc = subprocess.run(["bash", "-o", "pipefail", "-c", runnable(command)], cwd=tmp_path, env=env,
                              capture_output=True, text=True)
        if proc.returncode != 0 or "Traceback" in proc.stderr:
            failed.append(f"{command}\n  ran as: {runnable(command)}\n  exit {proc.returncode}: {proc.stderr.strip()[-600:]}")
    assert not failed, "README commands that fail:\n" + "\n".join(failed)
    for output in ("samples.png", "metrics.txt", "grid.png", "out.png", "codes.npy", "decoded.png", "strip.png", "roc.png",
                   "clean.png", "big.png", "sevens.png", "sum.png", "faces.png", "samples/099.png", "runs/photos/decoder.onnx"):
        assert (tmp_path / output).stat().st_size > 0, output
    assert "iw_nll_nats" in (tmp_path / "metrics.txt").read_text()


def test_ci_runs_the_readme_test_command():
    """`.ci/run` takes its command from the README, so the two cannot disagree."""
    found = subprocess.run(["bash", "-c", "grep -o 'awk .*README.md' .ci/run | bash"], cwd=ROOT, capture_output=True, text=True).stdout
    assert found.strip().endswith("GENTOOL_DATA_DIR=../shared/data .venv/bin/python -m pytest -q && "
                                  "GENTOOL_DATA_DIR=../shared/data .venv/bin/python -m pytest -q -m readme")
    assert found.strip() in (ROOT / "README.md").read_text()
