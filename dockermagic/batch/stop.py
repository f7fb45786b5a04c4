"""When a batch stops early, and what the scripts it did not finish are told.

One policy for both modes. A batch stops for the first of:

* the caller's ``cancel`` event ("the batch was cancelled");
* an interrupt in the calling thread: Ctrl-C, or a termination signal that a
  front end turned into :class:`StopSignal` ("interrupted (SIGTERM)");
* with ``fail_fast``, the first script that fails ("b.py failed (fail-fast)").

From then on no script starts; running ones are killed (their containers
removed) and reported ``cancelled``; scripts that never started are reported
``cancelled`` with "not started: <reason>".

Pure logic, no Docker calls.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

from dockermagic.batch.report import ScriptResult
from dockermagic.batch.script import Task, script_result
from dockermagic.status import Status

__all__ = ["StopPolicy", "StopSignal", "fails_fast"]


class StopSignal(KeyboardInterrupt):
    """An interrupt raised for a termination signal, so that it takes Ctrl-C's path.

    A front end's signal handler raises it (``dockermagic run`` does for
    SIGTERM and SIGHUP); the batch then stops exactly as for Ctrl-C.

    Args:
        signum: The signal's number.

    Attributes:
        signum: The signal's number.
    """

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)

    @property
    def name(self) -> str:
        """The signal's name, e.g. ``"SIGTERM"``."""
        return signal.Signals(self.signum).name


def fails_fast(result: ScriptResult) -> bool:
    """Whether a script's outcome stops a ``fail_fast`` batch.

    Args:
        result: The script's result.

    Returns:
        True for a failure (not for success or a cancellation).
    """
    return Status(result.status).is_failure


class StopPolicy:
    """Decides, and remembers, why a batch stopped.

    Args:
        cancel: The caller's cancel event.
        fail_fast: Stop after the first script that fails.
    """

    def __init__(self, cancel: threading.Event, fail_fast: bool) -> None:
        self.cancel = cancel
        self.fail_fast = fail_fast
        #: Why the batch stopped ('' while it goes on).
        self.reason = ""
        #: The batch was interrupted (Ctrl-C or a termination signal).
        self.interrupted = False
        self._listeners: list[Callable[[str], None]] = []

    def on_stop(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(reason)`` once, when the batch stops (at once if it has).

        Args:
            listener: E.g. the pool's "stop every worker".
        """
        self._listeners.append(listener)
        if self.reason:
            listener(self.reason)

    def check(self) -> bool:
        """Notice the caller's cancel event; say whether the batch has stopped.

        Returns:
            True once the batch stops: no further script may start.
        """
        if not self.reason and self.cancel.is_set():
            self.stop("the batch was cancelled")
        return bool(self.reason)

    @property
    def cancelled(self) -> bool:
        """What the report says: cancelled by the caller or interrupted (not fail-fast)."""
        return self.interrupted or self.cancel.is_set()

    def stop(self, reason: str) -> None:
        """Stop the batch (the first reason is kept).

        Args:
            reason: Why, for the scripts that do not run.
        """
        if self.reason:
            return
        self.reason = reason
        for listener in self._listeners:
            listener(reason)

    def interrupt(self, exc: KeyboardInterrupt) -> str:
        """Stop for Ctrl-C or a termination signal.

        Args:
            exc: The interrupt.

        Returns:
            The reason, e.g. ``"interrupted (Ctrl-C)"``.
        """
        self.interrupted = True
        how = exc.name if isinstance(exc, StopSignal) else "Ctrl-C"
        reason = f"interrupted ({how})"
        self.stop(reason)
        return reason

    def record(self, result: ScriptResult) -> None:
        """Take a finished script into account (a failure stops a fail-fast batch).

        Args:
            result: The script's result.
        """
        if self.fail_fast and fails_fast(result):
            self.stop(f"{result.name} {result.status} (fail-fast)")

    def not_started(self, task: Task) -> ScriptResult:
        """The result of a script that never started because the batch stopped.

        Args:
            task: The script.

        Returns:
            A ``cancelled`` result.
        """
        return script_result(
            task, Status.CANCELLED, f"not started: {self.reason or 'the batch was cancelled'}"
        )

    def cut_short(self, task: Task, reason: str) -> ScriptResult:
        """The result of a script that was running when the batch was interrupted.

        Args:
            task: The script.
            reason: What :meth:`interrupt` returned.

        Returns:
            A ``cancelled`` result (its container is already gone).
        """
        return script_result(task, Status.CANCELLED, reason)
