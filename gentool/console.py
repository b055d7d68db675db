"""What a gentool command prints: results on stdout (one JSON object or lines, or a Rich table),
everything else (notes, what it is doing) as lines on stderr. Torch-free."""

from __future__ import annotations

import json
import math
import numbers
import sys


def err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def notes(found: list[str]) -> None:
    for note in found:
        err(f"note: {note}")


def _finite(value, where: str, replaced: list[str]):
    """`value` with every non-finite float (NaN, +-inf) as None, the keys where that was done added to `replaced`."""
    if isinstance(value, dict):
        return {k: _finite(v, str(k), replaced) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v, where, replaced) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):  # Python's and numpy's floats
        if not math.isfinite(value):
            replaced.append(where)
            return None
        return float(value)
    return value


def to_json(value, indent: int | None = None) -> str:
    """Strict JSON, the one way gentool writes it: a non-finite number (which JSON has no word for)
    is written as null, with a note on stderr naming where."""
    replaced: list[str] = []
    text = json.dumps(_finite(value, "value", replaced), indent=indent, allow_nan=False, default=str)
    if replaced:
        notes([f"{', '.join(dict.fromkeys(replaced))}: not a finite number, written as null"])
    return text


def out(text: str) -> None:
    from gentool.files import write_stdout

    write_stdout(text + "\n")


def stdout_console():
    """A Rich console on stdout; off a terminal its tables take the width they need (no wrapping)."""
    from rich.console import Console

    return Console(file=sys.stdout, width=None if sys.stdout.isatty() else 1000)


def table(heading: str | None, columns: list[str], rows: list[list[str]]) -> None:
    """A Rich table on stdout, under `heading` when given."""
    from rich.table import Table

    shown = Table(*columns)
    for row in rows:
        shown.add_row(*row)
    console = stdout_console()
    if heading:
        console.print(heading, soft_wrap=True)
    console.print(shown)


def _cell(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def report(result: dict, heading: str, as_json: bool, in_heading: tuple[str, ...] = ()) -> None:
    """A result on stdout: one JSON object with --json, else a table under `heading` (without the
    keys `in_heading` already shows)."""
    if as_json:
        out(to_json(result))
    else:
        table(heading, ["metric", "value"], [[key, _cell(value)] for key, value in result.items() if key not in in_heading])


def report_rows(rows: list[dict], heading: str, as_json: bool, varied: str) -> None:
    """Several results that differ in the setting `varied`: JSON lines, or one table row each with
    the setting first and the float figures after it; one result as `report` shows it."""
    if len(rows) == 1:
        return report(rows[0], heading, as_json)
    if as_json:
        out("\n".join(map(to_json, rows)))
        return
    shown = [k for k, v in rows[0].items() if isinstance(v, float) and k != varied]
    table(heading, [varied, *shown], [[str(row.get(varied) or "none"), *(f"{row[k]:.4f}" for k in shown)] for row in rows])


def scores(names: list[str], values, kind: str, as_json: bool) -> None:
    """`score`'s result: JSON lines {"input", "score", "kind"}, or `NAME  SCORE` lines with the kind on stderr."""
    out("\n".join(to_json({"input": name, "score": float(value), "kind": kind}) if as_json else f"{name}  {value:.6g}"
                  for name, value in zip(names, values)))
    if not as_json:
        err(f"scores: {kind} (higher is more anomalous)")
