"""The one vocabulary of run states: :class:`Status`.

Results, batch reports, the panel and the terminal display all speak it; a
status is a ``str`` (``Status.OK == "ok"``), so JSON reports and log lines
carry the plain word.

Pure data, no Docker calls.
"""

from __future__ import annotations

import enum

__all__ = ["FINAL_STATUSES", "Status", "Word"]


class Word(str, enum.Enum):
    """A ``str`` enum that reads as its plain word: in ``str()``, formats and ``repr()``.

    The base of the project's vocabularies (:class:`Status`, grading's
    ``Outcome``): every log line, table and JSON report wants the word.
    """

    # A str mix-in enum formats as "Status.OK" on newer Pythons.
    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)

    # Shown as the plain string it equals, so that a notebook's ``result.status``
    # reads 'ok', as it did before the enum.
    def __repr__(self) -> str:
        return repr(self.value)


class Status(Word):
    """Where a run (or a script of a batch) stands, or how it ended.

    ``QUEUED`` and ``RUNNING`` are progress states; the others are outcomes.
    ``ERROR`` is an outcome of the machinery around a program (engine, image,
    a file that cannot be copied in), never of the program itself.
    """

    QUEUED = "queued"
    RUNNING = "running"
    OK = "ok"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    OOM = "oom"
    TRUNCATED = "truncated"
    CANCELLED = "cancelled"
    ERROR = "error"

    @property
    def label(self) -> str:
        """The words for people, e.g. ``"timed out"``, ``"out of memory"``."""
        return _LABELS[self]

    @property
    def is_final(self) -> bool:
        """True for an outcome, False while queued or running."""
        return self not in (Status.QUEUED, Status.RUNNING)

    @property
    def is_failure(self) -> bool:
        """True for an outcome that is neither success nor a cancellation."""
        return self.is_final and self not in (Status.OK, Status.CANCELLED)


_LABELS = {
    Status.QUEUED: "queued",
    Status.RUNNING: "running",
    Status.OK: "ok",
    Status.FAILED: "failed",
    Status.TIMED_OUT: "timed out",
    Status.OOM: "out of memory",
    Status.TRUNCATED: "output cut",
    Status.CANCELLED: "cancelled",
    Status.ERROR: "error",
}

#: Every outcome, in the order summaries list them.
FINAL_STATUSES = tuple(status for status in Status if status.is_final)
