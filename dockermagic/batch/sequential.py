"""The sequential path: the scripts one after another, in the calling thread.

Ctrl-C (or a front end's :class:`~dockermagic.batch.stop.StopSignal`) lands
in the running script's runner, which kills and removes its container before
the interrupt reaches this loop; the loop then reports the script
``cancelled`` and starts nothing more.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from dockermagic.batch.backend import ScriptBackend
from dockermagic.batch.report import EventCallback, ScriptResult
from dockermagic.batch.script import Task, run_task
from dockermagic.batch.stop import StopPolicy

__all__ = ["run_sequential"]

logger = logging.getLogger(__name__)


def run_sequential(
    tasks: Sequence[Task], runners: ScriptBackend, emit: EventCallback, stop: StopPolicy
) -> list[ScriptResult]:
    """Run the scripts in order until the batch stops.

    Args:
        tasks: The scripts.
        runners: Where the scripts run (this process's runners, or a remote backend).
        emit: Receives the events.
        stop: The batch's stop policy.

    Returns:
        One result per task, in order.
    """
    results: list[ScriptResult] = []
    for task in tasks:
        if stop.check():
            results.append(stop.not_started(task))
            continue
        try:
            result = run_task(task, runners, emit, stop.cancel)
        except KeyboardInterrupt as exc:
            # The runner has already killed and removed the container.
            reason = stop.interrupt(exc)
            result = stop.cut_short(task, reason)
            logger.warning("batch %s %s during %s", task.run_id, reason, task.name)
        results.append(result)
        stop.record(result)
    return results
