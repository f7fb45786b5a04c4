"""Showing a batch on the terminal with ``rich``: live progress and a summary.

Used by ``dockermagic run``. :class:`ConsoleProgress` is an ``on_event``
callback for :func:`~dockermagic.batch.run_scripts`: on a terminal it keeps a
live table (one row per script, the last line of output of the running ones);
elsewhere (a pipe, CI, a test) it prints one plain line per finished script.
:func:`summary_table` renders a :class:`~dockermagic.batch.BatchReport`.
"""

from __future__ import annotations

import re
import time
from types import TracebackType

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from dockermagic.batch import STATUSES, BatchEvent, BatchReport, ScriptResult

__all__ = ["STATUS_STYLES", "ConsoleProgress", "key_line", "summary_table", "totals_line"]

STATUS_STYLES = {
    "ok": "green",
    "failed": "red",
    "timed_out": "yellow",
    "oom": "magenta",
    "error": "bold red",
    "cancelled": "dim",
    "running": "cyan",
    "queued": "dim",
}

#: A line that names an error: "ValueError: ...", "Error: boom", "SyntaxError: ...".
_ERROR_LINE = re.compile(r"^(?:Uncaught )?[A-Za-z_.]*(?:Error|Exception)\b.*:")
#: Characters of the running scripts' last output line shown in the live table.
_LINE_WIDTH = 60


class ConsoleProgress:
    """Live progress of a batch; use as a context manager and as ``on_event``.

    Args:
        console: Where to draw.
        names: The scripts, in order (rows appear as queued from the start).
    """

    def __init__(self, console: Console, names: list[str] | None = None) -> None:
        self.console = console
        self._rows: dict[str, dict[str, str]] = {
            name: {"status": "queued", "language": "", "line": ""} for name in names or []
        }
        self._started: dict[str, float] = {}
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
        row = self._rows.setdefault(event.script, {"status": "queued", "language": "", "line": ""})
        row["language"] = event.language
        if event.kind == "start":
            row["status"] = "running"
            self._started[event.script] = time.monotonic()
        elif event.kind == "output":
            lines = [line for line in event.text.splitlines() if line.strip()]
            if lines:
                row["line"] = lines[-1][:_LINE_WIDTH]
        elif event.kind == "finish" and event.result is not None:
            row["status"] = event.result.status
            row["line"] = ""
            if self._live is None:
                self._print_finish(event.result, event.index, event.total)

    def _print_finish(self, result: ScriptResult, index: int, total: int) -> None:
        style = STATUS_STYLES.get(result.status, "")
        self.console.print(
            f"[{style}]{result.status:<9}[/] {escape(result.name)} "
            f"({result.duration:.2f} s) {escape(result.message)}",
            highlight=False,
        )

    def _render(self) -> RenderableType:
        table = Table(box=None, show_header=False, pad_edge=False)
        table.add_column("status", width=9)
        table.add_column("script")
        table.add_column("time", justify="right")
        table.add_column("output", style="dim", overflow="ellipsis", no_wrap=True)
        now = time.monotonic()
        done = 0
        for name, row in self._rows.items():
            status = row["status"]
            done += status not in ("queued", "running")
            elapsed = ""
            if status == "running" and name in self._started:
                elapsed = f"{now - self._started[name]:.1f} s"
            table.add_row(
                Text(status, style=STATUS_STYLES.get(status, "")),
                escape(name),
                elapsed,
                escape(row["line"]) if status == "running" else "",
            )
        header = Text(f"{done}/{len(self._rows)} scripts done", style="bold")
        return Group(header, table)


def summary_table(report: BatchReport) -> Table:
    """A table with one row per script: language, status, exit code, time, detail.

    Args:
        report: The batch's report.

    Returns:
        A rich table.
    """
    table = Table(title=f"dockermagic run {escape(report.directory)}", title_justify="left")
    table.add_column("script")
    table.add_column("language")
    table.add_column("status")
    table.add_column("exit", justify="right")
    table.add_column("time", justify="right")
    table.add_column("detail", overflow="fold")
    for result in report.results:
        detail = "" if result.ok else result.message
        if result.status in ("failed", "error", "timed_out", "oom"):
            line = key_line(result.output_tail)
            if line:
                detail += "\n" + line
        table.add_row(
            escape(result.name),
            result.language,
            Text(result.status, style=STATUS_STYLES.get(result.status, "")),
            "" if result.exit_code is None else str(result.exit_code),
            f"{result.duration:.2f} s",
            escape(detail),
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
        One line, stripped ('' for no output).
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
