"""A gateway in front of a Docker Swarm: one-shot runs as one-off tasks on any node.

With ``"swarm"`` in the teacher's configuration
(:class:`~dockermagic.gateway.config.SwarmSettings`), the gateway's
``DOCKER_HOST`` must name a Swarm manager (:meth:`SwarmRuns.open` refuses to
start otherwise), and each one-shot run (``POST /v1/runs``, so each script of
a client's batch) becomes a one-off task that the manager places on a node,
through :class:`~dockermagic.swarm.SwarmRunner`: the same lifecycle as a
Swarm batch's scripts (:mod:`dockermagic.swarm` owns every service call).
Sessions stay containers on the manager's own engine: a warm interpreter
needs an attach, which a task has not.

The run contract holds: the same result and statuses (``ok``, ``failed``,
``timed_out``, ``oom`` from the task's wrapper), limits from the teacher's
ceiling, the user's quotas and the fair queue (the server's, before a task
is made), one audit record per run (with the node that ran it), cancel
(removes the service, which kills the task). Output streams as the node
logs it (read live from the service's log; a little later than a local
run's).

What a task cannot have is refused before anything runs, naming the reason
(:meth:`SwarmRuns.check_job`): standard input, notebook inputs, files for the
working directory or back out (no agent in a task), packages (a derived image
is built on one engine: the teacher builds it, loads it on every node and
lists it in ``ceiling.images``), a network (nodes run with
``--bridge=none``). A task makes no displays: a cell's last expression is not
shown. A session does all of these.

Services carry the gateway process's owner labels (as its containers do) and
the user's name (:data:`~dockermagic.labels.GATEWAY_USER`): a gateway's stop
removes whatever is left of its own (:meth:`SwarmRuns.close`), and a gateway
that was killed has them removed by :func:`~dockermagic.cleanup.cleanup` at
its next start.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import docker

from dockermagic.batch.swarm import check_manager
from dockermagic.engine import MAX_POOL_SIZE, connect, engine_address
from dockermagic.errors import DockermagicError, InvalidArgumentError
from dockermagic.gateway.config import SwarmSettings
from dockermagic.gateway.wire import JobRequest
from dockermagic.labels import GATEWAY_USER, LABEL, this_owner
from dockermagic.memo import Memo
from dockermagic.policy import SandboxPolicy
from dockermagic.result import RunResult
from dockermagic.runners import AbstractDockerCodeRunner, get_runner
from dockermagic.swarm import (
    SwarmRunner,
    cluster_nodes,
    list_configs,
    list_services,
    remove_configs,
    remove_services,
    task_count,
)

__all__ = ["SWEEP_WAIT", "SwarmRuns"]

logger = logging.getLogger(__name__)

#: Seconds a gateway's stop waits for the nodes to remove its tasks' containers.
SWEEP_WAIT = 15.0
#: Language runners kept (each names its image); the least recently used goes first.
MAX_RUNNERS = 32
_POLL = 0.1


class SwarmRuns:
    """The gateway's one-shot runs as Swarm tasks. Use :meth:`open`.

    Args:
        settings: The configuration's ``"swarm"`` object.
        client: A client of the manager (owned: :meth:`close` closes it).
    """

    def __init__(self, settings: SwarmSettings, client: docker.DockerClient) -> None:
        self.settings = settings
        self.client = client
        # Runs ask for runners from worker threads: the memo makes each once.
        self._runners: Memo[tuple[Any, ...], AbstractDockerCodeRunner] = Memo(MAX_RUNNERS)
        self._hostnames: dict[str, str] = {}

    @classmethod
    def open(cls, settings: SwarmSettings, capacity: int) -> SwarmRuns:
        """Connect to the engine ``DOCKER_HOST`` names and check that it is a Swarm manager.

        Args:
            settings: The configuration's ``"swarm"`` object.
            capacity: The gateway's programs at once (sizes the connection pool:
                a running task holds a followed log and polls its state).

        Returns:
            The runs' backend.

        Raises:
            InvalidArgumentError: The engine is no Swarm manager (what to do is said).
            EngineUnavailableError: No engine answers.
        """
        client = connect(max_pool_size=max(MAX_POOL_SIZE, 3 * capacity + 8))
        try:
            check_manager(client)
        except InvalidArgumentError as exc:
            client.close()
            raise InvalidArgumentError(
                "swarm",
                True,
                f"the gateway's engine at {engine_address(client)} is not a Swarm manager: "
                "point the gateway's DOCKER_HOST at a manager of the cluster, or take "
                '"swarm" out of its configuration',
            ) from exc
        except BaseException:
            client.close()
            raise
        return cls(settings, client)

    # -- a run ------------------------------------------------------------------------------

    def check_job(self, job: JobRequest, policy: SandboxPolicy, packages: tuple[str, ...]) -> None:
        """Refuse what a task cannot have, before anything runs.

        Args:
            job: The run.
            policy: Its policy (within the ceiling).
            packages: The packages it asked for (the teacher's set), or none.

        Raises:
            InvalidArgumentError: It needs stdin, inputs, files in or out of
                the working directory, packages or a network.
        """
        session = "a session of this gateway has it"
        refused = [
            ("stdin", job.stdin is not None, "a Swarm task has no standard input"),
            ("inputs", bool(job.inputs), "a Swarm task takes no notebook inputs"),
            ("put", bool(job.work), "a Swarm task takes no files for its working directory"),
            ("get", bool(job.get), "a Swarm task brings no files back"),
            ("network", policy.network, "a Swarm task has no network (nodes run --bridge=none)"),
        ]
        for what, asked, reason in refused:
            if asked:
                raise InvalidArgumentError(
                    what, "…", f"{reason}: this gateway runs one-shot runs on a Swarm ({session})"
                )
        if packages:
            raise InvalidArgumentError(
                "packages",
                " ".join(packages),
                "cannot be installed for a run on this gateway's Swarm: the teacher builds "
                "the image (`dockermagic images --requirements ...`), loads it on every node "
                "and lists it in ceiling.images (a session of this gateway can install them)",
            )

    def runner(
        self, language: str, image: str | None, policy: SandboxPolicy
    ) -> AbstractDockerCodeRunner:
        """The local runner whose command, environment and image a task takes (never run).

        Args:
            language: The canonical language.
            image: The image the ceiling allowed, or None for the default.
            policy: The run's policy.

        Returns:
            The runner, kept for the next run like it.
        """
        return self._runners.get(
            (language, image, policy),
            lambda: get_runner(
                language, image=image, policy=policy, pool=0, gateway=False, client=self.client
            ),
        )

    def run(
        self,
        runner: AbstractDockerCodeRunner,
        job: JobRequest,
        on_output: Callable[[str, str], None],
        cancel: threading.Event,
        user: str,
    ) -> RunResult:
        """Run a checked job as a one-off task and wait for it (in a worker thread).

        Args:
            runner: From :meth:`runner`.
            job: The run (:meth:`check_job` passed it).
            on_output: Receives ``(stream, text)`` as the node logs it.
            cancel: Setting it removes the service.
            user: The gateway user it runs for (a label of the service).

        Returns:
            The result, with the node that ran it.

        Raises:
            SwarmError: No node ran it (see :meth:`~dockermagic.swarm.SwarmRunner.run_file`).
            InvalidArgumentError: A file is too large for a Swarm config.
        """
        task = SwarmRunner(
            runner,
            self.client,
            labels={GATEWAY_USER: user},
            start_timeout=self.settings.start_timeout,
        )
        files = {**job.code, job.entry: job.source}
        return task.run_files(files, job.entry, on_output=on_output, cancel=cancel)

    # -- the cluster --------------------------------------------------------------------------

    def node_name(self, node_id: str) -> str:
        """A node's host name ('' when the manager cannot say); asked once per node."""
        if node_id and node_id not in self._hostnames:
            try:
                self._hostnames.update({n.id: n.hostname for n in cluster_nodes(self.client)})
            except DockermagicError as exc:
                logger.debug("could not list the swarm's nodes: %s", exc)
        return self._hostnames.get(node_id, "")

    def nodes(self) -> list[dict[str, Any]]:
        """The cluster's nodes, for the status page.

        Raises:
            SwarmError: The manager cannot say.
        """
        found = cluster_nodes(self.client)
        self._hostnames.update({n.id: n.hostname for n in found})
        return [
            {"id": n.id, "hostname": n.hostname, "role": n.role, "cpus": n.cpus, "ready": n.ready}
            for n in found
        ]

    # -- the end ----------------------------------------------------------------------------

    def close(self, *, wait: float = SWEEP_WAIT) -> list[str]:
        """Remove what is left of this gateway's services and configs; never raises.

        Each run removes its own service; this catches what an interrupted
        removal left, then waits until the manager lists no task of them
        (their containers are gone from every node), at most ``wait`` seconds.

        Args:
            wait: Seconds to wait for the nodes.

        Returns:
            The names of the services removed here.
        """
        mine = [LABEL, GATEWAY_USER, *(f"{k}={v}" for k, v in this_owner().labels().items())]
        try:
            left = list_services(self.client, mine)
            removed = remove_services(self.client, [service.id for service in left])
            if left:
                logger.info("removed %d Swarm service(s) of runs left", len(removed))
            deadline = time.monotonic() + wait
            ids = [service.id for service in left]
            while task_count(self.client, ids) and time.monotonic() < deadline:
                time.sleep(_POLL)
            remove_configs(self.client, [config.id for config in list_configs(self.client, mine)])
            return [service.name for service in left if service.id in removed]
        except DockermagicError as exc:  # no engine: the next start's cleanup
            logger.warning("could not check the swarm for this gateway's services: %s", exc)
            return []
        finally:
            self.client.close()
