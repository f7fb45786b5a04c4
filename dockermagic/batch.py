"""Running a folder of scripts, one after another or in a process pool.

:func:`run_scripts` is the batch runner behind ``dockermagic run`` and the
widget panel. Each script runs in its own locked-down container, with the
runner its file suffix selects, and the outcome is a :class:`BatchReport`.

Folder convention:

* Every file directly in the folder whose suffix a registered runner claims
  (``.py``, ``.js``, ``.mjs``, ``.cjs``) is a script; scripts run in name order.
  Other files are ignored and listed in :attr:`BatchReport.ignored`.
  Subfolders are never scripts.
* A subfolder named ``data`` (:data:`DATA_DIR`), when present, is copied next
  to *every* script, read-only. A script reads its inputs from its own folder:
  ``Path(__file__).parent / "data" / "input.txt"`` in Python,
  ``path.join(__dirname, "data", "input.txt")`` in CommonJS. The working
  directory (``/work``) and ``/tmp`` are the writable places for outputs.

Modes:

* ``sequential`` runs the scripts in the calling process.
* ``parallel`` runs them in a :class:`~concurrent.futures.ProcessPoolExecutor`
  whose workers start from a fork server (spawn where there is none), so no
  Docker client, socket or logging thread of the parent is ever inherited
  through ``fork``: each worker creates its own client in the pool initializer.
  Workers send progress events back over a queue, and their log records into
  the log sink's queue; the parent alone calls ``on_event`` and alone writes
  the log files (pitfall 21).

Statuses (:data:`STATUSES`): ``ok``, ``failed`` (non-zero exit, or output
flood), ``timed_out``, ``oom``, ``error`` (an infrastructure problem around the
script: engine, image, container) and ``cancelled`` (Ctrl-C, the ``cancel``
event, or ``fail_fast`` after another script failed).

Cancelling (``cancel.set()`` or Ctrl-C in the calling thread) starts no further
script and kills the running containers, which the runners then remove; the
report marks those scripts ``cancelled`` and :attr:`BatchReport.cancelled` is
true. ``run_scripts`` returns the report rather than raising
:class:`KeyboardInterrupt`.
"""

from __future__ import annotations

import concurrent.futures
import concurrent.futures.process
import contextlib
import dataclasses
import json
import logging
import multiprocessing
import multiprocessing.context
import os
import queue as queue_module
import secrets
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import docker

from dockermagic.engine import default_client
from dockermagic.errors import DockermagicError, InvalidArgumentError
from dockermagic.images import ensure_image, runner_image
from dockermagic.labels import BATCH
from dockermagic.logs import OutputMirror, log_result, start_logging, worker_logging
from dockermagic.policy import SandboxPolicy
from dockermagic.result import RunResult
from dockermagic.runners import AbstractDockerCodeRunner, get_runner, runner_class_for
from dockermagic.runners import runner_classes as _runner_classes

__all__ = [
    "DATA_DIR",
    "STATUSES",
    "BatchEvent",
    "BatchReport",
    "Discovery",
    "EventCallback",
    "OutputTail",
    "ScriptResult",
    "batch_status",
    "default_workers",
    "discover_scripts",
    "run_scripts",
]

logger = logging.getLogger(__name__)
_runs_logger = logging.getLogger("dockermagic.runs")

#: Every status a script can end with, in the order summaries list them.
STATUSES = ("ok", "failed", "timed_out", "oom", "error", "cancelled")
#: The subfolder copied next to every script (see the module docstring).
DATA_DIR = "data"
#: How much of a script's output the report keeps (the log file has all of it).
TAIL_LINES = 20
TAIL_CHARS = 4000
#: The container label that ties a container to its batch.
BATCH_LABEL = BATCH
#: How often the parent wakes to check cancellation while waiting for workers.
_POLL_SECONDS = 0.05

Mode = Literal["sequential", "parallel"]


# -- discovery ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Discovery:
    """What a scripts folder holds.

    Attributes:
        scripts: The runnable scripts, sorted by name.
        ignored: Names of files no runner claims.
        data_dir: The ``data`` subfolder, when there is one.
    """

    scripts: tuple[Path, ...]
    ignored: tuple[str, ...]
    data_dir: Path | None


