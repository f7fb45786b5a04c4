"""Showing a batch on the terminal with ``rich``: live progress and a summary.

A front end, used by ``dockermagic run``; it only draws. Per-script state is
the core's :class:`~dockermagic.batch.progress.BatchProgress`, reduced from the
batch's events. :class:`ConsoleProgress` is an ``on_event`` callback for
:func:`~dockermagic.batch.run_scripts`: on a terminal it keeps a live table
(one row per script, the last line of output of the running ones, and while
the batch gets its images ready, the last line of that: a pull, a package
build); elsewhere (a pipe, CI, a test) it prints one plain line per finished
script, and each preparation line as it comes. :func:`summary_table` renders
a :class:`~dockermagic.batch.BatchReport`: per script its status, exit code,
time, displays, CPU seconds and peak memory.

Everything a program or a file name supplies is shown escaped
(:func:`dockermagic.logs.escape_line`): no control character or escape
sequence of a script reaches the terminal, so a failing script cannot paint
its own row green.
"""

from __future__ import annotations

import re
from types import TracebackType

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from dockermagic.batch import STATUSES, BatchEvent, BatchProgress, BatchReport, ScriptResult
from dockermagic.logs import escape_line
from dockermagic.status import Status
from dockermagic.usage import cpu_text, memory_text

__all__ = [
    "STATUS_STYLES",
    "ConsoleProgress",
    "display_text",
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
        if self._live is not None:
            return
        if event.kind == "prepare":
            language = f"{event.language}: " if event.language else ""
            self.console.print(f"[dim]preparing {language}{shown(event.text)}[/]", highlight=False)
        elif event.kind == "finish" and event.result is not None:
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
        if self.progress.preparing:
            line = escape_line(self.progress.preparing)[: _LINE_WIDTH * 2]
            return Group(header, Text(f"preparing {line}", style="cyan"), table)
        return Group(header, table)


def summary_table(report: BatchReport) -> RenderableType:
    """One row per script: language, status, exit code, time, displays, CPU, peak, detail.

    CPU seconds and peak memory are the program's own (``-`` where the runner
    could not tell, or the script never ran); displays counts what the
    script displayed (plots, tables; those dropped past the cap are named in
    the detail). Where
    the console is narrower than :data:`WIDE` columns, the details of the
    scripts that did not succeed follow the table, one script each, instead
    of squeezing a ninth column.

    Args:
        report: The batch's report.

    Returns:
        A rich renderable.
    """
    return _Summary(report)


#: Columns from which the summary keeps each script's detail in its row.
WIDE = 110


class _Summary:
    """The summary, laid out for the width it is drawn in."""

    def __init__(self, report: BatchReport) -> None:
        self.report = report

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        wide = options.max_width >= WIDE
        report = self.report
        table = Table(
            title=f"dockermagic run {shown(report.directory)}",
            title_justify="left",
            box=box.SIMPLE_HEAD,
            show_edge=False,
            padding=(0, 0),
        )
        # Names and figures never shrink into an ellipsis: the detail column
        # takes what is left, folded.
        longest = max((len(escape_line(r.name)) for r in report.results), default=6)
        table.add_column("script", min_width=min(longest, 40), overflow="fold")
        table.add_column("language", no_wrap=True)
        table.add_column("status", no_wrap=True)
        table.add_column("exit", justify="right", no_wrap=True)
        table.add_column("time", justify="right", no_wrap=True)
        table.add_column("displays", justify="right", no_wrap=True)
        table.add_column("CPU", justify="right", no_wrap=True)
        table.add_column("peak", justify="right", no_wrap=True)
        swarm = report.backend == "swarm"
        if swarm:
            table.add_column("node", no_wrap=True)
        if wide:
            table.add_column("detail", overflow="fold", ratio=1)
        below: list[Text] = []
        for result in report.results:
            parts = [escape_line(part) for part in _detail(result)]
            cells: list[RenderableType] = [
                Text(escape_line(result.name)),
                result.language,
                Text(result.status, style=STATUS_STYLES.get(result.status, "")),
                "" if result.exit_code is None else str(result.exit_code),
                f"{result.duration:.2f} s",
                display_text(result.display_count),
                cpu_text(result.cpu_seconds),
                memory_text(result.peak_memory_bytes),
            ]
            if swarm:
                # A node id's first 12 characters, as `docker node ls` shows it.
                cells.append(escape_line(result.node[:12]) or "-")
            if wide:
                cells.append(Text("\n".join(parts)))
            elif parts:
                name = (escape_line(result.name), "bold")
                below.append(Text.assemble(name, ": ", "\n  ".join(parts)))
            table.add_row(*cells)
        yield table
        yield from below


def _detail(result: ScriptResult) -> list[str]:
    """What the summary says about a script beyond its figures (not escaped)."""
    detail = [] if result.ok else [result.message]
    if Status(result.status).is_failure:
        line = key_line(result.output_tail)
        if line:
            detail.append(line)
    if result.displays_dropped:
        detail.append(f"{result.displays_dropped} more display(s) dropped past the cap")
    return detail


def display_text(count: int, dropped: int = 0) -> str:
    """How many displays a script made, for a table cell.

    Args:
        count: Displays kept.
        dropped: Displays dropped past the cap.

    Returns:
        E.g. ``"3"``, ``"3 (+2 dropped)"``, or ``""`` for none.
    """
    if dropped:
        return f"{count} (+{dropped} dropped)"
    return str(count) if count else ""


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
        E.g. ``"7 scripts: 6 ok, 1 failed in 2.31 s (parallel, 2 workers)"``,
        or ``(on the swarm, 4 at once)``.
    """
    counts = ", ".join(f"{n} {s}" for s in STATUSES if (n := report.totals[s]))
    how = "sequential" if report.mode == "sequential" else f"parallel, {report.workers} workers"
    if report.backend == "swarm":
        how = (
            "on the swarm, one at a time"
            if report.mode == "sequential"
            else f"on the swarm, {report.workers} at once"
        )
    line = f"{len(report.results)} scripts: {counts} in {report.wall_time:.2f} s ({how})"
    if report.cancelled:
        line += " - cancelled"
    return line
