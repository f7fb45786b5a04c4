"""The parallel path: the scripts in a pool of worker processes.

Workers start from a fork server (spawn where there is none), so no Docker
client, socket or logging thread of the parent is ever inherited through
``fork``: each worker makes its own client (pitfall 8). Workers send progress
events back over a queue, and, when the batch is logged, their log records
straight into the log sink's queue; the parent alone calls ``on_event`` and
alone writes the log files (pitfall 21).

Stopping: the parent sets one cross-process event; each worker mirrors it into
the ``cancel`` event its runner watches, so running containers are killed and
removed and no queued script starts. Signals in a worker:

* SIGINT is ignored: Ctrl-C reaches the whole process group, and only the
  parent decides what it means (it stops the batch, and the workers report).
* SIGTERM and SIGHUP cancel the worker's running script; the worker then
  reports and exits when the pool shuts down (a terminal that closes sends
  SIGHUP to the whole group; the parent stops the batch in order).

A worker never outlives the process that started the batch: a thread in each
worker checks every :data:`PARENT_POLL` seconds that the parent still runs
(its pid and start time). When it is gone (SIGKILL, a crash) the worker kills
its running container and exits; with no worker left, the fork server exits
too.

Container pools (``pool=N``) are per process (:mod:`dockermagic.pool` drops
what a fork inherits), so each worker owns the pools of its runners: a
worker's runs take warm containers from its own pool, and no container
crosses a process. When the pool of workers shuts down, each worker removes
its idle containers on its way out (a ``multiprocessing`` finalizer: a
worker's interpreter ends with ``os._exit``, which runs no ``atexit``); an
orphaned worker does so before it exits. Whatever is still being removed
then, the parent's sweep (:mod:`~dockermagic.batch.sweep`) waits for.
"""

from __future__ import annotations

import concurrent.futures
import concurrent.futures.process
import contextlib
import logging
import multiprocessing
import multiprocessing.context
import multiprocessing.util
import os
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

from dockermagic.batch.cache import RunnerCache
from dockermagic.batch.report import EventCallback, ScriptResult, pump_events
from dockermagic.batch.script import Task, run_task, script_result
from dockermagic.batch.stop import StopPolicy, fails_fast
from dockermagic.labels import Owner, this_owner
from dockermagic.logs import worker_logging
from dockermagic.mphelpers import start_fork_server, unshield
from dockermagic.policy import SandboxPolicy
from dockermagic.pool import close_pools
from dockermagic.status import Status

__all__ = ["PARENT_POLL", "pool_context", "run_parallel"]

logger = logging.getLogger(__name__)

#: How often the parent wakes to check cancellation while waiting for workers.
POLL_SECONDS = 0.05
#: How often a worker checks that the process that started the batch still runs.
PARENT_POLL = 0.5
#: Seconds an orphaned worker gives its running script to be killed and removed.
ORPHAN_GRACE = 10.0
#: Seconds an orphaned worker waits for a container its pool is starting right now.
ORPHAN_POOL_WAIT = 5.0
#: Linux's process table, where a zombie and a reused pid can be told apart.
_HAVE_PROC = os.path.exists("/proc/self/stat")


def pool_context() -> multiprocessing.context.BaseContext:
    """A start method that copies no live client, socket or thread into workers.

    Returns:
        The fork server context where there is one, else spawn.
    """
    if "forkserver" in multiprocessing.get_all_start_methods():
        # Workers fork from a server that has imported this module once, so
        # each new worker is ready in milliseconds, not a Python start-up.
        # Started here, shielded: a SIGHUP to the whole group must not kill it.
        start_fork_server([__name__])
        return multiprocessing.get_context("forkserver")
    return multiprocessing.get_context("spawn")


# -- inside a worker ---------------------------------------------------------------------


@dataclass
class _Worker:
    events: Any
    stop: Any
    cancel: threading.Event
    idle: threading.Event
    runners: RunnerCache
    fail_fast: bool


