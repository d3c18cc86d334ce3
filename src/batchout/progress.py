"""Progress of long work (training batches, the attack grid, tuning trials), shown on stderr.

Usage: ``with progress.track("train mnist-lenet-standard-s0", total=564, unit="batch") as task:
task.advance(1, loss=0.31, img_s=3900)``

The loops call :func:`track` and never learn how progress is shown. On a terminal: a rich bar
(description, bar, M/N, elapsed, ETA, the latest fields). Elsewhere (``dvc repro`` logs, CI): a plain
line at most every few seconds, and one final line, e.g.
``train mnist-lenet-standard-s0: 120/282 batches (43%) loss 0.412 img/s 3,950 elapsed 12s eta 16s``.
Tasks open at the same time (a trial's training inside the tuning loop) share one display; under
``torchrun`` only rank 0 shows anything (``track(..., enabled=dist.is_main)``).

Environment, read on the first :func:`track` of a process: ``BATCHOUT_PROGRESS=rich|plain|off``
overrides the choice made from ``sys.stderr.isatty()``; ``BATCHOUT_PROGRESS_INTERVAL`` is the
number of seconds between plain lines (default 5; 0 prints one line per step).

Cheap by design: an advance costs one ``time.monotonic()`` check. A field may be a zero-argument
callable, called only when the task is drawn, so a loss held on the GPU is copied to the host once
per redraw instead of once per batch.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol, TextIO

from batchout.errors import BatchoutError

MODES = ("rich", "plain", "off")
DEFAULT_INTERVAL = 5.0  # seconds between plain lines: a few per minute of work in a log
RICH_INTERVAL = 0.1  # seconds between pushes to the rich bar (it redraws itself 10 times a second)
LABELS = {"img_s": "img/s"}  # field names that are not valid keyword arguments as shown

Clock = Callable[[], float]
Field = Any  # a number, a string, or a zero-argument callable returning one (evaluated when drawn)


def select_mode(environ: Mapping[str, str] = os.environ, stream: TextIO | None = None) -> str:
    """``BATCHOUT_PROGRESS`` when set, else ``rich`` on a terminal and ``plain`` otherwise."""
    mode = environ.get("BATCHOUT_PROGRESS", "").strip().lower()
    if mode and mode not in MODES:
        raise BatchoutError(f"BATCHOUT_PROGRESS: got {mode!r}; allowed: {', '.join(MODES)}")
    if mode:
        return mode
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)  # a replaced stderr may lack it
    return "rich" if isatty is not None and isatty() else "plain"


def select_interval(environ: Mapping[str, str] = os.environ) -> float:
    raw = environ.get("BATCHOUT_PROGRESS_INTERVAL", "").strip()
    try:
        seconds = float(raw) if raw else DEFAULT_INTERVAL
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:  # also refuses nan
        raise BatchoutError(f"BATCHOUT_PROGRESS_INTERVAL: got {raw!r}; allowed: seconds >= 0")
    return seconds


def fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def fmt_seconds(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    return f"{s // 60}m{s % 60:02d}s" if s < 3600 else f"{s // 3600}h{s // 60 % 60:02d}m"


def plural(unit: str) -> str:
    return unit + ("es" if unit.endswith(("s", "x", "ch", "sh")) else "s")


class Renderer(Protocol):
    clock: Clock
    interval: float  # seconds between draws of a task

    def start(self, task: Task) -> None: ...
    def show(self, task: Task) -> None: ...
    def note(self, task: Task, text: str) -> None: ...
    def finish(self, task: Task, line: str) -> None: ...


class Task:
    """One piece of long work: its count, its latest fields, when it is next drawn."""

    def __init__(self, renderer: Renderer | None, description: str, total: int, unit: str, completed: int = 0):
        self.description, self.total, self.unit = description, total, unit
        self.completed = self.first = completed  # first: where this process started (a resumed run)
        self.fields: dict[str, str] = {}  # formatted, as last drawn
        self._raw: dict[str, Field] = {}
        self._stale = False  # fields given since they were last evaluated
        self._renderer = renderer
        self.started = self._due = 0.0

    def __enter__(self) -> Task:
        if self._renderer is not None:
            self.started = self._renderer.clock()
            self._due = self.started + self._renderer.interval
            self._renderer.start(self)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if self._renderer is None:
            return
        if self._stale or self.completed < self.total:  # else taken as the last step finished
            self._evaluate()
        self._renderer.finish(self, self.line(final=True, stopped=exc_type is not None))

    def advance(self, n: int = 1, /, **fields: Field) -> None:
        """Count ``n`` more steps; fields are kept until replaced (``n=0``: shown with the next step)."""
        if self._renderer is None:
            return
        self.completed += n
        if fields:
            self._raw.update(fields)
            self._stale = True
        if n == 0:
            return
        now = self._renderer.clock()
        if self.completed >= self.total:  # the final line's fields, before any after-work (validation)
            self._evaluate()
        elif now >= self._due:
            self._due = now + self._renderer.interval
            self._evaluate()
            self._renderer.show(self)

    def note(self, text: str) -> None:
        """A one-off line about this task (e.g. an epoch's validation accuracy)."""
        if self._renderer is not None:
            self._renderer.note(self, text)

    def _evaluate(self) -> None:
        self._stale = False
        self.fields = {LABELS.get(k, k): fmt_value(v() if callable(v) else v) for k, v in self._raw.items()}

    def info(self) -> str:
        return " ".join(f"{k} {v}" for k, v in self.fields.items())

    def line(self, *, final: bool = False, stopped: bool = False) -> str:
        """The plain-text state, e.g. ``name: 3/6 attacks (50%) acc 0.62 elapsed 4s eta 4s``."""
        elapsed = self._renderer.clock() - self.started if self._renderer is not None else 0.0
        pct = 100 * self.completed // self.total if self.total else 100
        count = f"{self.completed:,}/{self.total:,} {plural(self.unit)} ({pct}%)"
        info = f" {self.info()}" if self.fields else ""
        if stopped:
            return f"{self.description}: stopped at {count}{info} after {fmt_seconds(elapsed)}"
        if final:
            return f"{self.description}: {count}{info} done in {fmt_seconds(elapsed)}"
        rate = (self.completed - self.first) / elapsed if elapsed > 0 else 0.0
        eta = fmt_seconds((self.total - self.completed) / rate) if rate > 0 else "?"
        return f"{self.description}: {count}{info} elapsed {fmt_seconds(elapsed)} eta {eta}"


class PlainRenderer:
    """One line per draw; ``stream`` None writes to whatever ``sys.stderr`` is at that moment."""

    def __init__(self, stream: TextIO | None = None, interval: float = DEFAULT_INTERVAL,
                 clock: Clock = time.monotonic):
        self.stream, self.interval, self.clock = stream, interval, clock

    def _print(self, text: str) -> None:
        print(text, file=self.stream or sys.stderr, flush=True)

    def start(self, task: Task) -> None:
        pass  # the first line comes one interval in: a short task prints only its final line

    def show(self, task: Task) -> None:
        self._print(task.line())

    def note(self, task: Task, text: str) -> None:
        self._print(f"{task.description}: {text}")

    def finish(self, task: Task, line: str) -> None:
        self._print(line)


class RichRenderer:
    """One rich ``Progress`` per process, live while any task is open; a task's bar makes way for
    its final line when it ends, so a long pipeline leaves one line per task in the scrollback."""

    def __init__(self, console: Any = None, clock: Clock = time.monotonic):
        import rich.progress as rp  # only a terminal pays for importing rich
        from rich.console import Console
        from rich.table import Column

        self.clock, self.interval = clock, RICH_INTERVAL
        self.console = console or Console(stderr=True)
        self.progress = rp.Progress(  # a 24-character bar (rich's default: 40) leaves room for the fields
            rp.TextColumn("{task.description}"), rp.BarColumn(bar_width=24), rp.MofNCompleteColumn(),
            rp.TextColumn("{task.fields[unit]}"), rp.TimeElapsedColumn(), rp.TextColumn("eta"),
            # the fields wrap on a narrow terminal; rich would otherwise cut every column, times included
            rp.TimeRemainingColumn(), rp.TextColumn("{task.fields[info]}", table_column=Column(no_wrap=False)),
            console=self.console, get_time=clock, transient=True)
        self._ids: dict[int, Any] = {}  # id(task) -> rich TaskID

    def start(self, task: Task) -> None:
        if not self._ids:
            self.progress.start()
        self._ids[id(task)] = self.progress.add_task(task.description, total=task.total, completed=task.completed,
                                                     unit=plural(task.unit), info="")

    def show(self, task: Task) -> None:
        self.progress.update(self._ids[id(task)], completed=task.completed, info=task.info())

    def note(self, task: Task, text: str) -> None:
        self.progress.console.print(f"{task.description}: {text}", markup=False, highlight=False, soft_wrap=True)

    def finish(self, task: Task, line: str) -> None:
        self.show(task)
        self.progress.refresh()  # the final state is drawn once even if the task ended between redraws
        self.progress.remove_task(self._ids.pop(id(task)))
        self.progress.console.print(line, markup=False, highlight=False, soft_wrap=True)
        if not self._ids:
            self.progress.stop()


def make_renderer(mode: str | None = None, *, interval: float | None = None, stream: TextIO | None = None,
                  console: Any = None, clock: Clock = time.monotonic,
                  environ: Mapping[str, str] = os.environ) -> Renderer | None:
    """The renderer for ``mode`` (None: from the environment and stderr); None for ``off``."""
    mode = select_mode(environ) if mode is None else mode
    if mode == "rich":
        return RichRenderer(console, clock)
    if mode == "plain":
        return PlainRenderer(stream, select_interval(environ) if interval is None else interval, clock)
    if mode == "off":
        return None
    raise BatchoutError(f"progress mode: got {mode!r}; allowed: {', '.join(MODES)}")


_UNSET = object()
_current: Any = _UNSET  # the process's renderer, chosen on its first track()


def current() -> Renderer | None:
    global _current
    if _current is _UNSET:
        _current = make_renderer()
    return _current


@contextmanager
def use(renderer: Renderer | None) -> Iterator[Renderer | None]:
    """Show progress with ``renderer`` inside the block (tests, tools); the previous one after."""
    global _current
    before, _current = _current, renderer
    try:
        yield renderer
    finally:
        _current = before


def track(description: str, total: int, unit: str = "item", *, completed: int = 0, enabled: bool = True) -> Task:
    """A task to use as a context manager; ``enabled=False`` (e.g. a DDP rank other than 0) shows nothing."""
    return Task(current() if enabled else None, description, total, unit, completed)


QUIET = Task(None, "", 0, "item")  # the default of loops that may run without progress
