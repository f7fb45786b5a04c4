"""The cluster as its manager sees it: nodes, and dockermagic's services and configs.

Whether an engine is a Swarm manager (:func:`is_manager`), its nodes
(:func:`cluster_nodes`), and the listing and removal of dockermagic's services
and configs. A batch removes all of its own at its end
(:func:`remove_services`; :func:`task_count` says when the nodes have removed
the tasks' containers; then :func:`remove_configs`), and
:func:`dockermagic.cleanup.cleanup` removes what dead owners left on a swarm,
by the owner labels (:mod:`dockermagic.labels`), the deadline label and the
batch's id that services and configs carry. Removals never raise: what is
left, cleanup finds later.
"""

from __future__ import annotations

import calendar
import functools
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import docker
import docker.errors

from dockermagic.container import engine_call
from dockermagic.errors import DockermagicError, SwarmError
from dockermagic.labels import LABEL

__all__ = [
    "ServiceSummary",
    "SwarmNode",
    "api_error",
    "cluster_nodes",
    "is_manager",
    "list_configs",
    "list_services",
    "remove_configs",
    "remove_services",
    "task_count",
]

logger = logging.getLogger(__name__)


# -- the manager and its nodes ---------------------------------------------------------


def api_error(what: str, exc: docker.errors.APIError, *, node: str = "") -> SwarmError:
    """The error for a call the manager refused, with its reason's first line.

    Args:
        what: What it refused to do (``"create a service"``).
        exc: Its answer.
        node: The node concerned, if any.

    Returns:
        The error to raise.
    """
    reason = str(exc.explanation or exc).strip().splitlines()[0] if str(exc) else "refused"
    return SwarmError(f"The Swarm manager refused to {what}: {reason}", node=node)


def is_manager(client: docker.DockerClient) -> bool:
    """Whether the client's engine is a Swarm manager (it can run services).

    Args:
        client: The client.

    Returns:
        True for an active manager.

    Raises:
        EngineUnavailableError: No engine answers.
    """
    info = engine_call("info", client.info)
    swarm = info.get("Swarm") or {}
    return bool(swarm.get("ControlAvailable")) and swarm.get("LocalNodeState") == "active"


@dataclass(frozen=True)
class SwarmNode:
    """One node of the cluster, as its manager sees it.

    Attributes:
        id: The node's id.
        hostname: Its host name.
        role: ``"manager"`` or ``"worker"``.
        cpus: Its CPUs.
        ready: It is up and takes tasks (ready and active).
    """

    id: str
    hostname: str
    role: str
    cpus: float
    ready: bool


def cluster_nodes(client: docker.DockerClient) -> list[SwarmNode]:
    """The cluster's nodes.

    Args:
        client: A client of a manager.

    Returns:
        One entry per node.

    Raises:
        SwarmError: The engine is not a manager.
    """
    try:
        rows = engine_call("list nodes", client.api.nodes)
    except docker.errors.APIError as exc:
        raise api_error("list its nodes", exc) from exc
    return [
        SwarmNode(
            id=row["ID"],
            hostname=str((row.get("Description") or {}).get("Hostname", "")),
            role=str((row.get("Spec") or {}).get("Role", "")),
            cpus=float(((row.get("Description") or {}).get("Resources") or {}).get("NanoCPUs", 0))
            / 1e9,
            ready=(row.get("Status") or {}).get("State") == "ready"
            and (row.get("Spec") or {}).get("Availability") == "active",
        )
        for row in rows
    ]


# -- dockermagic's services and configs (batches' ends, cleanup) -------------------------


@dataclass(frozen=True)
class ServiceSummary:
    """A dockermagic service or config, as the manager lists it.

    Attributes:
        id: Its id.
        name: Its name (``dockermagic-...``).
        labels: Its labels (owner, batch, deadline).
        created: When it was made (Unix seconds; 0 when unknown).
    """

    id: str
    name: str
    labels: dict[str, str]
    created: float = 0.0


def _created(text: object) -> float:
    # "2026-11-26T09:54:30.178077414Z": seconds are enough for staleness.
    try:
        return float(calendar.timegm(time.strptime(str(text)[:19], "%Y-%m-%dT%H:%M:%S")))
    except ValueError:
        return 0.0