_worker: _Worker | None = None


def _init_worker(
    events: Any,
    log_queue: Any,
    stop: Any,
    policy: SandboxPolicy,
    fail_fast: bool,
    run_id: str,
    parent: Owner,
    pool_size: int | None,
) -> None:
    """Pool initializer: logging, signals, the stop bridge, the parent watch, pools' end."""
    global _worker
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if log_queue is not None:
        worker_logging(log_queue)
    cancel = threading.Event()
    idle = threading.Event()
    idle.set()
    # The client is made on first use, here in the worker (never inherited).
    runners = RunnerCache(policy, run_id, pool=pool_size)
    state = _Worker(events, stop, cancel, idle, runners, fail_fast)
    _worker = state
    # Runs when the executor sends this worker home (multiprocessing's own
    # exit path; atexit never runs in a worker): its pools' idle containers
    # must not outlive the batch.
    multiprocessing.util.Finalize(None, close_pools, exitpriority=10)

    def cancel_soon(signum: int, frame: FrameType | None) -> None:
        # From a thread: Event.set takes a lock the interrupted code may hold.
        threading.Thread(target=cancel.set, daemon=True).start()

    signal.signal(signal.SIGTERM, cancel_soon)
    signal.signal(signal.SIGHUP, cancel_soon)
    # Forked from the shielded fork server, which never receives these.
    unshield()

    def bridge() -> None:
        # The runner polls a threading.Event; mirror the cross-process one.
        stop.wait()
        cancel.set()

    threading.Thread(target=bridge, name="dockermagic-cancel", daemon=True).start()
    threading.Thread(
        target=_watch_parent, args=(parent, state), name="dockermagic-parent", daemon=True
    ).start()


