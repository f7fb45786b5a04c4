"""What a task is made of: its spec and service, its wrapper, its states, its log lines.

:class:`TaskSpec` is what runs (image, command, files, limits);
:func:`service_spec` the one-replica service that runs it once, as locked
down as a service can be; :data:`WRAPPER` the shell script around the
program that checks the node's isolation and reports OOM kills and usage in
marker lines (:data:`MARKER`); :class:`TaskState` where the task stands;
:class:`LogLine` one message of its log. Nothing here calls an engine.

What engine 20.10 forces, and the answers (pitfall 27):

* **No** ``network none`` **for services**: nodes run their engines with
  ``--bridge=none`` (a task then has ``lo`` only), and the task's wrapper
  (:data:`WRAPPER`) checks ``/sys/class/net`` before the program runs.
* ``no-new-privileges`` **is dropped from service specs**: nodes run with
  ``--no-new-privileges``; the wrapper checks ``NoNewPrivs: 1``. A node that
  fails either check runs nothing: the wrapper exits
  :data:`NOT_ISOLATED_EXIT` and the script is an ``error`` naming the node
  and its set-up (:class:`~dockermagic.errors.SwarmError`).
* **tmpfs mounts are** ``noexec`` **without uid/gid**: the working directory
  is ``/tmp`` (mode 1777, so the sandbox user can write), ``HOME`` too.
* **No stdin, attach or** ``put_archive``: the code arrives as Swarm configs,
  one per file, :data:`CONFIG_LIMIT` bytes each (the documented limit;
  20.10 takes up to 1000 KB, older managers do not); no stdin at all.
* **Output comes from the service's log** (``json-file`` on the node,
  bounded by ``max-size``), read live while the task runs and completed from
  the whole log when it ends. stdout and stderr travel in one multiplexed
  stream in the order the node logged them, which is the order the two pipes
  were read: between the two streams that order is approximate (as for a
  local container; a ``tty`` would merge them). The output cap removes the
  service, which kills the task.
* **OOM shows only as exit 137**: the wrapper runs the program as its child,
  reads the task's cgroup OOM counter when it ends and says so on stderr in
  a marker line (:data:`MARKER`), which the host takes out of the output.
* ``replicated-job`` **services leave tasks behind on removal before Moby 24**
  (moby #42789, #44312): a ``replicated`` service of one replica with
  ``restart-condition none``; its task is watched until it is over.
* **No task outlives its deadline**, even if its owner dies: the command runs
  under ``timeout -s KILL`` as the container's PID 1 (as local runs do), and
  the json-file log is capped.
* **Images**: each task asks a registry first unless the node's engine has
  ``DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1`` (or the image is pinned by
  digest), and the image must exist on every node: a task on a node without
  it is rejected and the script is an ``error`` naming the node.

"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from dockermagic.labels import new_container_name
from dockermagic.policy import CODE_DIR, SandboxPolicy, under_deadline

__all__ = [
    "CONFIG_LIMIT",
    "FINAL_STATES",
    "MARKER",
    "NODE_SETUP",
    "NOT_ISOLATED_EXIT",
    "WORKDIR",
    "WRAPPER",
    "LogLine",
    "TaskSpec",
    "TaskState",
    "service_spec",
]

#: Bytes of one file as a Swarm config (Docker's documented 500 KB).
CONFIG_LIMIT = 500 * 1024
#: The task's working directory and HOME: tmpfs mounts of services are always
#: ``noexec`` and cannot be given to the sandbox user, but ``/tmp`` is 1777.
WORKDIR = "/tmp"
#: Exit status of the wrapper when the node fails its isolation check.
NOT_ISOLATED_EXIT = 86
#: The set-up every node's engine needs, for messages.
NODE_SETUP = (
    "start every node's dockerd with --bridge=none --no-new-privileges (README, 'Docker Swarm')"
)
#: Lines on stderr the wrapper writes for the host: never shown, never logged.
MARKER = "@@dockermagic-swarm@@"

#: Runs around the program, as ``sh -c WRAPPER dockermagic-swarm PROGRAM...``.
#: First the isolation checks: nothing of the program runs on a node that
#: fails them. Then the program, as a child (a background job) whose stderr is
#: the task's; the shell's own stderr goes nowhere, so no "Killed" of its own
#: joins the output. When the program ends: its exit status; the task's OOM
#: counter (cgroup v1 or v2), since the engine reports an OOM kill only as
#: exit 137; and what the task used (uptime before and after, CPU
#: nanoseconds, the memory cgroup's peak), all with shell builtins only.
WRAPPER = f"""m='{MARKER}'
exec 3>&2 2>/dev/null
for i in /sys/class/net/*; do
  [ "$i" = /sys/class/net/lo ] || {{ echo "$m network ${{i##*/}}" >&3; exit {NOT_ISOLATED_EXIT}; }}
