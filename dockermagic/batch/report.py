"""What a batch reports: per-script results, the report, progress events.

Pure data, no Docker calls. Statuses are :class:`~dockermagic.status.Status`
members (plain strings in JSON).
"""

from __future__ import annotations

import json
import queue
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from dockermagic.result import RunResult
from dockermagic.status import Status

__all__ = [
    "STATUSES",
    "TAIL_CHARS",
    "TAIL_LINES",
    "BatchEvent",
    "BatchReport",
    "EventCallback",
    "EventSource",
    "OutputTail",
    "ScriptResult",
    "batch_status",
    "pump_events",
]

#: Every status a script can end with, in the order summaries list them.
STATUSES = (
    Status.OK,
    Status.FAILED,
    Status.TIMED_OUT,
    Status.OOM,
    Status.ERROR,
    Status.CANCELLED,
)
#: How much of a script's output the report keeps (the log file has all of it).
TAIL_LINES = 20
TAIL_CHARS = 4000


def batch_status(result: RunResult) -> Status:
    """Map a runner's result to a batch status.

    An output flood (``truncated``) counts as ``failed``: the program did not
    finish its work.

    Args:
        result: The runner's result.

    Returns:
        One of :data:`STATUSES` (never ``error``: that needs an exception).
    """
    status = result.status
    return Status.FAILED if status is Status.TRUNCATED else status


class OutputTail:
    """The last lines of a run's output, stdout and stderr interleaved as produced.

    Keeps at most ``chars`` characters, so a flood cannot fill memory.

    Args:
        lines: Lines :meth:`text` returns at most.
        chars: Characters kept at most.
    """

    def __init__(self, lines: int = TAIL_LINES, chars: int = TAIL_CHARS) -> None:
        self.lines = lines
        self.chars = chars
        self._chunks: deque[str] = deque()
        self._size = 0

    def add(self, stream: str, text: str) -> None:
        """Take one chunk of output (usable as a runner's ``on_output``).

        Args:
            stream: ``"stdout"`` or ``"stderr"`` (not distinguished here).
            text: The chunk.
        """
        if len(text) > self.chars:
            text = text[-self.chars :]
        self._chunks.append(text)
        self._size += len(text)
        while self._size > self.chars and len(self._chunks) > 1:
            self._size -= len(self._chunks.popleft())

    def text(self) -> str:
        """The last :attr:`lines` lines (and at most :attr:`chars` characters).

        Returns:
            The tail, without a trailing newline.
        """
        joined = "".join(self._chunks)[-self.chars :]
        return "\n".join(joined.rstrip("\n").split("\n")[-self.lines :])


