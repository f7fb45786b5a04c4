"""Docker Swarm: one script as a one-off task on any node of a cluster."""

from __future__ import annotations

from dockermagic.swarm.cluster import (
    ServiceSummary,
    cluster_nodes,
    is_manager,
    list_configs,
    list_services,
    remove_configs,
    remove_services,
    task_count,
)
from dockermagic.swarm.lifecycle import SwarmTask, TaskProgram
from dockermagic.swarm.runner import SwarmRunner
from dockermagic.swarm.task import (
    CONFIG_LIMIT,
    MARKER,
    NODE_SETUP,
    NOT_ISOLATED_EXIT,
    WORKDIR,
    WRAPPER,
    LogLine,
    TaskSpec,
    TaskState,
    service_spec,
)

__all__ = [
    "CONFIG_LIMIT",
    "MARKER",
    "NODE_SETUP",
    "NOT_ISOLATED_EXIT",
    "WORKDIR",
    "WRAPPER",
    "LogLine",
    "ServiceSummary",
    "SwarmRunner",
    "SwarmTask",
    "TaskProgram",
    "TaskSpec",
    "TaskState",
    "cluster_nodes",
    "is_manager",
    "list_configs",
    "list_services",
    "remove_configs",
    "remove_services",
    "service_spec",
    "task_count",
]
