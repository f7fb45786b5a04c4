"""The Swarm backend of a batch: each script a one-off task on any node.

The client talks to a Swarm manager (``DOCKER_HOST``); the manager places
each script's task on a node (:mod:`dockermagic.swarm` owns the services).
Reports, statuses, events, logs and JSON are those of a local batch; what
differs is said in :mod:`dockermagic.swarm` and the README ("Docker Swarm").

* :func:`check_manager` refuses to start when the engine is no manager.
* :func:`swarm_limit` is the default number of tasks at once: the CPUs of
  the cluster's ready nodes (each task may use one CPU by default).
* :func:`prepare_swarm_images` names each language's image; it must already
  be on every node (nothing is pulled or built: the manager's store is one
  node's only). A language with packages cannot run there (a derived image
  is built on one engine): its scripts are ``error`` with the reason.
* :class:`SwarmBackend` makes the runners and, at the batch's end, removes
  what is left of the batch's services and configs and waits (briefly) until
  the nodes have removed their containers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping

import docker

from dockermagic.batch.backend import ScriptRunner
from dockermagic.batch.script import Task
from dockermagic.engine import MAX_POOL_SIZE, connect, default_client, engine_address
from dockermagic.errors import DockermagicError, InvalidArgumentError
from dockermagic.images import image_present, runner_image
from dockermagic.labels import BATCH
from dockermagic.memo import Memo
from dockermagic.policy import SandboxPolicy
from dockermagic.runners import get_runner, runner_class_for
from dockermagic.settings import current_settings
from dockermagic.swarm import (
    SwarmRunner,
    cluster_nodes,
    is_manager,
    list_configs,
    list_services,
    remove_configs,
    remove_services,
    task_count,
)

__all__ = [
    "SWEEP_WAIT",
    "SwarmBackend",
    "check_manager",
    "prepare_swarm_images",
    "swarm_available",
    "swarm_limit",
]

logger = logging.getLogger(__name__)

#: Seconds a batch's end waits for the nodes to remove its tasks' containers.
SWEEP_WAIT = 15.0
_POLL = 0.1


def check_manager(client: docker.DockerClient) -> None:
    """Refuse a Swarm batch when the client's engine is not a Swarm manager.

    Args:
        client: The client.

    Raises:
        InvalidArgumentError: It is not (with what to do).
        EngineUnavailableError: No engine answers.
    """
    if not is_manager(client):
        raise InvalidArgumentError(
            "backend",
            "swarm",
            f"the engine at {engine_address(client)} is not a Swarm manager: point "
            "DOCKER_HOST at a manager of the cluster",
        )


def swarm_available(client: docker.DockerClient | None = None) -> bool:
    """Whether a Swarm batch can run: the engine the client talks to is a Swarm manager.

    Args:
        client: The client; this process's shared client when None.

    Returns:
        False also when no engine answers (a front end then offers local runs
        only), and when a gateway is set (its batches run there).
    """
    if current_settings().gateway:
        return False
    try:
        return is_manager(client or default_client())
    except DockermagicError:
        return False


def swarm_limit(client: docker.DockerClient, scripts: int) -> int:
    """How many tasks a Swarm batch runs at once by default.

    Args:
        client: A client of the manager.
        scripts: How many scripts the batch has.

    Returns:
        The CPUs of the ready nodes (a task may use one CPU by default),
        at least 1, at most ``scripts``.
    """
    cpus = sum(node.cpus for node in cluster_nodes(client) if node.ready)
    return max(1, min(scripts, int(cpus) or 1))


def prepare_swarm_images(
    client: docker.DockerClient,
    languages: Iterable[str],
    images: Mapping[str, str],
    packages: Mapping[str, tuple[str, ...]],
) -> dict[str, tuple[str, str]]:
    """Name each language's image for a Swarm batch; nothing is pulled or built.

    The name is chosen as for a local batch (the caller's, the variable's,
    the official image, or the offline one where the manager has it). It
    must be on the manager too (a node like the others); a node that lacks
    it rejects its task, and that script is an ``error`` naming the node.

    Args:
        client: A client of the manager.
        languages: The languages of the batch's scripts.
        images: Images the caller chose, per language.
        packages: Packages per language.

    Returns:
        language -> (image, error message or '').
    """
    prepared: dict[str, tuple[str, str]] = {}
    for language in sorted(set(languages)):
        cls = runner_class_for(language)
        try:
            image = runner_image(client, cls, images.get(language))
        except DockermagicError as exc:
            prepared[language] = ("", str(exc))
            continue
        if packages.get(language):
            prepared[language] = (
                image,
                f"packages ({' '.join(packages[language])}) cannot be installed for a Swarm "
                "batch: build the image (`dockermagic images --requirements ...`), load it "
                f"on every node and pass it as the {language} image",
            )
            continue
        try:
            present = image_present(client, image)
        except DockermagicError as exc:
            prepared[language] = (image, str(exc))
            continue
        if not present:
            prepared[language] = (
                image,
                f"image {image!r} is not on the Swarm manager: load it on every node "
                "(a registry, or `docker save | docker load` per node)",
            )
            continue
        prepared[language] = (image, "")
    return prepared


class SwarmBackend:
    """Runs a batch's scripts as one-off tasks of the Swarm the client's manager leads.

    Args:
        policy: The sandbox policy of every task.
        run_id: The batch's id, a label on every service and config.
        limit: Tasks at once (sizes the backend's own connection pool).
        environment: The variables naming the manager (``DOCKER_HOST``...);
            the process's when None.
    """

    def __init__(
        self,
        policy: SandboxPolicy,
        run_id: str,
        *,
        limit: int,
        environment: Mapping[str, str] | None = None,
    ) -> None:
        self.policy = policy
        self.run_id = run_id
        # A running task holds a followed log and polls its state: a client
        # of its own, with room for every thread.
        self.client = connect(environment, max_pool_size=max(MAX_POOL_SIZE, 3 * limit + 8))
        self._runners: Memo[tuple[str, str], SwarmRunner] = Memo()

    def runner_for(self, task: Task) -> ScriptRunner:
        """The runner for a script.

        Args:
            task: The script.

        Returns:
            The Swarm runner of its language and image.

        Raises:
            DockermagicError: The script cannot run (its ``problem``).
        """
        if task.problem:
            raise DockermagicError(task.problem)
        return self._runners.get(
            (task.language, task.image),
            lambda: SwarmRunner(
                get_runner(task.language, image=task.image, policy=self.policy, client=self.client),
                self.client,
                labels={BATCH: self.run_id},
            ),
        )

    def close(self, *, wait: float = SWEEP_WAIT) -> None:
        """Remove what is left of the batch's services and configs; never raises.

        Each script's task removes its own service; this catches what an
        interrupted removal left, then waits until the manager lists no task
        of them (their containers are gone from every node), at most ``wait``
        seconds.

        Args:
            wait: Seconds to wait for the nodes.
        """
        label = [f"{BATCH}={self.run_id}"]
        try:
            left = list_services(self.client, label)
            if left:
                logger.info("batch %s: removing %d service(s) left", self.run_id, len(left))
                remove_services(self.client, [service.id for service in left])
            deadline = time.monotonic() + wait
            services = self._service_ids()
            while task_count(self.client, services) and time.monotonic() < deadline:
                time.sleep(_POLL)
            remove_configs(self.client, [config.id for config in list_configs(self.client, label)])
        except DockermagicError as exc:  # no engine: cleanup removes them later
            logger.warning(
                "could not check batch %s for leftovers on the swarm: %s", self.run_id, exc
            )
        finally:
            self.client.close()

    def _service_ids(self) -> list[str]:
        return [service for runner in self._runners.values() for service in runner.service_ids]
