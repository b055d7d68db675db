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
