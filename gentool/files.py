"""Small file helpers: atomic writes, binary stdout, and reading a path or '-' (stdin)."""

import contextlib
import errno
import os
import re
import shutil
import stat
import sys
from pathlib import Path

from gentool.errors import GentoolError, UsageError


def display_name(src: str) -> str:
    """How to name an input in messages: '-' is shown as '<stdin>'."""
    return "<stdin>" if src == "-" else src


def _cannot_write(path, exc: OSError) -> UsageError:
    return UsageError(f"cannot write '{path}': {exc.strerror or exc}")


def is_special(path: Path) -> bool:
    """True for what exists but cannot be replaced, only written to: devices (/dev/null), FIFOs,
    sockets, and the /dev and /proc views of open files (/dev/stdout)."""
    if str(path).startswith(("/dev/", "/proc/")):
        return True
    return path.exists() and not path.is_file()


_UMASK = os.umask(0)
os.umask(_UMASK)
TEMP_MARK = ".tmp"
_TEMP_NAME = re.compile(r"\.[0-9a-f]{8}\.tmp(\.|$)")


def remove_stale_temps(folder: Path) -> None:
    """Delete the temporary files of `atomic_path` that a killed writer left in `folder` and below."""
    for path in Path(folder).rglob(f".*{TEMP_MARK}*"):
        if _TEMP_NAME.match(path.name) and path.is_file():
            path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path):
    """Yield the path to write `path` through, so that readers see the old file or the whole new one.

    Usually a temporary file next to the target, renamed over it if the block succeeds; it keeps the
    suffix of `path` (libraries pick formats from it) but is short, so a long valid name never fails
    for want of room, and it takes the old file's permission bits (a new file: 0o666 less the umask,
    even when the writer replaced the temporary file with its own 0o600 one, as safetensors does).
    A symlink is resolved and its target written so. A device, FIFO or socket (`-o /dev/null`, a
    named pipe, `/dev/stdout`) is written in place: replacing it would destroy it. An OSError, in
    the block or in the rename, becomes UsageError("cannot write 'PATH': reason"); any error there
    with the disk full becomes GentoolError("no space left on device: cannot write 'PATH'").
    """
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"cannot write '{path}': it is a directory")
    if is_special(path):
        try:
            yield path
        except OSError as exc:
            raise _cannot_write(path, exc) from None
        return
    target = Path(os.path.realpath(path))
    suffix = target.suffix if len(target.suffix) <= 16 else ""
    tmp = target.with_name(f".{os.urandom(4).hex()}{TEMP_MARK}{suffix}")
    try:
        mode = stat.S_IMODE(target.stat().st_mode) if target.exists() else 0o666 & ~_UMASK
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as exc:
        raise _cannot_write(path, exc) from None
    try:
        yield tmp
        os.chmod(tmp, mode)  # also when the writer made its own file (safetensors creates it 0600)
        os.replace(tmp, target)
    except Exception as exc:
        if getattr(exc, "errno", None) == errno.ENOSPC or _no_space(target.parent):
            raise GentoolError(f"no space left on device: cannot write '{path}'") from None
        if isinstance(exc, OSError):
            raise _cannot_write(path, exc) from None
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _no_space(folder: Path) -> bool:
    """Whether the disk under `folder` is full: asked after a failed write, because the writers
    (torch's, safetensors', onnx's) each say it in their own words, or not at all."""
    try:
        return shutil.disk_usage(folder).free < 2**20
    except OSError:
        return False


def atomic_write(path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the whole new one, never part."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


STDOUT_PATHS = ("-", "/dev/stdout", "/dev/fd/1", "/proc/self/fd/1")


def one_stdout(**outputs: str | None) -> None:
    """One owner of stdout per command: of its `outputs` (name -> where it goes, STDOUT for
    stdout), at most one may go there; two are a usage error, raised before any work."""
    to_stdout = [name for name, target in outputs.items() if target is not None and str(target) in STDOUT_PATHS]
    if len(to_stdout) > 1:
        raise UsageError(f"{' and '.join(to_stdout)} would both go to stdout: send all but one to a file")


# What a shell tool killed by SIGPIPE returns (128 + 13): a pipeline under `set -o pipefail` sees it.
BROKEN_PIPE_EXIT = 141
_CLOSED = "stdout is closed; use -o FILE"


def write_stdout(data: bytes | str) -> None:
    """The one way gentool writes results to stdout: text as UTF-8, binary data (refused on a
    terminal) as it is. A closed stdout (`>&-`) is a usage error; a reader that went away (`| head`)
    ends gentool quietly with BROKEN_PIPE_EXIT. Both are failures: never a silent exit 0."""
    stream = sys.stdout
    if stream is None:
        raise UsageError(_CLOSED)
    if isinstance(data, str):
        data = data.encode()
    elif stream.isatty():
        raise UsageError("refusing to write binary data to a terminal; use -o FILE or a pipe")
    try:
        out = stream.buffer
        # Under PYTHONUNBUFFERED, out is the raw file, whose write() may write only part.
        view = memoryview(data)
        while view:
            view = view[out.write(view) :]
        out.flush()
    except BrokenPipeError:
        # Point stdout at devnull so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())
        raise SystemExit(BROKEN_PIPE_EXIT) from None
    except (OSError, ValueError):  # EBADF, or a stream closed under us
        raise UsageError(_CLOSED) from None


def guard_standard_streams() -> None:
    """Hold the descriptors of closed standard streams on /dev/null, so that no file gentool opens
    becomes fd 0, 1 or 2 by accident (a closed stdout stays detected: sys.stdout is None)."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            os.dup2(os.open(os.devnull, os.O_RDWR), fd)


# No input gentool reads (an image, a code file) comes near this; /dev/zero or /dev/urandom would
# otherwise be read until memory runs out.
MAX_INPUT_BYTES = 256 * 2**20


def read_input(src: str, limit: int = MAX_INPUT_BYTES) -> bytes:
    """Read all bytes of a file, or of stdin when `src` is '-', up to `limit`; empty or larger input is an error."""
    try:
        if src == "-":
            data = sys.stdin.buffer.read(limit + 1)
        else:
            with open(src, "rb") as f:
                data = f.read(limit + 1)
    except OSError as exc:
        raise UsageError(f"cannot read '{src}': {exc.strerror or exc}") from None
    if len(data) > limit:
        raise UsageError(f"{display_name(src)} is larger than {limit // 2**20} MiB, more than gentool reads as one input")
    if not data:
        raise UsageError(f"empty input: {display_name(src)}")
    return data


# Folders named by the environment; a relative one means the folder the user named from where they were.
DIRECTORY_VARIABLES = ("GENTOOL_DATA_DIR", "GENTOOL_CACHE_DIR")


def pin_directories() -> None:
    """Make a relative $GENTOOL_DATA_DIR or $GENTOOL_CACHE_DIR absolute once, at start-up, so that
    whatever gentool starts later (torchrun's workers, a process in another folder) reads the same one."""
    for name in DIRECTORY_VARIABLES:
        if os.environ.get(name):
            os.environ[name] = os.path.abspath(os.path.expanduser(os.environ[name]))
