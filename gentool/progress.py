"""What a person sees and does while gentool works: progress on stderr, and Ctrl-C or SIGTERM. Torch-free."""

from __future__ import annotations

import contextlib
import signal
import sys
import time

HEARTBEAT = 60.0  # seconds between the plain progress lines written when stderr is not a terminal
_shown = {"live": 0}  # how many bars or spinners are on the terminal now (a second one would garble the first)


class Reporter:
    """A training's progress on stderr: on a terminal a Rich bar per epoch (steps, elapsed, time left,
    images per second, the losses); otherwise a plain line every HEARTBEAT seconds. Epoch summaries
    and other lines print above the bar."""

    def __init__(self, steps: int, batch_size: int, examples: int, enabled: bool = True):
        self.steps, self.batch_size, self.examples, self.enabled = steps, batch_size, examples, enabled
        self.progress = None
        if enabled and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TextColumn("left"), TimeRemainingColumn(), TextColumn("{task.fields[rate]}"), TextColumn("{task.fields[status]}"),
                console=Console(stderr=True), transient=False,
            )
            self.task = self.progress.add_task("training", total=steps, rate="", status="")
            self.progress.start()
            _shown["live"] += 1

    def start_epoch(self, description: str, step: int) -> None:
        """A new epoch (or the rest of one, from `step`)."""
        self.description, self.first, self.step_at = description, step, step
        self.started = self.last_line = time.perf_counter()
        if self.progress:
            self.progress.reset(self.task, total=self.steps, completed=step, description=description)

    def step(self, status: str) -> None:
        self.step_at += 1
        now = time.perf_counter()
        seen = min(self.step_at * self.batch_size, self.examples) - self.first * self.batch_size
        rate = f"{seen / max(now - self.started, 1e-9):,.0f} img/s"
        if self.progress:
            self.progress.update(self.task, advance=1, rate=rate, status=status)
        elif self.enabled and now - self.last_line >= HEARTBEAT:
            self.last_line = now
            print(f"{self.description}  step {self.step_at}/{self.steps}  {now - self.started:.0f}s  {rate}  {status}",
                  file=sys.stderr, flush=True)

    def line(self, text: str) -> None:
        if not self.enabled:
            return
        if self.progress:
            self.progress.console.print(text, soft_wrap=True)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.progress:
            self.progress.stop()
            self.progress = None
            _shown["live"] -= 1


def track(iterable, description: str, total: int | None = None):
    """`iterable`, with a transient Rich bar (count, elapsed time) on stderr when it is a terminal;
    otherwise a line when it starts and one every HEARTBEAT seconds (`stage`'s lines)."""
    if not sys.stderr.isatty():
        return _logged(iterable, description, total)
    from rich.console import Console
    from rich.progress import track as rich_track

    return rich_track(iterable, description=description, total=total, console=Console(stderr=True), transient=True)


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _logged(iterable, description: str, total: int | None):
    started = last = time.perf_counter()
    _log(f"{description} ...")
    for done, item in enumerate(iterable):
        now = time.perf_counter()
        if now - last >= HEARTBEAT:
            last = now
            _log(f"{description}: {done}{f'/{total}' if total else ''} done, {now - started:.0f}s")
        yield item


@contextlib.contextmanager
def stage(description: str):
    """While a step runs: a transient spinner with the elapsed time on stderr when it is a terminal;
    otherwise a line when it starts and one every HEARTBEAT seconds, so that a log shows what a long
    evaluation is doing."""
    if not sys.stderr.isatty():
        yield from _logged_stage(description)
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn(description), TimeElapsedColumn(), console=Console(stderr=True), transient=True) as bar:
        bar.add_task(description, total=None)
        _shown["live"] += 1
        try:
            yield
        finally:
            _shown["live"] -= 1


def steps(count: int, description: str):
    """range(count), with a transient Rich bar on stderr when it is a terminal showing nothing else;
    off a terminal, or under a training's bar or a stage's spinner, nothing at all (for the many
    short steps of one call: a sampler's)."""
    if not sys.stderr.isatty() or _shown["live"]:
        return range(count)
    from rich.console import Console
    from rich.progress import track as rich_track

    return rich_track(range(count), description=description, total=count, console=Console(stderr=True), transient=True)


def _logged_stage(description: str):
    import threading

    started, finished = time.perf_counter(), threading.Event()

    def beat():
        while not finished.wait(HEARTBEAT):
            _log(f"{description}: {time.perf_counter() - started:.0f}s")

    _log(f"{description} ...")
    threading.Thread(target=beat, daemon=True).start()
    try:
        yield
    finally:
        finished.set()


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _terminated(signum, frame):
    raise SystemExit(128 + signum)


def unwind_on_sigterm() -> None:
    """SIGTERM unwinds like an error, so that temporary files are removed on the way out."""
    signal.signal(signal.SIGTERM, _terminated)


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
