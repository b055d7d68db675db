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

import contextlib
import gzip
import subprocess
import sys

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ["GENTOOL_DATA_DIR"])

# What a torch-free install lacks.
TORCH_SIDE = ("torch", "onnx", "onnxscript", "safetensors")

# Runs the CLI in a fresh interpreter; with --torch-free, importing TORCH_SIDE fails there.
_LAUNCH = f"""
import sys
if sys.argv[1] == "--torch-free":
    class _Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {TORCH_SIDE}:
                raise ImportError(f"blocked: {{name}}")
    sys.meta_path.insert(0, _Block())
from gentool.cli import main
sys.argv = ["gentool"] + sys.argv[2:]
main()
"""


class _TorchFree:
    """Within it, this process is as a torch-free install: the torch side and every gentool module
    leave sys.modules (gentool's are imported afresh, so one that imports torch fails as it would
    there) and importing the torch side fails; all is put back on the way out."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in TORCH_SIDE:
            raise ImportError(f"blocked: {name}")

    def __enter__(self):
        self.hidden = {name: sys.modules.pop(name) for name in list(sys.modules) if name.split(".")[0] in (*TORCH_SIDE, "gentool")}
        sys.meta_path.insert(0, self)

    def __exit__(self, *exc):
        sys.meta_path.remove(self)
        for name in [name for name in sys.modules if name.split(".")[0] == "gentool"]:
            del sys.modules[name]
        sys.modules.update(self.hidden)


def psnr(a, b) -> float:
    """PSNR in dB (range 1) between two single images."""
    from gentool import metrics

    return float(metrics.psnr_db(np.asarray(a, np.float64)[None, None], np.asarray(b, np.float64)[None, None])[0])


def png(data_bytes: bytes) -> np.ndarray:
    """PNG bytes -> pixels in [0, 1] as float64."""
    import io

    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data_bytes)), np.float64) / 255


def gentool(*args, torch_free=False, fresh=False, stdin=None, cwd=None, check=True, env=None):
    """Run `gentool ARGS`; returns a CompletedProcess (stdout as bytes, stderr as text). In this
    process through `gentool.cli.main` (`torch_free`: as a torch-free install, where importing torch
    fails), or with `fresh` in a new interpreter, where the process boundary is the point. `env`
    changes the environment for the call (a None value removes the variable); `cwd` is the folder
    it runs in."""
    environment = {**os.environ, "NO_COLOR": "1", **(env or {})}
    environment = {k: v for k, v in environment.items() if v is not None}
    if fresh:
        proc = subprocess.run(
            [sys.executable, "-c", _LAUNCH, "--torch-free" if torch_free else "--with-torch", *map(str, args)],
            input=stdin, capture_output=True, cwd=cwd or ROOT, env=environment,
        )
        proc.stderr = proc.stderr.decode()
    else:
        with _TorchFree() if torch_free else contextlib.nullcontext():
            proc = in_process(*args, stdin=stdin or b"", cwd=cwd, env=environment)
    if check and proc.returncode != 0:
        raise AssertionError(f"gentool {' '.join(map(str, args))} exited {proc.returncode}: {proc.stderr}")
    return proc


def in_process(*args, stdin: bytes = b"", cwd=None, env: dict | None = None):
    """Run `gentool ARGS` in this process, through `gentool.cli.main`, in folder `cwd` with the
    environment `env` (both restored after); returns a CompletedProcess like `gentool`."""
    import io
    import signal

    from gentool.cli import main

    out, err = io.TextIOWrapper(io.BytesIO(), write_through=True), io.StringIO()
    saved = sys.argv, sys.stdin, sys.stdout, sys.stderr
    saved_env, saved_cwd, saved_term = dict(os.environ), os.getcwd(), signal.getsignal(signal.SIGTERM)
    sys.argv, sys.stdin, sys.stdout, sys.stderr = ["gentool", *map(str, args)], io.TextIOWrapper(io.BytesIO(stdin)), out, err
    if env is not None:
        os.environ.clear()
        os.environ.update(env)
    os.chdir(cwd or ROOT)
    try:
        main()
        code = 0
    except SystemExit as e:
        code = e.code or 0
    finally:
        sys.argv, sys.stdin, sys.stdout, sys.stderr = saved
        os.environ.clear()
        os.environ.update(saved_env)
        os.chdir(saved_cwd)
        signal.signal(signal.SIGTERM, saved_term)
    return subprocess.CompletedProcess(args, code, out.buffer.getvalue(), err.getvalue())


# A process with torch, gentool and what a training first imports loaded, that forks a gentool
# process per command: a round of commands (JSON on stdin) starts together, each child first runs
# its prelude (code that arms a kill, say), and the round's exit codes come back (JSON on stdout;
# -N for a signal, as subprocess gives). Forked before any kernel ran, each child is a whole,
# separate gentool process, started in milliseconds instead of seconds.
_WARM = """
import json, os, sys
import onnxruntime, torch, torch.onnx
import gentool.cli, gentool.export, gentool.plots, gentool.train
torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # the first optimizer imports torch._dynamo (1.5 s)
gentool.plots._pyplot()
for line in sys.stdin:
    children = []
    for i, (argv, prelude) in enumerate(json.loads(line)):
        pid = os.fork()
        if pid == 0:
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
            os.dup2(os.open(f"{sys.argv[1]}/{i}.err", os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
            exec(prelude)
            sys.argv = ["gentool", *argv]
            try:
                gentool.cli.main()
            except SystemExit as stop:
                os._exit(stop.code if isinstance(stop.code, int) else 1)
            os._exit(0)
        children.append(pid)
    statuses = [os.waitpid(pid, 0)[1] for pid in children]
    print(json.dumps([-os.WTERMSIG(s) if os.WIFSIGNALED(s) else os.WEXITSTATUS(s) for s in statuses]), flush=True)
"""


class WarmGentool:
    """`run(*commands, prelude="")`: the commands as gentool processes started together from the
    warm process; a CompletedProcess each (stderr as text, no stdout)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.process = subprocess.Popen([sys.executable, "-c", _WARM, str(folder)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        cwd=ROOT, env={**os.environ, "NO_COLOR": "1"}, text=True)

    def run(self, *commands, prelude: str = "") -> list[subprocess.CompletedProcess]:
        import json

        self.process.stdin.write(json.dumps([[list(map(str, c)), prelude] for c in commands]) + "\n")
        self.process.stdin.flush()
        codes = json.loads(self.process.stdout.readline())
        return [subprocess.CompletedProcess(c, code, None, (self.folder / f"{i}.err").read_text()) for i, (c, code) in enumerate(zip(commands, codes))]

    def close(self):
        self.process.stdin.close()
        self.process.wait()


@pytest.fixture(scope="session")
def warm(tmp_path_factory):
    """Gentool processes forked from one that has the imports done (`WarmGentool`)."""
    started = WarmGentool(tmp_path_factory.mktemp("warm"))
    yield started
    started.close()


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
