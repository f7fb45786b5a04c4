"""Where a batch stands, as data: reduced from its events, drawn by the front ends.

:class:`BatchProgress` takes every :class:`~dockermagic.batch.report.BatchEvent`
(use it as, or inside, ``on_event``) and keeps, per script: status, language,
start time, duration, the last line of output, bounded stdout and stderr tails
(with how much was dropped), log file, message and exit code, its last
displays (each as the one representation a front end shows,
:func:`~dockermagic.batch.displays.choose`; at most :data:`DISPLAYS_KEPT` of
them and :data:`DISPLAY_CHARS` characters), how many it made, and its CPU
seconds and peak memory once finished; and for the batch: what is being
prepared before the scripts start (a pull, a package build), how many scripts
are done and the totals per status. The terminal display
(:mod:`dockermagic.console`) and the widget panel (:mod:`dockermagic.panel`)
only draw it.

Text and displays are kept as the program made them; whoever draws them
makes them safe for its medium (:func:`dockermagic.logs.escape_line` for a
terminal, HTML escaping and a sandboxed frame in the panel).

Plain data, no locking: a front end that reads it from another thread than
the one feeding it guards it with its own lock. No Docker calls.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dockermagic.batch.discovery import Discovery
from dockermagic.batch.displays import choose
from dockermagic.batch.report import STATUSES, BatchEvent, BatchReport, ScriptResult
from dockermagic.status import Status

__all__ = [
    "DISPLAYS_KEPT",
    "DISPLAY_CHARS",
    "OUTPUT_CHARS",
    "BatchProgress",
    "ScriptProgress",
    "ShownDisplay",
]

#: Characters of each stream kept per script (the log file has everything).
OUTPUT_CHARS = 20_000
#: Displays kept per script: the last ones (``--outputs`` writes every one).
DISPLAYS_KEPT = 10
#: Characters of displays kept per script (base64 for images): a plot is
#: tens of KiB, and a batch of a hundred scripts must stay light in a kernel.
DISPLAY_CHARS = 2 * 1024 * 1024


@dataclass(frozen=True)
class ShownDisplay:
    """One display as a front end shows it.

    Attributes:
        number: Its position among the script's displays (1-based).
        mime: The representation kept (:func:`~dockermagic.batch.displays.choose`);
            '' when the display had none a front end can show.
        value: Base64 text for images, text otherwise; '' when it was too
            large to keep (``size`` says how large).
        size: Characters of the representation as it came.
    """

    number: int
    mime: str
    value: str
    size: int


@dataclass
class ScriptProgress:
    """What is known about one script of a running batch.

    Attributes:
        name: The script's file name.
        language: The runner's language.
        status: Queued, running, or how it ended.
        started: When it started (the model's clock), None before.
        duration: Seconds it took, once finished.
        last_line: The last non-blank line of output so far (cleared at the end).
        stdout: The end of its standard output (at most ``OUTPUT_CHARS``).
        stderr: The end of its standard error (at most ``OUTPUT_CHARS``).
        dropped: Characters dropped from the front of each stream's tail.
        log_file: Where its output is mirrored ('' when not logged).
        message: The one-line account, once finished.
        exit_code: The program's exit status, once known.
        displays: Its last displays (at most ``DISPLAYS_KEPT``), oldest first.
        display_count: Displays it made so far (the run's count once finished).
        displays_dropped: Displays the run dropped past its display cap.
        cpu_seconds: CPU seconds it used, once finished and known.
        peak_memory_bytes: Its peak memory, once finished and known.
    """

    name: str
    language: str = ""
    status: Status = Status.QUEUED
    started: float | None = None
    duration: float | None = None
    last_line: str = ""
    stdout: str = ""
    stderr: str = ""
    dropped: dict[str, int] = field(default_factory=lambda: {"stdout": 0, "stderr": 0})
    log_file: str = ""
    message: str = ""
    exit_code: int | None = None
    displays: list[ShownDisplay] = field(default_factory=list)
    display_count: int = 0
    displays_dropped: int = 0
    cpu_seconds: float | None = None
    peak_memory_bytes: int | None = None

    def elapsed(self, now: float) -> float | None:
        """Seconds so far: the duration once finished, else since the start.

        Args:
            now: The current time on the model's clock.

        Returns:
            Seconds, or None before the start.
        """
        if self.duration is not None:
            return self.duration
        if self.started is not None:
            return now - self.started
        return None


class BatchProgress:
    """The progress of one batch, built from its events.

    Args:
        scripts: ``(name, language)`` pairs, in order: the rows, queued from
            the start. Scripts first seen in an event are added then.
        output_chars: Characters of each stream kept per script.
        clock: The monotonic clock (tests pass a fake one).
        displays_kept: Displays kept per script.
        display_chars: Characters of displays kept per script.
    """

    def __init__(
        self,
        scripts: Iterable[tuple[str, str]] = (),
        *,
        output_chars: int = OUTPUT_CHARS,
        clock: Callable[[], float] = time.monotonic,
        displays_kept: int = DISPLAYS_KEPT,
        display_chars: int = DISPLAY_CHARS,
    ) -> None:
        self.output_chars = output_chars
        self.clock = clock
        self.displays_kept = displays_kept
        self.display_chars = display_chars
        self.scripts: dict[str, ScriptProgress] = {
            name: ScriptProgress(name, language) for name, language in scripts
        }
        #: The last ``prepare`` line (a pull, a package build) while the batch
        #: gets its images ready; '' once a script has started or finished.
        self.preparing = ""
        #: Changes with every event that changes what a display of the model
        #: shows, so that a front end can skip a redraw when it has not.
        self.version = 0

    @classmethod
    def of(cls, discovery: Discovery, *, output_chars: int = OUTPUT_CHARS) -> BatchProgress:
        """The progress of a batch over a discovered folder, every script queued.

        Args:
            discovery: The folder's scripts (e.g. after selecting some).
            output_chars: Characters of each stream kept per script.

        Returns:
            The model.
        """
        rows = [(path.name, discovery.language_of(path)) for path in discovery.scripts]
        return cls(rows, output_chars=output_chars)

    def __call__(self, event: BatchEvent) -> None:
        """Take one event (so the model itself can be ``on_event``).

        Args:
            event: A start, output or finish event.
        """
        self.apply(event)

    def apply(self, event: BatchEvent) -> None:
        """Take one event.

        Args:
            event: A prepare, start, output, display or finish event.
        """
        self.version += 1
        if event.kind == "prepare":
            self.preparing = f"{event.language}: {event.text}" if event.language else event.text
            return
        self.preparing = ""
        script = self.scripts.get(event.script)
        if script is None:
            script = self.scripts[event.script] = ScriptProgress(event.script)
        script.language = event.language or script.language
        if event.kind == "start":
            script.status = Status.RUNNING
            script.started = self.clock()
            script.log_file = event.log_file or script.log_file
        elif event.kind == "output":
            self._add_output(script, event.stream, event.text)
        elif event.kind == "display" and event.data is not None:
            self._add_display(script, event.data)
        elif event.kind == "finish" and event.result is not None:
            self._finish(script, event.result)

    def finish(self, report: BatchReport) -> None:
        """Take the final report (every script's outcome, also of unstarted ones).

        Args:
            report: The batch's report.
        """
        self.version += 1
        self.preparing = ""
        for result in report.results:
            script = self.scripts.get(result.name)
            if script is None:
                script = self.scripts[result.name] = ScriptProgress(result.name, result.language)
            self._finish(script, result)

    def abandon(self, status: Status = Status.ERROR) -> None:
        """Mark every unfinished script, when the batch could not run at all.

        Args:
            status: What they are marked.
        """
        self.version += 1
        self.preparing = ""
        for script in self.scripts.values():
            if not script.status.is_final:
                script.status = status
                script.last_line = ""

    def _add_output(self, script: ScriptProgress, stream: str, text: str) -> None:
        lines = [line for line in text.splitlines() if line.strip()]
        if lines:
            script.last_line = lines[-1]
        kept = (script.stdout if stream == "stdout" else script.stderr) + text
        if len(kept) > self.output_chars:
            script.dropped[stream] = script.dropped.get(stream, 0) + len(kept) - self.output_chars
            kept = kept[-self.output_chars :]
        if stream == "stdout":
            script.stdout = kept
        else:
            script.stderr = kept

    def _add_display(self, script: ScriptProgress, data: Mapping[str, Any]) -> None:
        script.display_count += 1
        chosen = choose(data)
        mime, value = chosen if chosen is not None else ("", "")
        size = len(value)
        if size > self.display_chars:
            value = ""  # too large to keep: shown as a note with its size
        kept = script.displays
        kept.append(ShownDisplay(script.display_count, mime, value, size))
        # The newest display always stays; older ones go by count, then by size.
        while len(kept) > self.displays_kept or (
            len(kept) > 1 and sum(len(d.value) for d in kept) > self.display_chars
        ):
            kept.pop(0)

    @staticmethod
    def _finish(script: ScriptProgress, result: ScriptResult) -> None:
        script.status = Status(result.status)
        script.duration = result.duration
        script.log_file = result.log_file or script.log_file
        script.message = result.message
        script.exit_code = result.exit_code
        script.last_line = ""
        # A script that never ran keeps the count its events gave (0).
        script.display_count = max(script.display_count, result.display_count)
        script.displays_dropped = result.displays_dropped
        script.cpu_seconds = result.cpu_seconds
        script.peak_memory_bytes = result.peak_memory_bytes

    # -- the batch as a whole ------------------------------------------------------------

    @property
    def total(self) -> int:
        """Scripts in the batch."""
        return len(self.scripts)

    @property
    def done(self) -> int:
        """Scripts that have finished."""
        return sum(script.status.is_final for script in self.scripts.values())

    @property
    def finished(self) -> list[ScriptProgress]:
        """The scripts that have finished, in order."""
        return [s for s in self.scripts.values() if s.status.is_final]

    @property
    def totals(self) -> dict[Status, int]:
        """Finished scripts per status, in :data:`~dockermagic.batch.report.STATUSES` order.

        Only statuses that occur are listed.
        """
        counts = dict.fromkeys(STATUSES, 0)
        for script in self.finished:
            counts[script.status] = counts.get(script.status, 0) + 1
        return {status: n for status, n in counts.items() if n}
