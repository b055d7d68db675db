"""Errors the CLI turns into one line on stderr and an exit code (no traceback)."""


class GentoolError(Exception):
    """A failure while running: exit code 1."""

    exit_code = 1


class UsageError(GentoolError):
    """Bad arguments or bad input: exit code 2."""

    exit_code = 2
