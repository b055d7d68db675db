"""What a person sees and does while a training runs: progress on stderr, and Ctrl-C or SIGTERM."""

from __future__ import annotations

import contextlib
import signal
import sys


class Reporter:
    """A Rich progress bar on a terminal, plain lines otherwise (both on stderr)."""

    def __init__(self, total_steps: int, enabled: bool = True):
        self.progress = None
        self.enabled = enabled
        if enabled and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                TextColumn("{task.fields[status]}"), console=Console(stderr=True), transient=False,
            )
            self.task = self.progress.add_task("training", total=total_steps, status="")
            self.progress.start()

    def step(self, description: str, status: str) -> None:
        if self.progress:
            self.progress.update(self.task, advance=1, description=description, status=status)

    def epoch(self, line: str) -> None:
        if not self.enabled:
            return
        if self.progress:
            self.progress.console.print(line)
        else:
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.progress:
            self.progress.stop()


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def deferred_interrupt():
    """Turn the first Ctrl-C or SIGTERM (what kill, systemd, Docker and job schedulers send) into
    a flag checked between steps, so a step is never half-applied; the flag is the signal's number.

    A second one interrupts at once.
    """
    hits = []

    def handler(signum, frame):
        if hits:
            raise KeyboardInterrupt
        hits.append(signum)

    try:
        previous = [signal.signal(s, handler) for s in STOP_SIGNALS]
    except ValueError:  # not the main thread: leave the signals alone
        yield lambda: 0
        return
    try:
        yield lambda: hits[0] if hits else 0
    finally:
        for s, old in zip(STOP_SIGNALS, previous):
            signal.signal(s, old)
