"""One script of a batch: what to run (:class:`Task`) and running it (:func:`run_task`).

Both modes run each script through :func:`run_task`: it emits the script's
start, output and finish events, mirrors the output into the script's log
file when the batch is logged, and turns every problem around the script
(engine, image, a file that may not be copied in) into an ``error`` result,
so one bad script never stops the others.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dockermagic.batch.report import (
    BatchEvent,
    EventCallback,
    OutputTail,
    ScriptResult,
    batch_status,
)
from dockermagic.errors import DockermagicError
from dockermagic.logs import OutputMirror, log_result
from dockermagic.status import Status

if TYPE_CHECKING:
    from dockermagic.batch.cache import RunnerCache

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

    def event(
        self,
        kind: str,
        *,
        stream: str = "",
        text: str = "",
        result: ScriptResult | None = None,
        log_file: str = "",
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
    )


def run_task(
    task: Task, runners: RunnerCache, emit: EventCallback, cancel: threading.Event
) -> ScriptResult:
    """Run one script, emitting start/output/finish; problems become ``error`` results.

    Args:
        task: The script.
        runners: Where its runner comes from.
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

    def on_output(stream: str, text: str) -> None:
        if mirror is not None:
            mirror(stream, text)
        tail.add(stream, text)
        emit(task.event("output", stream=stream, text=text))

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
        )
    except DockermagicError as exc:
        outcome = _error(task, str(exc), started, tail)
    except Exception as exc:  # an unexpected engine answer must not sink the batch
        logger.exception("%s: unexpected error", task.name)
        outcome = _error(task, f"{type(exc).__name__}: {exc}", started, tail)
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
        )
    finally:
        if mirror is not None:
            mirror.close()
    emit(task.event("finish", result=outcome))
    return outcome


def _error(task: Task, message: str, started: float, tail: OutputTail) -> ScriptResult:
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
    )
