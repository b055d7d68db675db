import atexit
import os
import shutil
import tempfile
from pathlib import Path

# The real MNIST and Fashion-MNIST files live in ../shared/data next to the repository. A relative
# GENTOOL_DATA_DIR (the README's test command gives one) means the folder it names from where pytest
# was started: made absolute once here, so that tests running gentool in other folders find it too.
os.environ["GENTOOL_DATA_DIR"] = os.path.abspath(os.environ.get("GENTOOL_DATA_DIR") or Path(__file__).resolve().parents[1].parent / "shared" / "data")
# Cached features of real splits go to a fresh folder, not the user's cache.
if "GENTOOL_CACHE_DIR" not in os.environ:
    os.environ["GENTOOL_CACHE_DIR"] = tempfile.mkdtemp(prefix="gentool-cache-")
    atexit.register(shutil.rmtree, os.environ["GENTOOL_CACHE_DIR"], True)

import gzip
import subprocess
import sys

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ["GENTOOL_DATA_DIR"])

# Runs the CLI in a fresh interpreter; with torch_free, `import torch` / `import onnx` fail there.
_LAUNCH = """
import sys
if sys.argv[1] == "--torch-free":
    class _Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "onnx", "onnxscript", "safetensors"):
                raise ImportError(f"blocked: {name}")
    sys.meta_path.insert(0, _Block())
from gentool.cli import main
sys.argv = ["gentool"] + sys.argv[2:]
main()
"""


def psnr(a, b) -> float:
    """PSNR in dB (range 1) between two single images."""
    from gentool import metrics

    return float(metrics.psnr_db(np.asarray(a, np.float64)[None, None], np.asarray(b, np.float64)[None, None])[0])


def png(data_bytes: bytes) -> np.ndarray:
    """PNG bytes -> pixels in [0, 1] as float64."""
    import io

    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data_bytes)), np.float64) / 255


def gentool(*args, torch_free=False, stdin=None, cwd=None, check=True, env=None):
    """Run `gentool ARGS`; returns the CompletedProcess (stdout as bytes, stderr as text). `env`
    changes the environment (a None value removes the variable)."""
    flag = "--torch-free" if torch_free else "--with-torch"
    environment = {**os.environ, "NO_COLOR": "1", **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-c", _LAUNCH, flag, *map(str, args)],
        input=stdin, capture_output=True, cwd=cwd or ROOT, env={k: v for k, v in environment.items() if v is not None},
    )
    proc.stderr = proc.stderr.decode()
    if check and proc.returncode != 0:
        raise AssertionError(f"gentool {' '.join(map(str, args))} exited {proc.returncode}: {proc.stderr}")
    return proc


def in_process(*args, stdin: bytes = b""):
    """Run `gentool ARGS` in this process, through `gentool.cli.main` (where the process boundary is
    not the point: usage errors, plug-ins registered by a test); returns a CompletedProcess like
    `gentool` (stdout as bytes, stderr as text)."""
    import io

    from gentool.cli import main

    out, err = io.TextIOWrapper(io.BytesIO(), write_through=True), io.StringIO()
    saved = sys.argv, sys.stdin, sys.stdout, sys.stderr
    sys.argv, sys.stdin, sys.stdout, sys.stderr = ["gentool", *map(str, args)], io.TextIOWrapper(io.BytesIO(stdin)), out, err
    try:
        main()
        code = 0
    except SystemExit as e:
        code = e.code or 0
    finally:
        sys.argv, sys.stdin, sys.stdout, sys.stderr = saved
    return subprocess.CompletedProcess(args, code, out.buffer.getvalue(), err.getvalue())


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    """Tiny vae and ae runs on 256 MNIST images, trained once for the whole session."""
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for name, extra in [("vae", ["--arch", "mlp"]), ("ae", [])]:
        gentool("train", name, "--data", "mnist", "--limit", "256", "--epochs", "1", "--batch-size", "64",
                "--out", root / name, *extra)
        out[name] = root / name
    return out


@pytest.fixture(scope="session")
def digits(tmp_path_factory):
    """The first two MNIST test digits as PNG files."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("digits")
    raw = gzip.open(DATA / "mnist" / "t10k-images-idx3-ubyte.gz").read()
    x = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)
    paths = []
    for i in range(2):
        paths.append(folder / f"digit{i}.png")
        Image.fromarray(x[i]).save(paths[-1])
    return paths