def _summaries(rows: Iterable[Mapping[str, Any]]) -> list[ServiceSummary]:
    return [
        ServiceSummary(
            id=str(row["ID"]),
            name=str((row.get("Spec") or {}).get("Name", "")),
            labels=dict((row.get("Spec") or {}).get("Labels") or {}),
            created=_created(row.get("CreatedAt")),
        )
        for row in rows
    ]


def list_services(
    client: docker.DockerClient, label_filters: Sequence[str] = (LABEL,)
) -> list[ServiceSummary]:
    """The dockermagic services with these labels.

    Args:
        client: A client of a manager.
        label_filters: ``"key"`` or ``"key=value"``, all required.

    Returns:
        One summary per service.
    """
    return _list(client, "services", label_filters)


def list_configs(
    client: docker.DockerClient, label_filters: Sequence[str] = (LABEL,)
) -> list[ServiceSummary]:
    """The dockermagic configs with these labels.

    Args:
        client: A client of a manager.
        label_filters: ``"key"`` or ``"key=value"``, all required.

    Returns:
        One summary per config.
    """
    return _list(client, "configs", label_filters)


def _list(
    client: docker.DockerClient, kind: Literal["services", "configs"], label_filters: Sequence[str]
) -> list[ServiceSummary]:
    filters = {"label": list(label_filters)}
    what = f"list {kind}"
    # Both listings answer rows of the same shape (ID, Spec.Name, Spec.Labels, CreatedAt).
    listing = client.api.services if kind == "services" else client.api.configs
    try:
        rows = engine_call(what, lambda: listing(filters=filters))  # type: ignore[no-untyped-call]
    except docker.errors.APIError as exc:
        raise api_error(what, exc) from exc
    return _summaries(rows)


def remove_services(client: docker.DockerClient, ids: Iterable[str]) -> list[str]:
    """Remove services now (their tasks are killed); never raises.

    Args:
        client: A client of a manager.
        ids: Service ids.

    Returns:
        The ids this call removed.
    """
    removed = []

    def remove(service_id: str) -> None:
        client.api.remove_service(service_id)  # type: ignore[no-untyped-call]

    for service_id in ids:
        try:
            engine_call("remove service", functools.partial(remove, service_id))
            removed.append(service_id)
        except docker.errors.NotFound:
            pass
        except DockermagicError as exc:  # cleanup finds it later
            logger.warning("could not remove service %s: %s", service_id[:12], exc)
        except docker.errors.APIError as exc:
            logger.warning("could not remove service %s: %s", service_id[:12], exc.explanation)
    return removed


def remove_configs(client: docker.DockerClient, ids: Iterable[str]) -> list[str]:
    """Remove configs no service uses any more; never raises.

    Args:
        client: A client of a manager.
        ids: Config ids.

    Returns:
        The ids this call removed (the manager keeps a config a service uses).
    """
    removed = []

    def remove(config_id: str) -> None:
        client.api.remove_config(config_id)  # type: ignore[no-untyped-call]

    for config_id in ids:
        try:
            engine_call("remove config", functools.partial(remove, config_id))
            removed.append(config_id)
        except docker.errors.NotFound:
            pass
        except DockermagicError as exc:
            logger.warning("could not remove config %s: %s", config_id[:12], exc)
        except docker.errors.APIError as exc:
            logger.debug("config %s kept: %s", config_id[:12], exc.explanation)
    return removed


def task_count(client: docker.DockerClient, service_ids: Iterable[str]) -> int:
    """How many tasks of these services the manager still knows (removed or not).

    A removed service's task stays listed until its node has removed its
    container, so 0 means no container of them is left on any node.

    Args:
        client: A client of a manager.
        service_ids: The services.

    Returns:
        The number of their tasks.
    """
    wanted = set(service_ids)
    if not wanted:
        return 0
    try:
        tasks = engine_call("list tasks", client.api.tasks)
    except docker.errors.APIError as exc:
        raise api_error("list tasks", exc) from exc
    return sum(1 for task in tasks if task.get("ServiceID") in wanted)
