"""The parallel path of a remote backend: scripts in threads of this process.

A Swarm task runs on a node, not here: running one is waiting on the
manager (state, log), so a thread per running script is enough and no
worker process is needed. Up to ``count`` scripts run at once; the others
wait their turn in order.

Events: each thread hands its events to a queue; the calling thread alone
delivers them (``on_event`` runs in the thread that called
:func:`~dockermagic.batch.run_scripts`, as in the other paths).

Stopping: one ``halt`` event, set when the batch stops (cancel, Ctrl-C or a
termination signal in the calling thread, fail-fast), is every running
script's ``cancel``: their tasks are removed and they are reported
``cancelled``; no further script starts. A thread whose script fails sets it
at once under ``fail_fast``, before its next script could start.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import queue
import threading
from collections.abc import Sequence

from dockermagic.batch.backend import ScriptBackend
from dockermagic.batch.report import BatchEvent, EventCallback, ScriptResult, pump_events
from dockermagic.batch.script import Task, run_task, script_result
from dockermagic.batch.stop import StopPolicy, fails_fast
from dockermagic.status import Status

__all__ = ["run_threaded"]

logger = logging.getLogger(__name__)

#: How often the calling thread wakes to notice cancellation while it waits.
POLL_SECONDS = 0.05


def run_threaded(
    tasks: Sequence[Task],
    count: int,
    backend: ScriptBackend,
    emit: EventCallback,
    stop: StopPolicy,
) -> list[ScriptResult]:
    """Run the scripts, ``count`` at once, until done or stopped.

    Args:
        tasks: The scripts.
        count: Scripts at once.
        backend: Where they run (shared by the threads).
        emit: Receives the events, in this thread.
        stop: The batch's stop policy.

    Returns:
        One result per task, in order.
    """
    halt = threading.Event()
    stop.on_stop(lambda reason: halt.set())
    events: queue.Queue[BatchEvent] = queue.Queue()

    def work(task: Task) -> ScriptResult | None:
        if halt.is_set():
            return None  # not started: the calling thread knows why
        result = run_task(task, backend, events.put, halt)
        if stop.fail_fast and fails_fast(result):
            halt.set()  # before this thread takes the next script
        return result

    executor = concurrent.futures.ThreadPoolExecutor(
        max_workers=count, thread_name_prefix="dockermagic-batch"
    )
    futures = {executor.submit(work, task): task for task in tasks}
    pending = set(futures)
    results: dict[int, ScriptResult] = {}
    try:
        while pending:
            try:
                pump_events(events, emit, POLL_SECONDS)
                stop.check()
                for future in [f for f in pending if f.done()]:
                    pending.discard(future)
                    task = futures[future]
                    result = _collect(future, task)
                    if result is not None:
                        results[task.index] = result
                        stop.record(result)
            except KeyboardInterrupt as exc:
                reason = stop.interrupt(exc)
                logger.warning("batch %s; cancelling the running scripts", reason)
    finally:
        if pending:  # an exception escaped (e.g. from on_event): stop the threads
            stop.stop("the batch was aborted")
            halt.set()
        _shutdown(executor, emit, events)
    return [results.get(task.index) or stop.not_started(task) for task in tasks]


def _collect(
    future: concurrent.futures.Future[ScriptResult | None], task: Task
) -> ScriptResult | None:
    try:
        return future.result()
    except Exception as exc:  # a failure in our code, not the script's
        logger.error("%s: failed: %s", task.name, exc)
        return script_result(task, Status.ERROR, f"{type(exc).__name__}: {exc}")


def _shutdown(
    executor: concurrent.futures.ThreadPoolExecutor,
    emit: EventCallback,
    events: queue.Queue[BatchEvent],
) -> None:
    """Wait for the threads (their tasks are being removed), delivering their events."""
    executor.shutdown(wait=False, cancel_futures=True)
    closer = threading.Thread(target=executor.shutdown, kwargs={"wait": True}, daemon=True)
    closer.start()
    while closer.is_alive():
        with contextlib.suppress(KeyboardInterrupt):  # they are stopping anyway
            pump_events(events, emit, POLL_SECONDS)
    pump_events(events, emit, 0.0)