@dataclass(frozen=True)
class ScriptResult:
    """The outcome of one script of a batch.

    Attributes:
        name: The script's file name.
        path: The script's path on the host.
        language: The runner's language.
        status: One of :data:`STATUSES`.
        exit_code: The program's exit status; None when it never ran to an exit.
        duration: Seconds, from asking for the container until it was removed.
        output_tail: The last lines of the output (the log file has all of it).
        log_file: Where the full output was mirrored ('' when not logged).
        message: A one-line account: the failure, the error, or the success.
        image: The image the script ran in ('' when it never ran).
        display_count: Displays the script made and the run kept (plots,
            tables, ``display()``).
        displays_dropped: Displays dropped past the run's display cap.
        outputs: Files its displays were written to (with ``outputs_dir``),
            in the order displayed.
        cpu_seconds: CPU time (user + system) the program used; None when
            the runner could not tell or the script never ran.
        peak_memory_bytes: The program's peak resident memory; None when unknown.
        node: The Swarm node (its id) the script ran on; '' for a local run.
    """

    name: str
    path: str
    language: str
    status: Status
    exit_code: int | None = None
    duration: float = 0.0
    output_tail: str = ""
    log_file: str = ""
    message: str = ""
    image: str = ""
    display_count: int = 0
    displays_dropped: int = 0
    outputs: tuple[str, ...] = ()
    cpu_seconds: float | None = None
    peak_memory_bytes: int | None = None
    node: str = ""

    @property
    def ok(self) -> bool:
        """True when the script succeeded."""
        return self.status == Status.OK

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary.

        Returns:
            The fields, by name.
        """
        return asdict(self)


@dataclass(frozen=True)
class BatchReport:
    """The outcome of a batch: one :class:`ScriptResult` per script, in name order.

    Attributes:
        directory: The scripts folder.
        mode: ``"sequential"`` or ``"parallel"``.
        workers: Worker processes used (1 when sequential); with the Swarm
            backend, tasks run at once at most.
        run_id: Identifies the batch in the logs and container labels.
        results: Per script, in name order.
        ignored: Files in the folder that no runner claims.
        wall_time: Seconds from start to the report.
        started_at: ISO 8601 time the batch started.
        log_dir: The log directory ('' when the batch was not logged).
        cancelled: The batch was cancelled (Ctrl-C, a termination signal, or
            the ``cancel`` event).
        requirements: Packages per language the scripts got (from the
            folder's ``requirements.txt`` / ``package.json``, or the caller's).
        pool: Idle containers kept per worker and configuration (0: none).
        outputs_dir: Where displays were written ('' when they were not).
        backend: Where the scripts ran: ``"local"`` (the engine the client
            talks to) or ``"swarm"`` (tasks on a Swarm's nodes).
    """

    directory: str
    mode: str
    workers: int
    run_id: str
    results: tuple[ScriptResult, ...]
    ignored: tuple[str, ...] = ()
    wall_time: float = 0.0
    started_at: str = ""
    log_dir: str = ""
    cancelled: bool = False
    requirements: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    pool: int = 0
    outputs_dir: str = ""
    backend: str = "local"

    @property
    def totals(self) -> dict[Status, int]:
        """How many scripts ended with each status (every status, zeros included)."""
        counts = dict.fromkeys(STATUSES, 0)
        for result in self.results:
            counts[result.status] = counts.get(result.status, 0) + 1
        return counts

    @property
    def ok(self) -> bool:
        """True when every script succeeded."""
        return bool(self.results) and all(r.ok for r in self.results)

    def by_name(self) -> dict[str, ScriptResult]:
        """The results keyed by script name.

        Returns:
            A new dictionary.
        """
        return {r.name: r for r in self.results}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary (with ``totals`` and ``ok``).

        Returns:
            The report.
        """
        return {
            "directory": self.directory,
            "mode": self.mode,
            "backend": self.backend,
            "workers": self.workers,
            "run_id": self.run_id,
            "started_at": self.started_at,
            "wall_time": round(self.wall_time, 3),
            "log_dir": self.log_dir,
            "outputs_dir": self.outputs_dir,
            "pool": self.pool,
            "requirements": {
                language: list(specs) for language, specs in self.requirements.items()
            },
            "cancelled": self.cancelled,
            "ok": self.ok,
            "totals": self.totals,
            "ignored": list(self.ignored),
            "results": [r.to_dict() for r in self.results],
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        """The report as JSON.

        Args:
            indent: Passed to :func:`json.dumps`.

        Returns:
            The JSON text.
        """
        return json.dumps(self.to_dict(), indent=indent)


@dataclass(frozen=True)
class BatchEvent:
    """Progress of a batch, delivered to ``on_event`` in the calling process.

    Kinds: ``"prepare"`` (the batch gets an image ready before any script
    starts: a pull, or a derived image with the scripts' packages; ``text``
    is one progress line, ``script`` is '' and ``index`` -1), ``"start"`` (a
    container is being started for the script), ``"output"`` (a chunk of
    output: ``stream`` and ``text``), ``"display"`` (the script displayed
    something: ``data``, a MIME bundle as in
    :attr:`~dockermagic.result.RunResult.displays`), ``"finish"`` (the script
    is done: ``result``). Every script gets exactly one ``finish``; a script
    cancelled before it started gets no ``start``.

    Attributes:
        kind: ``"prepare"``, ``"start"``, ``"output"``, ``"display"`` or ``"finish"``.
        script: The script's file name ('' for ``prepare``).
        language: The runner's language.
        index: The script's position in the batch (0-based; -1 for ``prepare``).
        total: The number of scripts in the batch.
        stream: For output: ``"stdout"`` or ``"stderr"``.
        text: For output: the chunk; for prepare: the progress line.
        result: For finish: the script's result.
        log_file: For start: where the script's output is mirrored ('' when
            the batch is not logged).
        data: For display: the MIME bundle (MIME type -> value; text as
            ``str``, binary types base64-encoded ``str``). It comes from the
            program: whoever shows it treats it as untrusted.
    """

    kind: str
    script: str
    language: str
    index: int
    total: int
    stream: str = ""
    text: str = ""
    result: ScriptResult | None = None
    log_file: str = ""
    data: Mapping[str, Any] | None = None


#: ``on_event(event)``: called in the thread that called ``run_scripts``.
EventCallback = Callable[[BatchEvent], None]


class EventSource(Protocol):
    """Where a batch's workers put their events (a thread or process queue)."""

    def get(self, block: bool = True, timeout: float | None = None) -> BatchEvent:
        """The next event, waiting up to ``timeout``; ``queue.Empty`` if none."""
        ...

    def get_nowait(self) -> BatchEvent:
        """The next event if one is there; ``queue.Empty`` if none."""
        ...


def pump_events(events: EventSource, emit: EventCallback, timeout: float) -> None:
    """Deliver what the workers sent, waiting up to ``timeout`` for the first event.

    At most about a thousand events a call, so the caller's loop still looks
    at its deadline and cancel flag during a flood.
    """
    try:
        emit(events.get(timeout=timeout))
        for _ in range(1000):
            emit(events.get_nowait())
    except queue.Empty:
        pass
