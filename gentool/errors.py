"""Errors the CLI turns into one line on stderr and an exit code (no traceback)."""


class GentoolError(Exception):
    """A failure while running: exit code 1."""

    exit_code = 1


class UsageError(GentoolError):
    """Bad arguments or bad input: exit code 2."""

    exit_code = 2


def check_count(name: str, value: int, most: int | None = None, least: int = 1) -> int:
    """A count an option gives, within [least, most]; else a usage error naming the option."""
    if value < least:
        raise UsageError(f"{name} must be at least {least}, got {value}")
    if most is not None and value > most:
        raise UsageError(f"{name} must be at most {most}, got {value}")
    return value


def exit_code(error: Exception) -> int:
    """How the CLI ends on `error`, after at most one line on stderr: a gentool error and a usage
    error of the command line (click's, exit_code 2) say what was wrong; --help and friends (click's
    Exit) end quietly; Ctrl-C's abort is 130; anything else is an internal error (exit 1)."""
    import typer

    from gentool import console

    if isinstance(error, GentoolError):
        console.err(f"gentool: error: {error}")
    elif isinstance(error, typer.Exit):
        return error.exit_code
    elif isinstance(error, typer.Abort):
        console.err("gentool: aborted")
        return 130
    elif getattr(error, "exit_code", None) == 2 and hasattr(error, "format_message"):
        if error.format_message():  # bare `gentool` prints its help and has nothing to add
            console.err(f"gentool: error: {error.format_message()}")
        return 2
    else:
        console.err(f"gentool: internal error: {type(error).__name__}: {error} (run with --debug for the traceback)")
        return 1
    return error.exit_code
