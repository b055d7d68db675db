"""Small file helpers: atomic writes, binary stdout, and reading a path or '-' (stdin)."""

import contextlib
import os
import sys
from pathlib import Path

from gentool.errors import UsageError


def display_name(src: str) -> str:
    """How to name an input in messages: '-' is shown as '<stdin>'."""
    return "<stdin>" if src == "-" else src


def _cannot_write(path, exc: OSError) -> UsageError:
    return UsageError(f"cannot write '{path}': {exc.strerror or exc}")


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to `path` that replaces `path` if the block succeeds.

    The temporary name keeps the suffix of `path`, so libraries that pick a format from the
    suffix work. It is created with the usual permissions (0o666 less the umask), unlike
    tempfile.mkstemp's 0o600, so the final file looks like any other file the user writes.
    An OSError, in the block or in the rename, becomes UsageError("cannot write 'PATH': reason").
    """
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"cannot write '{path}': it is a directory")
    tmp = path.with_name(f".{path.stem}.{os.urandom(4).hex()}.tmp{path.suffix}")
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as exc:
        raise _cannot_write(path, exc) from None
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        raise _cannot_write(path, exc) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def atomic_write(path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the whole new one, never part."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_stdout(data: bytes) -> None:
    """Write binary data to stdout; refuse a terminal, and exit quietly if the reader went away."""
    if sys.stdout.isatty():
        raise UsageError("refusing to write binary data to a terminal; use -o FILE or a pipe")
    out = sys.stdout.buffer
    try:
        # Under PYTHONUNBUFFERED, out is the raw file, whose write() may write only part.
        view = memoryview(data)
        while view:
            view = view[out.write(view) :]
        out.flush()
    except BrokenPipeError:
        # Point stdout at devnull so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(0) from None


def read_input(src: str) -> bytes:
    """Read all bytes of a file, or of stdin when `src` is '-'; empty input is an error."""
    if src == "-":
        data = sys.stdin.buffer.read()
    else:
        try:
            data = Path(src).read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read '{src}': {exc.strerror or exc}") from None
    if not data:
        raise UsageError(f"empty input: {display_name(src)}")
    return data