def _suffix_map() -> dict[str, str]:
    """File suffix -> language, from the runner registry."""
    mapping: dict[str, str] = {}
    for cls in _runner_classes():
        for suffix in cls.suffixes:
            mapping.setdefault(suffix.lower(), cls.language)
    return mapping


def discover_scripts(directory: str | os.PathLike[str]) -> Discovery:
    """Find the scripts in a folder (see the module docstring for the rules).

    Args:
        directory: The scripts folder.

    Returns:
        The scripts, the ignored files and the data folder.

    Raises:
        InvalidArgumentError: The folder does not exist, is empty, or holds
            no file that a registered runner can run.
    """
    root = Path(directory)
    if not root.is_dir():
        problem = "is not a folder" if root.exists() else "no such folder"
        raise InvalidArgumentError("scripts folder", str(directory), problem)
    suffixes = _suffix_map()
    scripts: list[Path] = []
    ignored: list[str] = []
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        if entry.is_dir():
            continue
        if entry.suffix.lower() in suffixes:
            scripts.append(entry)
        else:
            ignored.append(entry.name)
    if not scripts:
        if ignored:
            known = ", ".join(sorted(suffixes))
            raise InvalidArgumentError(
                "scripts folder",
                str(directory),
                f"holds no runnable script ({len(ignored)} other file(s); runnable: {known})",
            )
        raise InvalidArgumentError("scripts folder", str(directory), "holds no scripts")
    data = root / DATA_DIR
    return Discovery(tuple(scripts), tuple(ignored), data if data.is_dir() else None)


# -- results -----------------------------------------------------------------------------


def batch_status(result: RunResult) -> str:
    """Map a runner's result to a batch status.

    An output flood (``truncated``) counts as ``failed``: the program did not
    finish its work.

    Args:
        result: The runner's result.

    Returns:
        One of :data:`STATUSES` (never ``error``: that needs an exception).
    """
    status = result.status
    return "failed" if status == "truncated" else status


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
    """

    name: str
    path: str
    language: str
    status: str
    exit_code: int | None = None
    duration: float = 0.0
    output_tail: str = ""
    log_file: str = ""
    message: str = ""
    image: str = ""

    @property
    def ok(self) -> bool:
        """True when the script succeeded."""
        return self.status == "ok"

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
        workers: Worker processes used (1 when sequential).
        run_id: Identifies the batch in the logs and container labels.
        results: Per script, in name order.
        ignored: Files in the folder that no runner claims.
        wall_time: Seconds from start to the report.
        started_at: ISO 8601 time the batch started.
        log_dir: The log directory.
        cancelled: The batch was cancelled (Ctrl-C or the ``cancel`` event).
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

    @property
    def totals(self) -> dict[str, int]:
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
            "workers": self.workers,
            "run_id": self.run_id,
            "started_at": self.started_at,
            "wall_time": round(self.wall_time, 3),
            "log_dir": self.log_dir,
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

    Kinds: ``"start"`` (a container is being started for the script),
    ``"output"`` (a chunk of output: ``stream`` and ``text``), ``"finish"`` (the
    script is done: ``result``). Every script gets exactly one ``finish``; a
    script cancelled before it started gets no ``start``.

    Attributes:
        kind: ``"start"``, ``"output"`` or ``"finish"``.
        script: The script's file name.
        language: The runner's language.
        index: The script's position in the batch (0-based).
        total: The number of scripts in the batch.
        stream: For output: ``"stdout"`` or ``"stderr"``.
        text: For output: the chunk.
        result: For finish: the script's result.
    """

    kind: str
    script: str
    language: str
    index: int
    total: int
    stream: str = ""
    text: str = ""
    result: ScriptResult | None = None


#: ``on_event(event)``: called in the thread that called :func:`run_scripts`.
EventCallback = Callable[[BatchEvent], None]


# -- one script --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Task:
    """Everything a worker needs to run one script (picklable)."""

    index: int
    total: int
    path: str
    name: str
    language: str
    image: str
    image_error: str
    include: tuple[str, ...]
    timeout: float | None
    run_id: str
    log_file: str


def _skipped(task: _Task, status: str, message: str) -> ScriptResult:
    return ScriptResult(
        name=task.name,
        path=task.path,
        language=task.language,
        status=status,
        message=message,
        log_file=task.log_file,
    )


