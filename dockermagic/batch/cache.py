"""One runner per language and image for the scripts a process runs.

Both modes share it: the sequential path holds one in the calling process,
each pool worker holds its own (made in the worker, so its Docker client is
the worker's own, never inherited through a fork: pitfall 8). Every runner
labels its containers with the batch's id (:data:`dockermagic.labels.BATCH`).

With ``pool=N`` every runner keeps N idle containers started
(:mod:`dockermagic.pool`); each still runs one program only. The batch's id
is one of the runner's labels, and labels are part of what identifies a
pool, so a batch's pools are its own: :meth:`RunnerCache.close` removes
their idle containers at the end of the batch without touching the pools of
anyone else in the process (a notebook's magics keep theirs).
"""

from __future__ import annotations

import logging

import docker

from dockermagic.batch.script import Task
from dockermagic.engine import default_client
from dockermagic.errors import DockermagicError
from dockermagic.labels import BATCH
from dockermagic.memo import Memo
from dockermagic.policy import SandboxPolicy
from dockermagic.runners import AbstractDockerCodeRunner, get_runner

__all__ = ["RunnerCache"]

logger = logging.getLogger(__name__)

#: Seconds a batch's end waits for a pooled container still starting, so that
#: nothing of the batch outlives it.
POOL_CLOSE_WAIT = 5.0


class RunnerCache:
    """Runners of one batch, made on first use and kept for the next script.

    Args:
        policy: The sandbox policy of every runner.
        run_id: The batch's id, put on every container as a label.
        client: The Docker client; this process's shared client (made on
            first use) when None.
        pool: Idle containers each runner keeps (0: none); the runners'
            default (``DOCKERMAGIC_POOL_SIZE``, else none) when None.
    """

    def __init__(
        self,
        policy: SandboxPolicy,
        run_id: str,
        client: docker.DockerClient | None = None,
        *,
        pool: int | None = None,
    ) -> None:
        self.policy = policy
        self.run_id = run_id
        self.pool = pool
        self._client = client
        self._runners: Memo[tuple[str, str], AbstractDockerCodeRunner] = Memo()

    def runner_for(self, task: Task) -> AbstractDockerCodeRunner:
        """The runner for a script.

        Args:
            task: The script.

        Returns:
            The runner of its language and image.

        Raises:
            DockermagicError: The script cannot run (its ``problem``), or no
                engine answers.
        """
        if task.problem:
            raise DockermagicError(task.problem)
        return self._runners.get((task.language, task.image), lambda: self._make(task))

    def _make(self, task: Task) -> AbstractDockerCodeRunner:
        if self._client is None:
            self._client = default_client()
        # The image is final: packages were built into it before the batch
        # started, so the runner gets no requirements of its own.
        return get_runner(
            task.language,
            image=task.image,
            policy=self.policy,
            client=self._client,
            labels={BATCH: self.run_id},
            pool=self.pool,
        )

    def close(self) -> None:
        """Remove the idle containers of this batch's pools (safe to call twice).

        Never raises: it runs while a batch ends, also after an interrupt.
        """
        for runner in self._runners.values():
            try:
                pool = runner.pool
                if pool is not None:
                    pool.close(wait=POOL_CLOSE_WAIT)
            except Exception as exc:  # the engine may be gone; leftovers are swept
                logger.debug("could not close a pool of batch %s: %s", self.run_id, exc)
