"""Watching one program while it runs: deadline, cancel, output cap, grace.

One loop serves both kinds of run: a one-shot container
(:mod:`dockermagic.runners`) and a cell of a warm session
(:mod:`dockermagic.sessions`). Each hands :func:`supervise` a :class:`Program`,
its output channel seen from the host:

* :meth:`Program.receive` returns what arrived (:class:`Output` chunks, an
  :class:`Exited` marker) or raises :class:`StreamEnded`;
* :meth:`Program.stop` asks the program to stop and says whether to keep
  reading until it does (a session's cell gets an interrupt and may finish
  its ``finally`` blocks; a flooding one-shot container is cut off at once);
* :meth:`Program.force_stop` ends it for good once :data:`STOP_GRACE` has
  passed since the stop.

The loop wakes every :data:`POLL_SECONDS` even when nothing arrives, so a
deadline, a ``cancel`` event and Ctrl-C are noticed within that time. Ctrl-C
(or an exception from ``on_output``) still stops the program, in a thread a
second Ctrl-C cannot interrupt, before the exception goes on.

Pure logic, no Docker calls: unit tests drive it with a fake program.
"""

from __future__ import annotations

import contextlib
import enum
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, Union

from dockermagic.errors import InvalidArgumentError
from dockermagic.result import RunResult
from dockermagic.streams import DisplayCollector, OutputCollector

__all__ = [
    "POLL_SECONDS",
    "STOP_GRACE",
    "Display",
    "Event",
    "Exited",
    "Output",
    "Program",
    "StopReason",
    "StreamEnded",
    "Supervision",
    "check_timeout",
    "supervise",
]

#: How often the loop wakes up to notice Ctrl-C, cancellation and the deadline.
POLL_SECONDS = 0.1
#: Seconds a stopped program may take to end before it is forced.
STOP_GRACE = 2.0


class StopReason(enum.Enum):
    """Why the host stopped a program."""

    TIMEOUT = "timeout"
    CANCEL = "cancel"
    OUTPUT_LIMIT = "output limit"
    INTERRUPT = "interrupt"


@dataclass(frozen=True)
class Output:
    """A chunk of the program's output.

    Attributes:
        stream: ``"stdout"`` or ``"stderr"``.
        data: The raw bytes.
    """

    stream: str
    data: bytes


@dataclass(frozen=True)
class Display:
    """A display the program made (a MIME bundle).

    Attributes:
        data: MIME type -> value (text as str, binary types base64).
        metadata: Its metadata.
        size: Its size in bytes as it travelled (what counts against the cap).
    """

    data: dict[str, Any]
    metadata: dict[str, Any]
    size: int


@dataclass(frozen=True)
class Exited:
    """The program said it is done (a session's cell), with its status.

    Attributes:
        exit_code: The status.
    """

    exit_code: int


#: What a program sends the supervisor.
Event = Union[Output, Display, Exited]  # noqa: UP007 (a runtime alias on Python 3.10)


class StreamEnded(Exception):
    """The program's output channel ended (it exited, or its container went away)."""


class Program(Protocol):
    """A running program as the supervisor sees it."""

    def receive(self, timeout: float) -> Sequence[Event]:
        """What arrives within ``timeout`` seconds (maybe nothing).

        Raises:
            StreamEnded: The channel ended.
        """
        ...

    def stop(self, reason: StopReason) -> bool:
        """Ask the program to stop.

        Returns:
            True to keep reading until it ends on its own (within the grace).
        """
        ...

    def force_stop(self) -> None:
        """End the program for good (its grace has passed)."""
        ...


@dataclass
class Supervision:
    """What happened while a program was watched.

    Attributes:
        duration: Seconds from the start of the watch until its end.
        reason: Why the host stopped it; None when it ended by itself.
        exit_code: The status an :class:`Exited` marker gave, if any.
        ended: The channel ended (a one-shot container's exit).
        forced: The program had to be forced after its grace.
        truncated: The output cap was reached.
    """

    duration: float = 0.0
    reason: StopReason | None = None
    exit_code: int | None = None
    ended: bool = False
    forced: bool = False
    truncated: bool = False

    @property
    def timed_out(self) -> bool:
        """The deadline stopped it."""
        return self.reason is StopReason.TIMEOUT

    @property
    def cancelled(self) -> bool:
        """The caller (``cancel``, Ctrl-C) stopped it."""
        return self.reason in (StopReason.CANCEL, StopReason.INTERRUPT)

    def result(
        self,
        collector: OutputCollector,
        *,
        language: str,
        image: str,
        exit_code: int,
        oom_killed: bool,
        container_name: str,
        displays: DisplayCollector | None = None,
        **extra: Any,
    ) -> RunResult:
        """The :class:`RunResult` of the watched run.

        Args:
            collector: The output kept.
            language: The runner's language.
            image: The image.
            exit_code: The program's status (-1 when unknown).
            oom_killed: Whether the OOM killer acted.
            container_name: The container's name.
            displays: The displays kept, if the program could make any.
            **extra: Further :class:`RunResult` fields (files, CPU, memory).

        Returns:
            The result.
        """
        return RunResult(
            language=language,
            image=image,
            exit_code=exit_code,
            stdout=collector.text("stdout"),
            stderr=collector.text("stderr"),
            duration=self.duration,
            timed_out=self.timed_out,
            oom_killed=oom_killed,
            output_truncated=self.truncated,
            cancelled=self.cancelled,
            container_name=container_name,
            displays=tuple(displays.bundles) if displays is not None else (),
            displays_dropped=displays.dropped if displays is not None else 0,
            **extra,
        )