def _run_task(
    task: _Task,
    runner: AbstractDockerCodeRunner | None,
    emit: EventCallback,
    cancel: threading.Event,
) -> ScriptResult:
    """Run one script, emitting start/output/finish; errors become results.

    Raises:
        KeyboardInterrupt: Passed on (sequential mode handles it).
    """
    if cancel.is_set():
        return _skipped(task, "cancelled", "not started: the batch was stopped")
    emit(BatchEvent("start", task.name, task.language, task.index, task.total))
    tail = OutputTail()
    mirror = OutputMirror(task.name, task.run_id, task.language)

    def on_output(stream: str, text: str) -> None:
        mirror(stream, text)
        tail.add(stream, text)
        emit(BatchEvent("output", task.name, task.language, task.index, task.total, stream, text))

    started = time.monotonic()
    outcome: ScriptResult
    try:
        if runner is None:
            raise DockermagicError(task.image_error)
        result = runner.run_file(
            task.path,
            timeout=task.timeout,
            on_output=on_output,
            include=task.include,
            cancel=cancel,
            labels={BATCH_LABEL: task.run_id},
        )
    except DockermagicError as exc:
        outcome = _error_result(task, str(exc), started, tail)
    except Exception as exc:  # an unexpected engine answer must not sink the batch
        logger.exception("%s: unexpected error", task.name)
        outcome = _error_result(task, f"{type(exc).__name__}: {exc}", started, tail)
    else:
        log_result(task.name, task.run_id, result, origin="batch")
        outcome = ScriptResult(
            name=task.name,
            path=task.path,
            language=task.language,
            status=batch_status(result),
            exit_code=result.exit_code,
            duration=time.monotonic() - started,
            output_tail=tail.text(),
            log_file=task.log_file,
            message=result.describe(),
            image=result.image,
        )
    finally:
        mirror.close()
    emit(BatchEvent("finish", task.name, task.language, task.index, task.total, result=outcome))
    return outcome


def _error_result(task: _Task, message: str, started: float, tail: OutputTail) -> ScriptResult:
    _runs_logger.error(
        "%s run=%s %s status=error: %s", task.name, task.run_id, task.language, message
    )
    return ScriptResult(
        name=task.name,
        path=task.path,
        language=task.language,
        status="error",
        duration=time.monotonic() - started,
        output_tail=tail.text(),
        log_file=task.log_file,
        message=message,
        image=task.image,
    )


# -- worker processes --------------------------------------------------------------------


@dataclass
class _WorkerState:
    queue: Any
    cancel: threading.Event
    policy: SandboxPolicy
    client: docker.DockerClient | None
    client_error: str
    stop: Any
    fail_fast: bool
    runners: dict[tuple[str, str], AbstractDockerCodeRunner] = field(default_factory=dict)


_worker: _WorkerState | None = None


def _init_worker(
    events: Any, log_queue: Any, stop: Any, policy: SandboxPolicy, fail_fast: bool
) -> None:
    """Pool initializer: own client, logging to the parent's sink, cancel bridge."""
    global _worker
    # Ctrl-C reaches the whole process group; only the parent decides what it
    # means (cancel the batch), so that workers report instead of dying.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    worker_logging(log_queue)
    cancel = threading.Event()

    def bridge() -> None:
        # The runner polls a threading.Event; mirror the cross-process one.
        stop.wait()
        cancel.set()

    threading.Thread(target=bridge, name="dockermagic-cancel", daemon=True).start()
    client: docker.DockerClient | None = None
    error = ""
    try:
        client = default_client()
    except DockermagicError as exc:  # reported per script: an initializer must not raise
        error = str(exc)
    _worker = _WorkerState(events, cancel, policy, client, error, stop, fail_fast)


def _worker_run(task: _Task) -> ScriptResult:
    state = _worker
    if state is None:  # pragma: no cover - the initializer always runs first
        raise RuntimeError("worker not initialised")
    if state.stop.is_set():
        # The bridge thread may not have woken up yet (e.g. this very worker
        # just stopped the batch for fail-fast): never start a script late.
        state.cancel.set()
    runner: AbstractDockerCodeRunner | None = None
    if state.client is None:
        task = _with_error(task, state.client_error)
    elif not task.image_error:
        key = (task.language, task.image)
        runner = state.runners.get(key)
        if runner is None:
            runner = get_runner(
                task.language, image=task.image, policy=state.policy, client=state.client
            )
            state.runners[key] = runner
    result = _run_task(task, runner, state.queue.put, state.cancel)
    if state.fail_fast and result.status not in ("ok", "cancelled"):
        # Stop here, before this worker takes the next task: waiting for the
        # parent to notice would let a queued script start.
        state.stop.set()
    return result


