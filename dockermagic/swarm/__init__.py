"""Docker Swarm: one script as a one-off task on any node of a cluster.

The package that owns Swarm services and configs: every service, task,
config and node call (``client.api``) of dockermagic is in it, as every
container call is in :mod:`dockermagic.container`. The batch's Swarm backend
(:mod:`dockermagic.batch.swarm`), the gateway's (:mod:`dockermagic.gateway.swarm`)
and :func:`dockermagic.cleanup.cleanup` are its clients.

A script's life as a task::

    SwarmTask.create(client, spec)   a config per file (/code/<file>), then a service:
                                     mode replicated, 1 replica, restart-condition none
      .wait_started()                pending ... running (or already over)
      TaskProgram(task)              what the supervisor watches: the live log
                                     (stdout and stderr), the task's state
      .remove()                      the service (this kills a running task), its configs

:class:`SwarmRunner` does all of it for one file and returns the same
:class:`~dockermagic.result.RunResult` a local run does.

The modules, each with its details:

* :mod:`~dockermagic.swarm.task`: what a task is made of (:class:`TaskSpec`,
  its service, the isolation-checking wrapper, its states, its log lines) and
  what engine 20.10 forces on it; it calls no engine.
* :mod:`~dockermagic.swarm.lifecycle`: one task's life (:class:`SwarmTask`)
  and the task as the supervisor sees it (:class:`TaskProgram`).
* :mod:`~dockermagic.swarm.runner`: :class:`SwarmRunner`.
* :mod:`~dockermagic.swarm.cluster`: the manager check, the nodes, and listing
  and removing dockermagic's services and configs (a batch's end, cleanup).
"""

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
