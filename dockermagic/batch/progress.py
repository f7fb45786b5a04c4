"""Where a batch stands, as data: reduced from its events, drawn by the front ends.

:class:`BatchProgress` takes every :class:`~dockermagic.batch.report.BatchEvent`
(use it as, or inside, ``on_event``) and keeps, per script: status, language,
start time, duration, the last line of output, bounded stdout and stderr tails
(with how much was dropped), log file, message and exit code; and for the
batch: how many scripts are done and the totals per status. The terminal
display (:mod:`dockermagic.console`) and the widget panel
(:mod:`dockermagic.panel`) only draw it.

Text is kept as the program wrote it; whoever draws it escapes it for its
medium (:func:`dockermagic.logs.escape_line` for a terminal, HTML escaping in
the panel).

Plain data, no locking: a front end that reads it from another thread than
the one feeding it guards it with its own lock. No Docker calls.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from dockermagic.batch.discovery import Discovery
from dockermagic.batch.report import STATUSES, BatchEvent, BatchReport, ScriptResult
from dockermagic.status import Status

__all__ = ["OUTPUT_CHARS", "BatchProgress", "ScriptProgress"]

#: Characters of each stream kept per script (the log file has everything).
OUTPUT_CHARS = 20_000


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
    """

    def __init__(
        self,
        scripts: Iterable[tuple[str, str]] = (),
        *,
        output_chars: int = OUTPUT_CHARS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.output_chars = output_chars
        self.clock = clock
        self.scripts: dict[str, ScriptProgress] = {
            name: ScriptProgress(name, language) for name, language in scripts
        }

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
            event: A start, output or finish event.
        """
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
        elif event.kind == "finish" and event.result is not None:
            self._finish(script, event.result)

    def finish(self, report: BatchReport) -> None:
        """Take the final report (every script's outcome, also of unstarted ones).

        Args:
            report: The batch's report.
        """
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

    @staticmethod
    def _finish(script: ScriptProgress, result: ScriptResult) -> None:
        script.status = Status(result.status)
        script.duration = result.duration
        script.log_file = result.log_file or script.log_file
        script.message = result.message
        script.exit_code = result.exit_code
        script.last_line = ""

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
