"""Finding dockermagic's containers and removing those nobody will remove.

Front ends call :func:`cleanup` at start-up: it removes the containers whose
owner process is gone, and stale ones of owners that cannot be checked from
here (the rule is in :mod:`dockermagic.labels`). A live owner's containers,
and a running session of an owner in another PID namespace, are never touched
unless ``everything=True``.
"""

from __future__ import annotations

import logging
import time

import docker

from dockermagic.container import ContainerSummary, remove_containers
from dockermagic.container import list_containers as _list
from dockermagic.engine import default_client
from dockermagic.labels import LABEL, TAG, is_stale, owner_alive

__all__ = ["ContainerSummary", "cleanup", "list_containers"]

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


def cleanup(client: docker.DockerClient | None = None, *, everything: bool = False) -> list[str]:
    """Remove dockermagic containers whose owner is gone, or that are stale.

    Args:
        client: The client; the default client when None.
        everything: Remove all dockermagic containers, including live owners'.

    Returns:
        The names of the removed containers.
    """
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
    return removed