def _alive(parent: Owner) -> bool:
    """Whether the process that started the batch still runs.

    A zombie counts as gone: a SIGKILLed parent stays one until its own
    parent reaps it, and may never be reaped.
    """
    if not _HAVE_PROC:  # ask the kernel whether the pid exists
        try:
            os.kill(parent.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True
    try:
        with open(f"/proc/{parent.pid}/stat", encoding="ascii", errors="replace") as stream:
            fields = stream.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False
    # Field 3 is the state, field 22 the start time (a reused pid starts later).
    return fields[0] not in ("Z", "X") and (not parent.started or fields[19] == parent.started)


def _watch_parent(parent: Owner, state: _Worker) -> None:
    """Exit this worker once the process that started the batch is gone."""
    while _alive(parent):
        time.sleep(PARENT_POLL)
    # Nobody will read our results or stop us: kill the running container
    # (the runner removes it) and the idle ones, then leave without waiting
    # on queues whose reader is gone.
    state.cancel.set()
    # Wait for a container the pool is starting now: os._exit would stop
    # that thread with its create done and the container never started, so
    # never removed by the engine (a slower engine, Podman, hit that often).
    close_pools(wait=ORPHAN_POOL_WAIT)
    state.idle.wait(ORPHAN_GRACE)
    os._exit(1)


def _worker_run(task: Task) -> ScriptResult | None:
    """Run one script in this worker; None when the batch stopped before it started."""
    state = _worker
    if state is None:  # pragma: no cover - the initializer always runs first
        raise RuntimeError("worker not initialised")
    if state.stop.is_set():
        # The bridge thread may not have woken up yet (e.g. this very worker
        # just stopped the batch for fail-fast): never start a script late.
        state.cancel.set()
    if state.stop.is_set():
        return None  # the parent knows why the batch stopped, and says so
    if state.cancel.is_set():
        return script_result(
            task, Status.CANCELLED, "not started: its worker process was stopped by a signal"
        )
    state.idle.clear()
    try:
        result = run_task(task, state.runners, state.events.put, state.cancel)
    finally:
        state.idle.set()
    if state.fail_fast and fails_fast(result):
        # Stop here, before this worker takes the next task: waiting for the
        # parent to notice would let a queued script start.
        state.stop.set()
    return result


# -- in the parent -----------------------------------------------------------------------


def run_parallel(
    tasks: Sequence[Task],
    count: int,
    policy: SandboxPolicy,
    emit: EventCallback,
    stop: StopPolicy,
    *,
    run_id: str,
    log_queue: Any = None,
    pool_size: int | None = None,
) -> list[ScriptResult]:
    """Run the scripts in ``count`` worker processes until done or stopped.

    Args:
        tasks: The scripts.
        count: Worker processes.
        policy: The sandbox policy.
        emit: Receives the events, in this thread.
        stop: The batch's stop policy.
        run_id: The batch's id (a label on every container).
        log_queue: The log sink's queue; None when the batch is not logged.
        pool_size: Idle containers each worker keeps per configuration (see
            :class:`~dockermagic.batch.cache.RunnerCache`).

    Returns:
        One result per task, in order.
    """
    context = pool_context()
    events: Any = context.Queue()
    stop_event: Any = context.Event()
    pool = concurrent.futures.ProcessPoolExecutor(
        max_workers=count,
        mp_context=context,
        initializer=_init_worker,
        initargs=(
            events,
            log_queue,
            stop_event,
            policy,
            stop.fail_fast,
            run_id,
            this_owner(),
            pool_size,
        ),
    )
    futures: dict[concurrent.futures.Future[ScriptResult | None], Task] = {}

    def stop_workers(reason: str) -> None:
        stop_event.set()
        for future in futures:
            future.cancel()

    results: dict[str, ScriptResult] = {}
    pending: set[concurrent.futures.Future[ScriptResult | None]] = set()
    try:
        try:
            for task in tasks:
                futures[pool.submit(_worker_run, task)] = task
        except KeyboardInterrupt as exc:
            stop.interrupt(exc)  # the tasks not submitted are reported not started
        stop.on_stop(stop_workers)
        pending = set(futures)
        while pending:
            try:
                pump_events(events, emit, POLL_SECONDS)
                stop.check()
                for future in [f for f in pending if f.done()]:
                    pending.discard(future)
                    task = futures[future]
                    result = _collect(future, task, stop)
                    results[task.name] = result
                    stop.record(result)
            except KeyboardInterrupt as exc:
                reason = stop.interrupt(exc)
                logger.warning("batch %s %s; cancelling the running scripts", run_id, reason)
    finally:
        if pending:  # an exception escaped (e.g. from on_event): stop the workers
            stop.stop("the batch was aborted")
        _shutdown(pool, emit, events)
    return [results.get(t.name) or stop.not_started(t) for t in tasks]


def _collect(
    future: concurrent.futures.Future[ScriptResult | None], task: Task, stop: StopPolicy
) -> ScriptResult:
    if future.cancelled():
        return stop.not_started(task)
    try:
        result = future.result()
    except concurrent.futures.process.BrokenProcessPool as exc:
        return script_result(task, Status.ERROR, f"the worker process died: {exc}")
    except Exception as exc:  # a failure in our worker code, not the script's
        logger.error("%s: worker failed: %s", task.name, exc)
        return script_result(task, Status.ERROR, f"{type(exc).__name__}: {exc}")
    return result if result is not None else stop.not_started(task)


def _shutdown(
    pool: concurrent.futures.ProcessPoolExecutor, emit: EventCallback, events: Any
) -> None:
    """Shut the pool down while draining the queue.

    A worker cannot exit while its queue's pipe is full, so the parent keeps
    reading until every worker has gone, then takes what is left.
    """
    closer = threading.Thread(target=pool.shutdown, kwargs={"wait": True}, daemon=True)
    closer.start()
    while closer.is_alive():
        with contextlib.suppress(KeyboardInterrupt):  # the workers are stopping anyway
            pump_events(events, emit, POLL_SECONDS)
    pump_events(events, emit, 0.01)
    events.close()
    events.join_thread()