def _with_error(task: _Task, message: str) -> _Task:
    return dataclasses.replace(task, image_error=message)


def _pool_context() -> multiprocessing.context.BaseContext:
    """A start method that copies no live client, socket or thread into workers."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        # Workers fork from a server that has imported this module once, so
        # each new worker is ready in milliseconds, not a Python start-up.
        context.set_forkserver_preload(["dockermagic.batch"])
        return context
    return multiprocessing.get_context("spawn")


# -- the batch ---------------------------------------------------------------------------


def default_workers(scripts: int) -> int:
    """A sensible worker count: one per CPU, no more than there are scripts.

    Each container may use one CPU (the default policy), so more workers than
    CPUs only help scripts that mostly wait.

    Args:
        scripts: How many scripts the batch has.

    Returns:
        At least 1.
    """
    return max(1, min(scripts, os.cpu_count() or 1))


def _validate(mode: str, workers: int | None, timeout: float | None) -> None:
    if mode not in ("sequential", "parallel"):
        raise InvalidArgumentError("mode", mode, "expected 'sequential' or 'parallel'")
    if workers is not None and (
        isinstance(workers, bool) or not isinstance(workers, int) or workers < 1
    ):
        raise InvalidArgumentError("workers", workers, "must be a positive whole number")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0
    ):
        raise InvalidArgumentError("timeout", timeout, "must be a positive number of seconds")


def _prepare_images(
    client: docker.DockerClient, languages: Iterable[str], images: Mapping[str, str]
) -> dict[str, tuple[str, str]]:
    """Resolve (and pull if needed) each language's image once, in the parent.

    Returns:
        language -> (image, error message or '').
    """
    prepared: dict[str, tuple[str, str]] = {}
    for language in sorted(set(languages)):
        cls = runner_class_for(language)
        image = ""
        try:
            image = runner_image(client, cls, images.get(language))
            ensure_image(client, image)
        except DockermagicError as exc:
            prepared[language] = (image, str(exc))
            continue
        prepared[language] = (image, "")
    return prepared


def _select(discovery: Discovery, only: Iterable[str]) -> Discovery:
    wanted = set(only)
    known = {path.name for path in discovery.scripts}
    unknown = sorted(wanted - known)
    if unknown:
        raise InvalidArgumentError("script", ", ".join(unknown), "not a script of the folder")
    if not wanted:
        raise InvalidArgumentError("only", [], "select at least one script")
    scripts = tuple(p for p in discovery.scripts if p.name in wanted)
    return dataclasses.replace(discovery, scripts=scripts)


def _normalise_images(images: Mapping[str, str] | None) -> dict[str, str]:
    normalised: dict[str, str] = {}
    for key, image in (images or {}).items():
        if image:
            normalised[runner_class_for(key).language] = image
    return normalised


class _Dispatcher:
    """Delivers events to ``on_event`` in the parent and remembers the finishes."""

    def __init__(self, on_event: EventCallback | None) -> None:
        self.on_event = on_event
        self.finished: set[str] = set()

    def __call__(self, event: BatchEvent) -> None:
        if event.kind == "finish":
            self.finished.add(event.script)
        if self.on_event is not None:
            self.on_event(event)

    def take(self, item: Any) -> None:
        """Handle one item from the workers' queue: an event."""
        if isinstance(item, BatchEvent):
            self(item)

    def pump(self, events: Any, timeout: float) -> None:
        """Take what the workers sent, waiting up to ``timeout`` for the first item."""
        try:
            self.take(events.get(timeout=timeout))
            for _ in range(1000):
                self.take(events.get_nowait())
        except queue_module.Empty:
            pass