def check_timeout(timeout: float | None, default: float) -> float:
    """The timeout of a run: the caller's, or the policy's.

    Args:
        timeout: What the caller asked for (None: the default).
        default: The policy's timeout.

    Returns:
        Seconds.

    Raises:
        InvalidArgumentError: Not a positive number.
    """
    limit = default if timeout is None else timeout
    if not isinstance(limit, (int, float)) or isinstance(limit, bool) or not limit > 0:
        raise InvalidArgumentError("timeout", timeout, "must be a positive number of seconds")
    return float(limit)


def supervise(
    program: Program,
    *,
    limit: float,
    collector: OutputCollector,
    cancel: threading.Event | None = None,
    grace: float = STOP_GRACE,
    poll: float = POLL_SECONDS,
    clock: Callable[[], float] = time.monotonic,
    displays: DisplayCollector | None = None,
) -> Supervision:
    """Watch a program until it ends, stopping it at the deadline, on cancel or a flood.

    Args:
        program: The program.
        limit: Wall-clock seconds from now.
        collector: Takes the output (its cap decides a flood).
        cancel: Setting it stops the program (reported as cancelled).
        grace: Seconds a stopped program may take before it is forced.
        poll: Seconds between checks when nothing arrives.
        clock: The monotonic clock (tests pass a fake one).
        displays: Takes the displays (dropped when None).

    Returns:
        What happened; the collector is finished (incomplete UTF-8 flushed).
    """
    started = clock()
    deadline = started + limit
    watch = Supervision()
    stopped_at: float | None = None

    def stop(reason: StopReason) -> bool:
        nonlocal stopped_at
        watch.reason = reason
        stopped_at = clock()
        return program.stop(reason)

    try:
        while True:
            now = clock()
            if stopped_at is None:
                if cancel is not None and cancel.is_set():
                    if not stop(StopReason.CANCEL):
                        break
                    continue
                if now >= deadline:
                    if not stop(StopReason.TIMEOUT):
                        break
                    continue
                wait = min(poll, deadline - now)
            else:
                left = stopped_at + grace - now
                if left <= 0:
                    watch.forced = True
                    program.force_stop()
                    break
                wait = min(poll, left)
            try:
                events = program.receive(wait)
            except StreamEnded:
                watch.ended = True
                break
            if _take(events, collector, displays, watch) is not None:
                break
            if collector.truncated and stopped_at is None and not stop(StopReason.OUTPUT_LIMIT):
                break
    except BaseException:
        # Ctrl-C, or on_output raised: stop the program before giving up, in a
        # thread that a second Ctrl-C cannot stop.
        collector.on_output = None
        closer = threading.Thread(
            target=_wind_down, args=(program, watch, grace, clock), name="dockermagic-stop"
        )
        closer.start()
        closer.join()
        raise
    finally:
        watch.truncated = collector.truncated
        watch.duration = clock() - started
    collector.finish()
    return watch


def _take(
    events: Sequence[Event],
    collector: OutputCollector,
    displays: DisplayCollector | None,
    watch: Supervision,
) -> int | None:
    """Feed output to the collectors; the exit status once the program said it is done."""
    for event in events:
        if isinstance(event, Exited):
            watch.exit_code = event.exit_code
            return event.exit_code
        if isinstance(event, Display):
            if displays is not None:
                displays.add(event.data, event.metadata, event.size)
            continue
        # Past the cap the collector drops what comes (and says so); reading
        # on keeps a stopping program from blocking on a full pipe.
        collector.add(event.stream, event.data)
    return None


def _wind_down(
    program: Program, watch: Supervision, grace: float, clock: Callable[[], float]
) -> None:
    """Stop a program after the host gave up on it, dropping what it still prints."""
    try:
        if watch.reason is None:
            watch.reason = StopReason.INTERRUPT
        # Programs make stop() idempotent: a cell already interrupted is not
        # interrupted twice; a one-shot container is cut off now.
        if not program.stop(StopReason.INTERRUPT):
            return
        until = clock() + grace
        while clock() < until:
            try:
                events = program.receive(min(POLL_SECONDS, max(until - clock(), 0.0)))
            except StreamEnded:
                return
            if any(isinstance(event, Exited) for event in events):
                return
        watch.forced = True
        program.force_stop()
    except Exception:  # the container goes anyway (removed by its owner)
        watch.forced = True
        with contextlib.suppress(Exception):
            program.force_stop()
