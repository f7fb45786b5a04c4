"""The gateway backend of a batch: each script a one-shot run through the gateway.

With ``DOCKERMAGIC_GATEWAY`` set, the process holds no Docker socket: a batch
sends each script to the gateway as a run (:class:`~dockermagic.runners.Job`
with the script and its ``data`` folder), exactly as ``get_runner(...).run_file``
does, and the gateway runs it under the teacher's ceiling, in the user's fair
queue, with an audit record. Reports, statuses, events, logs and JSON are
those of a local batch (:mod:`~dockermagic.batch.threads` runs the scripts in
threads of this process: a run is waiting on the gateway's stream).

What differs: nothing is pulled, built or swept here (the gateway owns its
images and containers, and ends a run whose stream is cancelled); no client
pool (the gateway keeps its own); packages go with each run and the gateway
decides whether they are allowed.

* :func:`gateway_limit` is the default number of scripts at once: the user's
  ``runs_at_once`` quota, so that none waits in the gateway's queue for
  nothing; :func:`gateway_ceiling` the most a batch may send at once (running
  plus queued: one more would be refused as over the quota).
* :class:`GatewayScripts` makes the runners.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dockermagic.batch.backend import ScriptRunner
from dockermagic.batch.script import Task
from dockermagic.errors import DockermagicError, InvalidArgumentError
from dockermagic.memo import Memo
from dockermagic.policy import SandboxPolicy
from dockermagic.runners import AbstractDockerCodeRunner, configured_backend, get_runner

__all__ = ["GatewayScripts", "gateway_ceiling", "gateway_limit"]


def _quotas() -> dict[str, Any]:
    backend = configured_backend()
    if backend is None:
        raise InvalidArgumentError(
            "backend", "gateway", "no gateway is configured: set DOCKERMAGIC_GATEWAY"
        )
    info = getattr(backend, "info", None)
    quotas = info().get("quotas") if callable(info) else None
    return quotas if isinstance(quotas, dict) else {}


def _whole(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def gateway_limit(scripts: int) -> int:
    """How many scripts a gateway batch runs at once by default.

    Args:
        scripts: How many scripts the batch has.

    Returns:
        The user's ``runs_at_once`` quota (1 when the gateway does not say),
        at most ``scripts``, at least 1.

    Raises:
        GatewayUnavailableError: The gateway does not answer.
    """
    return max(1, min(scripts, _whole(_quotas().get("runs_at_once")) or 1))


def gateway_ceiling() -> int | None:
    """The most scripts a gateway batch may send at once, or None when the gateway does not say.

    Beyond the user's ``runs_at_once`` a run waits in the gateway's queue (it
    is not refused) up to ``queued`` waiting; one more would be refused.

    Raises:
        GatewayUnavailableError: The gateway does not answer.
    """
    quotas = _quotas()
    running, queued = _whole(quotas.get("runs_at_once")), quotas.get("queued")
    if running is None or not isinstance(queued, int) or queued < 0:
        return None
    return running + queued


class GatewayScripts:
    """Runs a batch's scripts as one-shot runs through the configured gateway.

    Args:
        policy: What each run asks for (the gateway holds it to the ceiling).
        packages: Packages per language, sent with each run of that language.
    """

    def __init__(self, policy: SandboxPolicy, packages: Mapping[str, tuple[str, ...]]) -> None:
        self.policy = policy
        self.packages = dict(packages)
        # Threads ask for runners at once: the memo makes each once.
        self._runners: Memo[tuple[str, str], AbstractDockerCodeRunner] = Memo()

    def runner_for(self, task: Task) -> ScriptRunner:
        """The runner for a script.

        Args:
            task: The script.

        Returns:
            A runner whose runs go to the gateway.

        Raises:
            DockermagicError: The script cannot run (its ``problem``).
        """
        if task.problem:
            raise DockermagicError(task.problem)
        return self._runners.get(
            (task.language, task.image),
            lambda: get_runner(
                task.language,
                image=task.image or None,
                policy=self.policy,
                requirements=self.packages.get(task.language, ()),
            ),
        )

    def close(self) -> None:
        """Nothing to release: the gateway ends its own containers; never raises."""
        self._runners.clear()