def run_scripts(
    directory: str | os.PathLike[str],
    *,
    mode: Mode = "sequential",
    workers: int | None = None,
    timeout: float | None = None,
    fail_fast: bool = False,
    on_event: EventCallback | None = None,
    cancel: threading.Event | None = None,
    log_dir: str | os.PathLike[str] | None = None,
    images: Mapping[str, str] | None = None,
    policy: SandboxPolicy | None = None,
    only: Iterable[str] | None = None,
) -> BatchReport:
    """Run every script of a folder, each in its own container.

    Args:
        directory: The scripts folder (see the module docstring for the rules).
        mode: ``"sequential"`` or ``"parallel"``.
        workers: Worker processes in parallel mode; :func:`default_workers`
            when None. Never more than there are scripts.
        timeout: Wall-clock seconds per script; the policy's when None.
        fail_fast: After the first script that does not succeed, start no
            further script and kill the running ones (reported ``cancelled``).
        on_event: Receives :class:`BatchEvent` objects (start, output, finish)
            in the calling thread.
        cancel: Setting this event cancels the batch (as Ctrl-C does).
        log_dir: Where outputs and the application log go; see
            :func:`dockermagic.logs.log_directory`.
        images: Image per language (``{"python": "python:3.12"}``); names or
            aliases as keys. The runners' usual choice for the others.
        policy: The sandbox policy; :meth:`SandboxPolicy.default` when None.
        only: Run just these scripts (file names); the whole folder when None.

    Returns:
        The :class:`BatchReport`.

    Raises:
        InvalidArgumentError: A missing or empty folder, a folder without
            runnable scripts, a bad mode, worker count or timeout.
        LogDirectoryError: The log directory cannot be created or written
            (checked before any script runs).
        EngineUnavailableError: No Docker Engine answers.
    """
    _validate(mode, workers, timeout)
    discovery = discover_scripts(directory)
    if only is not None:
        discovery = _select(discovery, only)
    chosen_images = _normalise_images(images)
    policy = policy if policy is not None else SandboxPolicy.default()
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    clock = time.monotonic()
    run_id = secrets.token_hex(6)
    suffixes = _suffix_map()
    sink = start_logging(log_dir)
    try:
        client = default_client()
        languages = [suffixes[p.suffix.lower()] for p in discovery.scripts]
        prepared = _prepare_images(client, languages, chosen_images)
        include = (str(discovery.data_dir),) if discovery.data_dir else ()
        total = len(discovery.scripts)
        tasks = [
            _Task(
                index=i,
                total=total,
                path=str(path),
                name=path.name,
                language=language,
                image=prepared[language][0],
                image_error=prepared[language][1],
                include=include,
                timeout=timeout,
                run_id=run_id,
                log_file=str(sink.output_path(path.name)),
            )
            for i, (path, language) in enumerate(zip(discovery.scripts, languages, strict=True))
        ]
        count = 1 if mode == "sequential" else min(workers or default_workers(total), total)
        logger.info(
            "batch %s: %d script(s) from %s, %s, %d worker(s)",
            run_id,
            total,
            directory,
            mode,
            count,
        )
        dispatcher = _Dispatcher(on_event)
        user_cancel = cancel if cancel is not None else threading.Event()
        if mode == "sequential":
            results, interrupted = _run_sequential(
                tasks, client, policy, dispatcher, user_cancel, fail_fast
            )
        else:
            results, interrupted = _run_parallel(
                tasks, count, policy, dispatcher, user_cancel, fail_fast, sink.queue
            )
        # Scripts that never started still get their one finish event.
        for task, result in zip(tasks, results, strict=True):
            if task.name not in dispatcher.finished:
                dispatcher(
                    BatchEvent("finish", task.name, task.language, task.index, total, result=result)
                )
        report = BatchReport(
            directory=str(directory),
            mode=mode,
            workers=count,
            run_id=run_id,
            results=tuple(results),
            ignored=discovery.ignored,
            wall_time=time.monotonic() - clock,
            started_at=started_at,
            log_dir=str(sink.directory),
            cancelled=interrupted or user_cancel.is_set(),
        )
        totals = ", ".join(f"{n} {s}" for s, n in report.totals.items() if n)
        logger.info("batch %s finished in %.2f s: %s", run_id, report.wall_time, totals)
        return report
    finally:
        sink.flush()
        sink.stop()


