"""Container names, ownership labels, and removal of leftovers.

Every container dockermagic creates is named ``dockermagic-<random>`` and
labelled with its owner (host, pid and the pid's start time, so a reused pid is
not mistaken for the owner). :func:`cleanup` removes the containers whose owner
process is gone; front ends call it at start-up.
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
import socket
from dataclasses import dataclass

import docker
import docker.errors

from dockermagic.engine import default_client, engine_errors

__all__ = [
    "LABEL",
    "ContainerSummary",
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


@dataclass(frozen=True)
class ContainerSummary:
    """What the engine's container list says about one dockermagic container.

    Attributes:
        id: The container id.
        name: The container name (``dockermagic-...``).
        labels: Its labels (owner, language, session...).
        status: ``"running"``, ``"exited"``, ``"created"``... (as docker-py names it)
    """

    id: str
    name: str
    labels: dict[str, str]
    status: str


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


@functools.lru_cache(maxsize=8)
def _owner(pid: int) -> tuple[str, str]:
    """This process's host name and start time, read once per pid (a fork gets its own)."""
    return socket.gethostname(), _process_start(pid)


def container_labels(language: str, **extra: str) -> dict[str, str]:
    """Labels for a new container owned by this process.

    Args:
        language: The runner's language.
        **extra: Further labels (e.g. a session name).

    Returns:
        The labels.
    """
    pid = os.getpid()
    host, started = _owner(pid)
    labels = {
        LABEL: "1",
        LABEL_PID: str(pid),
        LABEL_HOST: host,
        LABEL_STARTED: started,
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
) -> list[ContainerSummary]:
    """All dockermagic containers, running or not.

    Uses the engine's list endpoint only: docker-py's ``containers.list()``
    inspects every container, and an inspect waits while a container is being
    killed, so one stuck container would stall every listing.

    Args:
        client: The client; the default client when None.
        tag: Only containers carrying this ``DOCKERMAGIC_TAG``.

    Returns:
        One summary (id, name, labels, state) per container.
    """
    filters = [LABEL] + ([f"{LABEL_TAG}={tag}"] if tag else [])
    with engine_errors():
        rows = (client or default_client()).api.containers(all=True, filters={"label": filters})
    return [
        ContainerSummary(
            id=row["Id"],
            name=(row.get("Names") or ["/" + row["Id"][:12]])[0].lstrip("/"),
            labels=row.get("Labels") or {},
            status=row.get("State", ""),
        )
        for row in rows
    ]


def cleanup(client: docker.DockerClient | None = None, *, everything: bool = False) -> list[str]:
    """Remove dockermagic containers whose owner process is gone.

    Args:
        client: The client; the default client when None.
        everything: Remove all dockermagic containers, including live owners'.

    Returns:
        The names of the removed containers.
    """
    client = client or default_client()
    removed = []
    for container in list_containers(client):
        if not everything and owner_alive(container.labels):
            continue
        try:
            with engine_errors():
                client.api.remove_container(container.id, force=True, v=True)
        except docker.errors.NotFound:
            continue
        except docker.errors.APIError as exc:
            # "removal already in progress" and the like: another cleanup won.
            logger.warning("could not remove %s: %s", container.name, exc.explanation)
            continue
        logger.info("removed leftover container %s", container.name)
        removed.append(container.name)
    return removed
