import io
import os
import subprocess
import sys

import pytest

from gentool import files
from gentool.errors import UsageError


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_atomic_write_creates_and_replaces(tmp_path):
    dest = tmp_path / "out.bin"
    files.atomic_write(dest, b"one")
    files.atomic_write(dest, b"two")
    assert dest.read_bytes() == b"two"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]
    assert dest.stat().st_mode & 0o777 != 0o600  # permissions follow the umask, not mkstemp's


@pytest.mark.parametrize("name", ["missing/out.bin", "a-directory"])
def test_atomic_write_unwritable(tmp_path, name):
    (tmp_path / "a-directory").mkdir()
    with pytest.raises(UsageError, match="cannot write"):
        files.atomic_write(tmp_path / name, b"data")
    assert [p.name for p in tmp_path.iterdir()] == ["a-directory"]


def test_atomic_path_keeps_suffix_and_cleans_up_on_error(tmp_path):
    dest = tmp_path / "model.onnx"
    dest.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with files.atomic_path(dest) as tmp:
            assert tmp.suffix == ".onnx" and tmp.parent == tmp_path
            tmp.write_bytes(b"half")
            raise RuntimeError("failed half way")
    assert dest.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]
    with files.atomic_path(dest) as tmp:
        tmp.write_bytes(b"new")
    assert dest.read_bytes() == b"new"


def test_write_stdout(capsysbinary):
    files.write_stdout(b"\x89PNG")
    assert capsysbinary.readouterr().out == b"\x89PNG"


def test_write_stdout_refuses_terminal(monkeypatch):
    monkeypatch.setattr(sys, "stdout", FakeTerminal())
    with pytest.raises(UsageError, match="terminal"):
        files.write_stdout(b"data")


@pytest.mark.parametrize("unbuffered", ["", "1"])
def test_write_stdout_to_pipes(unbuffered):
    code = "from gentool.files import write_stdout; write_stdout(b'x' * 10_000_000)"
    env = {**os.environ, "PYTHONUNBUFFERED": unbuffered}
    whole = subprocess.run([sys.executable, "-c", code], capture_output=True, env=env)
    assert whole.returncode == 0 and len(whole.stdout) == 10_000_000
    # A reader that goes away early (like `| head -c 10`): exit 141 as SIGPIPE gives, nothing on stderr.
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    proc.stdout.read(10)
    proc.stdout.close()
    assert proc.wait(timeout=30) == files.BROKEN_PIPE_EXIT
    assert proc.stderr.read() == b""


def test_read_input(tmp_path, monkeypatch):
    (tmp_path / "a").write_bytes(b"abc")
    (tmp_path / "empty").write_bytes(b"")
    assert files.read_input(str(tmp_path / "a")) == b"abc"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"from stdin")))
    assert files.read_input("-") == b"from stdin"
    with pytest.raises(UsageError, match="empty input"):
        files.read_input(str(tmp_path / "empty"))
    for bad in ("missing", ""):
        with pytest.raises(UsageError, match="cannot read"):
            files.read_input(str(tmp_path / bad))  # a missing file, then a directory


def test_atomic_write_keeps_permissions_and_writes_through_symlinks(tmp_path):
    private = tmp_path / "private.png"
    private.write_bytes(b"old")
    os.chmod(private, 0o600)
    files.atomic_write(private, b"new")
    assert private.read_bytes() == b"new" and private.stat().st_mode & 0o777 == 0o600
    target, link = tmp_path / "target.png", tmp_path / "link.png"
    target.write_bytes(b"old")
    link.symlink_to(target)
    files.atomic_write(link, b"new")
    assert link.is_symlink() and target.read_bytes() == b"new"
    dangling = tmp_path / "dangling.png"
    dangling.symlink_to(tmp_path / "made.png")
    files.atomic_write(dangling, b"made")
    assert dangling.is_symlink() and (tmp_path / "made.png").read_bytes() == b"made"
    long = tmp_path / ("x" * 250 + ".png")  # a valid name with no room for a longer temporary one
    files.atomic_write(long, b"long")
    assert long.read_bytes() == b"long"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["private.png", "target.png", "link.png", "dangling.png", "made.png", long.name])


def test_special_files_are_written_in_place(tmp_path, runs):
    """A FIFO's reader gets the image, and a device node stays a device (as root: a copy of /dev/null's)."""
    import stat
    import threading

    from conftest import gentool

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    gentool("sample", runs["vae"], "-n", "1", "-o", fifo, torch_free=True)
    reader.join(timeout=60)
    assert got and got[0].startswith(b"\x89PNG") and stat.S_ISFIFO(fifo.stat().st_mode)
    assert gentool("sample", runs["vae"], "-n", "1", "-o", "/dev/stdout", torch_free=True).stdout.startswith(b"\x89PNG")
    if os.geteuid() == 0:
        null = tmp_path / "null"
        os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        gentool("sample", runs["vae"], "-n", "1", "-o", null, torch_free=True)
        assert stat.S_ISCHR(null.stat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) <= ["null", "pipe"]


def test_sigterm_leaves_no_temporary_file(tmp_path):
    """gentool's SIGTERM handler unwinds like an error, so an atomic write in progress is removed."""
    import signal

    from gentool.progress import unwind_on_sigterm

    previous = signal.getsignal(signal.SIGTERM)
    unwind_on_sigterm()
    try:
        with pytest.raises(SystemExit) as stop:
            with files.atomic_path(tmp_path / "out.png") as tmp:
                tmp.write_bytes(b"half")
                os.kill(os.getpid(), signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert stop.value.code == 128 + signal.SIGTERM and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("verb", ["sample", "score", "encode"])
def test_closed_or_broken_stdout_is_a_failure(runs, digits, verb):
    """One rule for image and text verbs: a closed stdout is a usage error, a reader that went away
    ends gentool with 141 (as SIGPIPE ends shell tools), never a silent 0."""
    from conftest import _LAUNCH, ROOT

    args = [sys.executable, "-c", _LAUNCH, "--torch-free", verb, str(runs["vae"])] + ([] if verb == "sample" else [str(digits[0])])
    closed = subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT,
                            preexec_fn=lambda: os.close(1))
    assert closed.returncode == 2 and closed.stderr.decode().strip() == "gentool: error: stdout is closed; use -o FILE"
    broken = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    broken.stdout.close()  # the reader is gone before anything is written
    assert broken.wait() == files.BROKEN_PIPE_EXIT and broken.stderr.read() == b""


def test_stale_temporary_files_are_removed(tmp_path):
    from gentool.files import remove_stale_temps

    (tmp_path / "grids").mkdir()
    stale = [tmp_path / ".deadbeef.tmp.safetensors", tmp_path / ".0123abcd.tmp", tmp_path / "grids" / ".00ff00ff.tmp.png"]
    kept = [tmp_path / ".notes.tmp", tmp_path / "model.safetensors", tmp_path / ".deadbeef.tmpfile"]
    for path in stale + kept:
        path.write_bytes(b"x")
    remove_stale_temps(tmp_path)
    assert [p.exists() for p in stale + kept] == [False] * 3 + [True] * 3


def test_a_new_file_gets_the_umask_mode_even_when_the_writer_makes_its_own(tmp_path):
    import os

    umask = os.umask(0)
    os.umask(umask)
    with files.atomic_path(tmp_path / "model.safetensors") as tmp:
        tmp.unlink()
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600))  # what safetensors' writer does
    assert (tmp_path / "model.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask
