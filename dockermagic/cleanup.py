"""Container names, ownership labels, and removal of leftovers.

Every container dockermagic creates is named ``dockermagic-<random>`` and
labelled with its owner (host, pid and the pid's start time, so a reused pid is
not mistaken for the owner). :func:`cleanup` removes the containers whose owner
process is gone; front ends call it at start-up.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from typing import Any

import docker
import docker.errors

from dockermagic.engine import default_client, engine_errors

__all__ = [
    "LABEL",
    "cleanup",
    "container_labels",
    "list_containers",
    "new_container_name",
    "owner_alive",
]

logger = logging.getLogger(__name__)

#: The label every dockermagic container carries; its value is the package name.
LABEL = "dockermagic"
LABEL_PID = "dockermagic.pid"
LABEL_HOST = "dockermagic.host"
LABEL_STARTED = "dockermagic.started"
#: Free-form tag from ``DOCKERMAGIC_TAG`` (tests use it to tell runs apart).
LABEL_TAG = "dockermagic.tag"
LABEL_LANGUAGE = "dockermagic.language"


def new_container_name() -> str:
    """A fresh ``dockermagic-<random>`` name.

    Returns:
        The name.
    """
    return f"dockermagic-{secrets.token_hex(6)}"


def _process_start(pid: int) -> str:
    """The start time of a process in clock ticks since boot ("" off Linux)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            # Field 22 counts from after the parenthesised command name, which
            # may itself contain spaces.
            return stat.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def container_labels(language: str, **extra: str) -> dict[str, str]:
    """Labels for a new container owned by this process.

    Args:
        language: The runner's language.
        **extra: Further labels (e.g. a session name).

    Returns:
        The labels.
    """
    pid = os.getpid()
    labels = {
        LABEL: "1",
        LABEL_PID: str(pid),
        LABEL_HOST: socket.gethostname(),
        LABEL_STARTED: _process_start(pid),
        LABEL_LANGUAGE: language,
    }
    tag = os.environ.get("DOCKERMAGIC_TAG")
    if tag:
        labels[LABEL_TAG] = tag
    labels.update(extra)
    return labels


def owner_alive(labels: dict[str, str]) -> bool:
    """Whether the process that created a container still runs.

    Containers of another host are counted as alive: their owner cannot be
    checked from here.

    Args:
        labels: The container's labels.

    Returns:
        True when the owner is (or may be) alive.
    """
    if labels.get(LABEL_HOST) != socket.gethostname():
        return True
    try:
        pid = int(labels.get(LABEL_PID, ""))
    except ValueError:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    started = labels.get(LABEL_STARTED, "")
    return not started or _process_start(pid) in ("", started)


def list_containers(
    client: docker.DockerClient | None = None, *, tag: str | None = None
) -> list[Any]:
    """All dockermagic containers, running or not.

    Args:
        client: The client; the default client when None.
        tag: Only containers carrying this ``DOCKERMAGIC_TAG``.

    Returns:
        docker-py ``Container`` objects.
    """
    filters = [LABEL] + ([f"{LABEL_TAG}={tag}"] if tag else [])
    with engine_errors():
        return list(
            (client or default_client()).containers.list(all=True, filters={"label": filters})
        )


def cleanup(client: docker.DockerClient | None = None, *, everything: bool = False) -> list[str]:
    """Remove dockermagic containers whose owner process is gone.

    Args:
        client: The client; the default client when None.
        everything: Remove all dockermagic containers, including live owners'.

    Returns:
        The names of the removed containers.
    """
    removed = []
    for container in list_containers(client):
        if not everything and owner_alive(container.labels):
            continue
        try:
            container.remove(force=True, v=True)
        except docker.errors.NotFound:
            continue
        except docker.errors.APIError as exc:
            # "removal already in progress" and the like: another cleanup won.
            logger.warning("could not remove %s: %s", container.name, exc.explanation)
            continue
        logger.info("removed leftover container %s", container.name)
        removed.append(container.name)
    return removed
