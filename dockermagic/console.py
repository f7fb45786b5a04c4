"""Showing a batch on the terminal with ``rich``: live progress and a summary.

A front end, used by ``dockermagic run``; it only draws. Per-script state is
the core's :class:`~dockermagic.batch.progress.BatchProgress`, reduced from the
batch's events. :class:`ConsoleProgress` is an ``on_event`` callback for
:func:`~dockermagic.batch.run_scripts`: on a terminal it keeps a live table
(one row per script, the last line of output of the running ones); elsewhere
(a pipe, CI, a test) it prints one plain line per finished script.
:func:`summary_table` renders a :class:`~dockermagic.batch.BatchReport`.

Everything a program or a file name supplies is shown escaped
(:func:`dockermagic.logs.escape_line`): no control character or escape
sequence of a script reaches the terminal, so a failing script cannot paint
its own row green.
"""

from __future__ import annotations

import re
from types import TracebackType

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from dockermagic.batch import STATUSES, BatchEvent, BatchProgress, BatchReport, ScriptResult
from dockermagic.logs import escape_line
from dockermagic.status import Status

__all__ = [
    "STATUS_STYLES",
    "ConsoleProgress",
    "key_line",
    "shown",
    "summary_table",
    "totals_line",
]

STATUS_STYLES = {
    Status.OK: "green",
    Status.FAILED: "red",
    Status.TIMED_OUT: "yellow",
    Status.OOM: "magenta",
    Status.ERROR: "bold red",
    Status.CANCELLED: "dim",
    Status.RUNNING: "cyan",
    Status.QUEUED: "dim",
}

#: A line that names an error: "ValueError: ...", "Error: boom", "SyntaxError: ...".
_ERROR_LINE = re.compile(r"^(?:Uncaught )?[A-Za-z_.]*(?:Error|Exception)\b.*:")
#: Characters of the running scripts' last output line shown in the live table.
_LINE_WIDTH = 60


def shown(text: str) -> str:
    """Text from a program or a file name, safe to print as rich markup.

    Args:
        text: Any text.

    Returns:
        Control characters escaped (see :mod:`dockermagic.logs`), markup escaped.
    """
    return escape(escape_line(text))


class ConsoleProgress:
    """Live progress of a batch; use as a context manager and as ``on_event``.

    Args:
        console: Where to draw.
        progress: The batch's progress model (its rows appear as queued from the start).
    """

    def __init__(self, console: Console, progress: BatchProgress | None = None) -> None:
        self.console = console
        self.progress = progress if progress is not None else BatchProgress()
        self._live: Live | None = None

    def __enter__(self) -> ConsoleProgress:
        if self.console.is_terminal:
            self._live = Live(
                get_renderable=self._render,
                console=self.console,
                refresh_per_second=8,
                transient=True,
            )
            self._live.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.__exit__(exc_type, exc, tb)
            self._live = None

    def __call__(self, event: BatchEvent) -> None:
        """Take one batch event.

        Args:
            event: A start, output or finish event.
        """
        self.progress.apply(event)
        if event.kind == "finish" and event.result is not None and self._live is None:
            self._print_finish(event.result)

    def _print_finish(self, result: ScriptResult) -> None:
        style = STATUS_STYLES.get(result.status, "")
        self.console.print(
            f"[{style}]{result.status:<9}[/] {shown(result.name)} "
            f"({result.duration:.2f} s) {shown(result.message)}",
            highlight=False,
        )

    def _render(self) -> RenderableType:
        table = Table(box=None, show_header=False, pad_edge=False)
        table.add_column("status", width=9)
        table.add_column("script")
        table.add_column("time", justify="right")
        table.add_column("output", style="dim", overflow="ellipsis", no_wrap=True)
        now = self.progress.clock()
        for script in self.progress.scripts.values():
            running = script.status is Status.RUNNING
            elapsed = script.elapsed(now) if running else None
            table.add_row(
                Text(script.status, style=STATUS_STYLES.get(script.status, "")),
                Text(escape_line(script.name)),
                "" if elapsed is None else f"{elapsed:.1f} s",
                Text(escape_line(script.last_line)[:_LINE_WIDTH]) if running else "",
            )
        header = Text(f"{self.progress.done}/{self.progress.total} scripts done", style="bold")
        return Group(header, table)


def summary_table(report: BatchReport) -> Table:
    """A table with one row per script: language, status, exit code, time, detail.

    Args:
        report: The batch's report.

    Returns:
        A rich table.
    """
    table = Table(title=f"dockermagic run {shown(report.directory)}", title_justify="left")
    table.add_column("script")
    table.add_column("language")
    table.add_column("status")
    table.add_column("exit", justify="right")
    table.add_column("time", justify="right")
    table.add_column("detail", overflow="fold")
    for result in report.results:
        detail = [] if result.ok else [result.message]
        if Status(result.status).is_failure:
            line = key_line(result.output_tail)
            if line:
                detail.append(line)
        table.add_row(
            Text(escape_line(result.name)),
            result.language,
            Text(result.status, style=STATUS_STYLES.get(result.status, "")),
            "" if result.exit_code is None else str(result.exit_code),
            f"{result.duration:.2f} s",
            Text("\n".join(escape_line(part) for part in detail)),
        )
    return table


def key_line(tail: str) -> str:
    """The most telling line of a failed script's output.

    Python ends a traceback with the error line; Node prints it first and a
    stack and its version after, so the last line naming an error wins, and
    the last line otherwise.

    Args:
        tail: The script's output tail.

    Returns:
        One line, stripped ('' for no output); not escaped.
    """
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    for line in reversed(lines):
        if _ERROR_LINE.search(line):
            return line
    return lines[-1] if lines else ""


def totals_line(report: BatchReport) -> str:
    """One line: counts per status, wall time, mode.

    Args:
        report: The batch's report.

    Returns:
        E.g. ``"7 scripts: 6 ok, 1 failed in 2.31 s (parallel, 2 workers)"``.
    """
    counts = ", ".join(f"{n} {s}" for s in STATUSES if (n := report.totals[s]))
    how = "sequential" if report.mode == "sequential" else f"parallel, {report.workers} workers"
    line = f"{len(report.results)} scripts: {counts} in {report.wall_time:.2f} s ({how})"
    if report.cancelled:
        line += " - cancelled"
    return line
