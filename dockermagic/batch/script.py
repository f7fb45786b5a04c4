"""One script of a batch: what to run (:class:`Task`) and running it (:func:`run_task`).

Both modes run each script through :func:`run_task`: it emits the script's
start, output, display and finish events, mirrors the output into the
script's log file when the batch is logged, writes its displays to files
when the batch has an outputs folder (in the process that runs the script,
so a plot crosses to the parent once, as an event, and never in the result),
and turns every problem around the script (engine, image, a file that may
not be copied in) into an ``error`` result, so one bad script never stops
the others.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dockermagic.batch.displays import DisplayWriter
from dockermagic.batch.report import (
    BatchEvent,
    EventCallback,
    OutputTail,
    ScriptResult,
    batch_status,
)
from dockermagic.errors import DockermagicError
from dockermagic.logs import OutputMirror, log_result
from dockermagic.result import RunResult
from dockermagic.status import Status

if TYPE_CHECKING:
    from dockermagic.batch.backend import ScriptBackend

__all__ = ["Task", "run_task", "script_result"]

logger = logging.getLogger(__name__)
_runs_logger = logging.getLogger("dockermagic.runs")


@dataclass(frozen=True)
class Task:
    """Everything needed to run one script (picklable: it crosses into workers).

    Attributes:
        index: Position in the batch (0-based).
        total: Scripts in the batch.
        path: The script on the host.
        name: Its file name.
        language: The runner's language.
        image: The image to run it in.
        problem: Why it cannot run ('' when it can): an image that cannot be
            had, a ``data`` folder that may not be copied.
        include: Host folders copied next to it (the ``data`` folder).
        timeout: Wall-clock seconds; the policy's when None.
        run_id: The batch's id.
        log_file: Where its output is mirrored ('' when the batch is not logged).
        outputs_dir: Where its displays are written ('' when they are not).
    """

    index: int
    total: int
    path: str
    name: str
    language: str
    image: str
    problem: str
    include: tuple[str, ...]
    timeout: float | None
    run_id: str
    log_file: str
    outputs_dir: str = ""

    def event(
        self,
        kind: str,
        *,
        stream: str = "",
        text: str = "",
        result: ScriptResult | None = None,
        log_file: str = "",
        data: Mapping[str, Any] | None = None,
    ) -> BatchEvent:
        """An event about this script (fields as in :class:`BatchEvent`).

        Returns:
            The event.
        """
        return BatchEvent(
            kind,
            self.name,
            self.language,
            self.index,
            self.total,
            stream=stream,
            text=text,
            result=result,
            log_file=log_file,
            data=data,
        )


def script_result(
    task: Task,
    status: Status,
    message: str,
    *,
    exit_code: int | None = None,
    duration: float = 0.0,
    output_tail: str = "",
    image: str = "",
    run: RunResult | None = None,
    outputs: Sequence[str] = (),
    node: str = "",
) -> ScriptResult:
    """A result for a script, with its identity filled in.

    Args:
        task: The script.
        status: How it ended.
        message: The one-line account.
        exit_code: The program's exit status, when it ran to one.
        duration: Seconds it took.
        output_tail: The end of its output.
        image: The image it ran in.
        run: The runner's result, when it ran: its display counts, CPU and
            peak memory are taken from it.
        outputs: The files its displays were written to.
        node: The Swarm node it ran on, when it did not run (a node that is
            not set up); a run's own node otherwise.

    Returns:
        The result.
    """
    return ScriptResult(
        name=task.name,
        path=task.path,
        language=task.language,
        status=status,
        exit_code=exit_code,
        duration=duration,
        output_tail=output_tail,
        log_file=task.log_file,
        message=message,
        image=image,
        display_count=len(run.displays) if run is not None else 0,
        displays_dropped=run.displays_dropped if run is not None else 0,
        outputs=tuple(outputs),
        cpu_seconds=run.cpu_seconds if run is not None else None,
        peak_memory_bytes=run.peak_memory_bytes if run is not None else None,
        node=run.node if run is not None else node,
    )


def run_task(
    task: Task, runners: ScriptBackend, emit: EventCallback, cancel: threading.Event
) -> ScriptResult:
    """Run one script, emitting start/output/finish; problems become ``error`` results.

    Args:
        task: The script.
        runners: Where its runner comes from (the batch's backend).
        emit: Receives the events.
        cancel: Setting it kills the script's container (reported ``cancelled``).

    Returns:
        The script's result.

    Raises:
        KeyboardInterrupt: Passed on once the container is gone (the caller
            decides what an interrupt means for the batch).
    """
    if cancel.is_set():
        return script_result(task, Status.CANCELLED, "not started: the batch was stopped")
    emit(task.event("start", log_file=task.log_file))
    tail = OutputTail()
    mirror = OutputMirror(task.name, task.run_id, task.language) if task.log_file else None
    writer = DisplayWriter(task.outputs_dir, task.name) if task.outputs_dir else None

    def on_output(stream: str, text: str) -> None:
        if mirror is not None:
            mirror(stream, text)
        tail.add(stream, text)
        emit(task.event("output", stream=stream, text=text))

    def on_display(data: dict[str, Any], metadata: dict[str, Any]) -> None:
        if writer is not None:
            writer.add(data)
        emit(task.event("display", data=data))

    started = time.monotonic()
    outcome: ScriptResult
    try:
        runner = runners.runner_for(task)
        result = runner.run_file(
            task.path,
            timeout=task.timeout,
            on_output=on_output,
            include=task.include,
            cancel=cancel,
            on_display=on_display,
        )
    except DockermagicError as exc:
        outcome = _error(task, str(exc), started, tail, writer, node=getattr(exc, "node", ""))
    except Exception as exc:  # an unexpected engine answer must not sink the batch
        logger.exception("%s: unexpected error", task.name)
        outcome = _error(task, f"{type(exc).__name__}: {exc}", started, tail, writer)
    else:
        log_result(task.name, task.run_id, result, origin="batch")
        outcome = script_result(
            task,
            batch_status(result),
            result.describe(),
            exit_code=result.exit_code,
            duration=time.monotonic() - started,
            output_tail=tail.text(),
            image=result.image,
            run=result,
            outputs=writer.written if writer is not None else (),
        )
    finally:
        if mirror is not None:
            mirror.close()
    emit(task.event("finish", result=outcome))
    return outcome


def _error(
    task: Task,
    message: str,
    started: float,
    tail: OutputTail,
    writer: DisplayWriter | None,
    *,
    node: str = "",
) -> ScriptResult:
    _runs_logger.error(
        "%s run=%s %s status=error: %s", task.name, task.run_id, task.language, message
    )
    return script_result(
        task,
        Status.ERROR,
        message,
        duration=time.monotonic() - started,
        output_tail=tail.text(),
        image=task.image,
        outputs=writer.written if writer is not None else (),
        node=node,
    )
