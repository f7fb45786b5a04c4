"""Finding dockermagic's containers and removing those nobody will remove.

Front ends call :func:`cleanup` at start-up: it removes the containers whose
owner process is gone, and stale ones of owners that cannot be checked from
here (the rule is in :mod:`dockermagic.labels`). A live owner's containers,
and a running session of an owner in another PID namespace, are never touched
unless ``everything=True``.

When the engine is a Swarm manager, :func:`cleanup_swarm` (which
:func:`cleanup` calls) does the same for the services and configs of Swarm
batches (:mod:`dockermagic.swarm`): those of owners that are gone, and those
past their deadline label (their task has killed itself by then); the
manager keeps a config that a service still uses.
"""

from __future__ import annotations

import logging
import time

import docker

from dockermagic.container import ContainerSummary, remove_containers
from dockermagic.container import list_containers as _list
from dockermagic.engine import default_client
from dockermagic.errors import DockermagicError
from dockermagic.labels import LABEL, TAG, is_stale, owner_alive
from dockermagic.settings import current_settings
from dockermagic.swarm import (
    ServiceSummary,
    is_manager,
    list_configs,
    list_services,
    remove_configs,
    remove_services,
)

__all__ = ["ContainerSummary", "cleanup", "cleanup_swarm", "list_containers"]

logger = logging.getLogger(__name__)


def list_containers(
    client: docker.DockerClient | None = None, *, tag: str | None = None
) -> list[ContainerSummary]:
    """All dockermagic containers, running or not.

    Args:
        client: The client; the default client when None.
        tag: Only containers carrying this ``DOCKERMAGIC_TAG``.

    Returns:
        One summary (id, name, labels, state, creation time) per container.
    """
    filters = [LABEL] + ([f"{TAG}={tag}"] if tag else [])
    return _list(client or default_client(), filters)


def cleanup(
    client: docker.DockerClient | None = None, *, everything: bool = False, swarm: bool = True
) -> list[str]:
    """Remove dockermagic containers whose owner is gone, or that are stale.

    Args:
        client: The client; the default client when None (and then nothing
            at all when runs go through a gateway, ``DOCKERMAGIC_GATEWAY``).
        everything: Remove all dockermagic containers, including live owners'.
        swarm: Also :func:`cleanup_swarm` (when the engine is a Swarm manager).

    Returns:
        The names of the removed containers (and Swarm services).
    """
    if client is None and current_settings().gateway:
        # Runs go through a gateway: no engine here, and the gateway cleans its own.
        return []
    client = client or default_client()
    now = time.time()
    doomed = {
        container.id: container.name
        for container in list_containers(client)
        if everything
        or not owner_alive(container.labels)
        or is_stale(
            container.labels,
            running=container.status == "running",
            created=container.created,
            now=now,
        )
    }
    removed = [doomed[i] for i in remove_containers(client, doomed)]
    for name in removed:
        logger.info("removed leftover container %s", name)
    if swarm:
        removed += cleanup_swarm(client, everything=everything)
    return removed


def cleanup_swarm(
    client: docker.DockerClient | None = None, *, everything: bool = False
) -> list[str]:
    """Remove the Swarm services and configs of dockermagic whose owner is gone, or stale.

    Nothing happens unless the engine is a Swarm manager. A service's task is
    killed with it; a config goes once no service uses it.

    Args:
        client: The client; the default client when None.
        everything: Remove all of dockermagic's services and configs.

    Returns:
        The names of the removed services.
    """
    client = client or default_client()
    try:
        if not is_manager(client):
            return []
        now = time.time()

        def doomed(item: ServiceSummary) -> bool:
            # A service "runs" until its deadline label says its task is over.
            return (
                everything
                or not owner_alive(item.labels)
                or is_stale(item.labels, running=True, created=item.created, now=now)
            )

        services = {s.id: s.name for s in list_services(client) if doomed(s)}
        removed = [services[i] for i in remove_services(client, services)]
        remove_configs(client, [c.id for c in list_configs(client) if doomed(c)])
    except DockermagicError as exc:  # a swarm that cannot say: next time
        logger.warning("could not check the swarm for leftovers: %s", exc)
        return []
    for name in removed:
        logger.info("removed leftover Swarm service %s", name)
    return removed
