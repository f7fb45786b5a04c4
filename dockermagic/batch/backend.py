"""Where a batch's scripts run: the backend seam.

A batch runs each script through :func:`~dockermagic.batch.script.run_task`,
which asks its backend for a runner (:meth:`ScriptBackend.runner_for`) and
calls the runner's ``run_file``; everything else (events, log mirror, the
report, statuses, stop policy) is the same whichever backend runs it.

Backends (:data:`BACKENDS`):

* ``"local"``: a fresh container on the engine the client talks to, with the
  language's agent (displays, CPU and memory figures, container pools):
  :class:`~dockermagic.batch.cache.RunnerCache`, one per process.
* ``"swarm"``: a one-off task on any node of the Swarm whose manager the
  client talks to: :class:`~dockermagic.batch.swarm.SwarmBackend`
  (:mod:`dockermagic.swarm` owns the services).
* ``"gateway"``: a one-shot run through the gateway ``DOCKERMAGIC_GATEWAY``
  names, in the user's fair queue under the teacher's ceiling:
  :class:`~dockermagic.batch.gateway.GatewayScripts`. A batch asked for
  ``"local"`` in a process with a gateway set runs there (such a process has
  no Docker socket).

Pure typing, no Docker calls.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal, Protocol

from dockermagic.result import RunResult
from dockermagic.streams import DisplayCallback, OutputCallback

if TYPE_CHECKING:
    from dockermagic.batch.script import Task

__all__ = ["BACKENDS", "Backend", "ScriptBackend", "ScriptRunner"]

#: Where a batch can run its scripts.
Backend = Literal["local", "swarm", "gateway"]
BACKENDS: tuple[Backend, ...] = ("local", "swarm", "gateway")


class ScriptRunner(Protocol):
    """Runs one script file and returns its :class:`~dockermagic.result.RunResult`.

    A failing program is a result; problems around it (engine, image, a file
    that may not be copied in, a node that is not set up) are
    :class:`~dockermagic.errors.DockermagicError` exceptions, which the
    batch reports as ``error``.
    """

    def run_file(
        self,
        path: str | os.PathLike[str],
        *,
        timeout: float | None = ...,
        on_output: OutputCallback | None = ...,
        include: Iterable[str | os.PathLike[str]] = ...,
        cancel: threading.Event | None = ...,
        on_display: DisplayCallback | None = ...,
    ) -> RunResult:
        """Run the file (see :meth:`~dockermagic.runners.AbstractDockerCodeRunner.run_file`)."""
        ...


class ScriptBackend(Protocol):
    """What a batch runs its scripts with, in one process."""

    def runner_for(self, task: Task) -> ScriptRunner:
        """The runner for a script.

        Raises:
            DockermagicError: The script cannot run (its ``problem``), or no
                engine answers.
        """
        ...

    def close(self) -> None:
        """Release what the backend holds at the batch's end; never raises."""
        ...