done
nnp=
while read -r k v; do [ "$k" = NoNewPrivs: ] && nnp=$v; done </proc/self/status
[ "$nnp" = 1 ] || {{ echo "$m privileges NoNewPrivs=${{nnp:-?}}" >&3; exit {NOT_ISOLATED_EXIT}; }}
read -r t0 x </proc/uptime
"$@" 2>&3 3>&- &
wait $!
code=$?
read -r t1 x </proc/uptime
oom=0 cpu=- peak=-
for f in /sys/fs/cgroup/memory/memory.oom_control /sys/fs/cgroup/memory.events; do
  [ -r "$f" ] && while read -r k v; do [ "$k" = oom_kill ] && oom=$v; done <"$f"
done
[ -r /sys/fs/cgroup/cpuacct/cpuacct.usage ] && read -r cpu </sys/fs/cgroup/cpuacct/cpuacct.usage
[ -r /sys/fs/cgroup/cpu.stat ] && while read -r k v; do
  [ "$k" = usage_usec ] && cpu=${{v}}000; done </sys/fs/cgroup/cpu.stat
for f in /sys/fs/cgroup/memory/memory.max_usage_in_bytes /sys/fs/cgroup/memory.peak; do
  [ -r "$f" ] && read -r peak <"$f"
done
[ "$oom" = 0 ] || echo "$m oom $oom" >&3
echo "$m usage $t0 $t1 $cpu $peak" >&3
exit $code
"""

#: Task states after which nothing more happens.
FINAL_STATES = frozenset({"complete", "failed", "rejected", "shutdown", "orphaned", "remove"})

_TIMESTAMP = re.compile(rb"^(\d{4}-\d\d-\d\dT[0-9:.]+Z) ")


@dataclass(frozen=True)
class TaskSpec:
    """What to run as a one-off task.

    Attributes:
        image: The image (it must exist on every node).
        command: The program's argv.
        environment: Its environment (nothing else is passed).
        labels: Labels of the service, its configs and its container.
        policy: Limits and hardening (see :func:`service_spec` for what a
            service can and cannot take of it).
        files: Path under ``/code`` -> content: one config each.
        deadline: Seconds after its start at which the task kills itself.
        name: The service's name (its configs are ``<name>-<n>``).
    """

    image: str
    command: Sequence[str]
    environment: Mapping[str, str]
    labels: Mapping[str, str]
    policy: SandboxPolicy
    files: Mapping[str, bytes]
    deadline: float
    name: str = field(default_factory=new_container_name)

    def argv(self) -> list[str]:
        """The task's command: the deadline keeper, the wrapper, the program.

        Returns:
            The argv.
        """
        return under_deadline(
            self.deadline, ["sh", "-c", WRAPPER, "dockermagic-swarm", *self.command]
        )


def service_spec(spec: TaskSpec, config_ids: Sequence[str]) -> dict[str, Any]:
    """The service (Docker's API shape) that runs a task once, as locked down as a service can be.

    What a local container has and a service cannot be given on engine 20.10
    comes from the node (``--bridge=none``, ``--no-new-privileges``) and is
    checked from inside (:data:`WRAPPER`); the ``/work`` tmpfs becomes the
    ``/tmp`` one (:data:`WORKDIR`). Swap: a service's memory limit leaves the
    engine's default (as much swap again), so nodes should run without swap.

    Args:
        spec: The task.
        config_ids: The id of each file's config, in ``sorted(spec.files)`` order.

    Returns:
        Keyword arguments for ``APIClient.create_service``.
    """
    policy = spec.policy
    uid, gid = policy.user.split(":")
    configs = [
        {
            "ConfigID": config_id,
            "ConfigName": f"{spec.name}-{index}",
            # Root-owned and read-only for the sandbox user, as /code is locally.
            "File": {
                "Name": str(PurePosixPath(CODE_DIR) / rel),
                "UID": "0",
                "GID": "0",
                "Mode": 0o444,
            },
        }
        for index, (rel, config_id) in enumerate(zip(sorted(spec.files), config_ids, strict=True))
    ]
    tmpfs = [
        (WORKDIR, policy.tmp_size),
        ("/dev/shm", policy.shm_size),
    ]
    container = {
        "Image": spec.image,
        "Command": spec.argv(),
        "Env": [f"{key}={value}" for key, value in spec.environment.items()],
        "Dir": WORKDIR,
        "User": f"{uid}:{gid}",
        "ReadOnly": policy.read_only,
        "CapabilityDrop": ["ALL"],
        "Ulimits": [{"Name": "nofile", "Soft": policy.nofile, "Hard": policy.nofile}],
        "Mounts": [
            {
                "Type": "tmpfs",
                "Target": target,
                "TmpfsOptions": {"SizeBytes": size, "Mode": 0o1777},
            }
            for target, size in tmpfs
        ],
        "Configs": configs,
        # Removing the service kills the task at once: no grace to print on.
        "StopSignal": "SIGKILL",
        "StopGracePeriod": 0,
        "Labels": dict(spec.labels),
    }
    return {
        "name": spec.name,
        "labels": dict(spec.labels),
        "mode": {"Replicated": {"Replicas": 1}},
        "task_template": {
            "ContainerSpec": container,
            "Resources": {
                "Limits": {
                    "NanoCPUs": round(policy.cpus * 1e9),
                    "MemoryBytes": policy.memory,
                    "Pids": policy.pids_limit,
                }
            },
            "RestartPolicy": {"Condition": "none", "MaxAttempts": 0},
            # The node's disk is bounded even if nobody reads (pitfall 26); the
            # output cap itself is the host's (it removes the service).
            "LogDriver": {
                "Name": "json-file",
                "Options": {
                    "max-size": str(max(8 * policy.output_limit, 8 * 2**20)),
                    "max-file": "1",
                },
            },
            # No "Networks": with --bridge=none the task has lo only.
        },
    }


@dataclass(frozen=True)
class TaskState:
    """Where a service's one task stands.

    Attributes:
        state: Swarm's word (``pending``, ``running``, ``complete``, ``failed``...).
        node: The node's id ('' before it was assigned).
        exit_code: The container's exit status, once it has one.
        error: Swarm's error text ('' when none), e.g. ``No such image``.
        has_container: A container was made for it.
    """

    state: str
    node: str = ""
    exit_code: int | None = None
    error: str = ""
    has_container: bool = False

    @property
    def final(self) -> bool:
        """Nothing more will happen to it."""
        return self.state in FINAL_STATES

    @property
    def started(self) -> bool:
        """Its container runs or ran."""
        return self.state == "running" or (self.final and self.has_container)


@dataclass(frozen=True)
class LogLine:
    """One message of a task's log.

    Attributes:
        stream: ``"stdout"`` or ``"stderr"``.
        timestamp: The node's time stamp (RFC 3339, nanoseconds).
        data: The bytes (a line, or a part of a line longer than 16 KiB).
    """

    stream: str
    timestamp: str
    data: bytes

    @classmethod
    def parse(cls, stream: str, payload: bytes) -> LogLine:
        """Split ``"<timestamp> <data>"`` (the log endpoint's ``timestamps=1``)."""
        match = _TIMESTAMP.match(payload)
        if match is None:
            return cls(stream, "", payload)
        return cls(stream, match.group(1).decode("ascii"), payload[match.end() :])