def _run_sequential(
    tasks: Sequence[_Task],
    client: docker.DockerClient,
    policy: SandboxPolicy,
    emit: _Dispatcher,
    cancel: threading.Event,
    fail_fast: bool,
) -> tuple[list[ScriptResult], bool]:
    runners: dict[tuple[str, str], AbstractDockerCodeRunner] = {}
    results: list[ScriptResult] = []
    interrupted = False
    stop_reason = ""
    for task in tasks:
        if interrupted or stop_reason or cancel.is_set():
            reason = stop_reason or "the batch was cancelled"
            results.append(_skipped(task, "cancelled", f"not started: {reason}"))
            continue
        runner = None
        if not task.image_error:
            key = (task.language, task.image)
            runner = runners.get(key) or get_runner(
                task.language, image=task.image, policy=policy, client=client
            )
            runners[key] = runner
        try:
            result = _run_task(task, runner, emit, cancel)
        except KeyboardInterrupt:
            # The runner has already killed and removed the container.
            interrupted = True
            result = _skipped(task, "cancelled", "interrupted (Ctrl-C)")
            logger.warning("batch %s interrupted during %s", task.run_id, task.name)
        results.append(result)
        if fail_fast and result.status not in ("ok", "cancelled"):
            stop_reason = f"{task.name} {result.status} (fail-fast)"
    return results, interrupted


def _run_parallel(
    tasks: Sequence[_Task],
    count: int,
    policy: SandboxPolicy,
    dispatcher: _Dispatcher,
    cancel: threading.Event,
    fail_fast: bool,
    log_queue: Any,
) -> tuple[list[ScriptResult], bool]:
    context = _pool_context()
    events: Any = context.Queue()
    stop: Any = context.Event()
    pool = concurrent.futures.ProcessPoolExecutor(
        max_workers=count,
        mp_context=context,
        initializer=_init_worker,
        # Log records go straight to the sink's single writer (its queue
        # serves workers of any start method); events come back to us.
        initargs=(events, log_queue, stop, policy, fail_fast),
    )
    futures = {pool.submit(_worker_run, task): task for task in tasks}
    results: dict[str, ScriptResult] = {}
    interrupted = False
    stop_reason = ""

    def stop_all(reason: str) -> None:
        nonlocal stop_reason
        if not stop_reason:
            stop_reason = reason
            stop.set()
            for future in futures:
                future.cancel()

    pending = set(futures)
    try:
        while pending:
            try:
                dispatcher.pump(events, _POLL_SECONDS)
                if cancel.is_set():
                    stop_all("the batch was cancelled")
                for future in [f for f in pending if f.done()]:
                    pending.discard(future)
                    task = futures[future]
                    result = _collect(future, task, stop_reason)
                    results[task.name] = result
                    if fail_fast and result.status not in ("ok", "cancelled"):
                        stop_all(f"{task.name} {result.status} (fail-fast)")
            except KeyboardInterrupt:
                interrupted = True
                logger.warning("batch interrupted; cancelling the running scripts")
                stop_all("interrupted (Ctrl-C)")
    finally:
        if pending:  # an exception escaped (e.g. from on_event): stop the workers
            stop_all("the batch was aborted")
        _shutdown(pool, dispatcher, events)
    ordered = [
        results.get(t.name) or _skipped(t, "cancelled", f"not started: {stop_reason}")
        for t in tasks
    ]
    return ordered, interrupted


def _collect(
    future: concurrent.futures.Future[ScriptResult], task: _Task, reason: str
) -> ScriptResult:
    if future.cancelled():
        return _skipped(task, "cancelled", f"not started: {reason or 'cancelled'}")
    try:
        return future.result()
    except concurrent.futures.process.BrokenProcessPool as exc:
        return _skipped(task, "error", f"the worker process died: {exc}")
    except Exception as exc:  # a failure in our worker code, not the script's
        logger.error("%s: worker failed: %s", task.name, exc)
        return _skipped(task, "error", f"{type(exc).__name__}: {exc}")


def _shutdown(
    pool: concurrent.futures.ProcessPoolExecutor, dispatcher: _Dispatcher, events: Any
) -> None:
    """Shut the pool down while draining the queue.

    A worker cannot exit while its queue's pipe is full, so the parent keeps
    reading until every worker has gone, then takes what is left.
    """
    closer = threading.Thread(target=pool.shutdown, kwargs={"wait": True}, daemon=True)
    closer.start()
    while closer.is_alive():
        with contextlib.suppress(KeyboardInterrupt):  # the workers are stopping anyway
            dispatcher.pump(events, _POLL_SECONDS)
    dispatcher.pump(events, 0.01)
    events.close()
    events.join_thread()
