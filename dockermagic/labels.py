"""Container names and labels: who owns a container, and whether the owner lives.

Every container dockermagic creates is named ``dockermagic-<random>`` and
carries the labels made here: the package marker, the owner process (host,
boot, PID namespace, pid and the pid's start time), the language, and optional
context (a session name, a batch id, a deadline, the ``DOCKERMAGIC_TAG``).

Deciding that an owner is gone (:func:`owner_alive`), the rule:

1. An owner that lived on this host, in this boot and in this PID namespace is
   checked directly: it is alive while its pid exists with the same start time
   (a reused pid is not mistaken for it).
2. Any other owner (another machine on a shared engine, a kernel in a
   container or in ``unshare --pid``, a boot before the last reboot) cannot be
   checked from here, so it counts as alive. Its containers are removed only
   when they are stale (:func:`is_stale`): a one-shot container still there
   :data:`DEADLINE_SLACK` seconds after its deadline label, or a stopped
   container created more than :data:`STALE_AFTER` seconds ago. A running
   session of such an owner is never removed by plain cleanup; ``cleanup
   --all`` removes it.

Pure logic apart from reading ``/proc``; no Docker calls.
"""

from __future__ import annotations

import functools
import os
import secrets
import socket
from collections.abc import Mapping
from dataclasses import dataclass

from dockermagic.settings import current_settings

__all__ = [
    "BATCH",
    "DEADLINE",
    "GATEWAY_USER",
    "LABEL",
    "LANGUAGE",
    "OWNER_BOOT",
    "OWNER_HOST",
    "OWNER_PID",
    "OWNER_PIDNS",
    "OWNER_STARTED",
    "POOL",
    "SESSION",
    "TAG",
    "Owner",
    "container_labels",
    "is_stale",
    "new_container_name",
    "owner_alive",
    "this_owner",
]

#: The label every dockermagic container carries (value ``"1"``).
LABEL = "dockermagic"
OWNER_PID = "dockermagic.pid"
OWNER_HOST = "dockermagic.host"
OWNER_STARTED = "dockermagic.started"
OWNER_PIDNS = "dockermagic.pidns"
OWNER_BOOT = "dockermagic.boot"
#: The runner's language.
LANGUAGE = "dockermagic.language"
#: Free-form tag from ``DOCKERMAGIC_TAG`` (tests use it to tell runs apart).
TAG = "dockermagic.tag"
#: The name of the session a warm container belongs to.
SESSION = "dockermagic.session"
#: The gateway user a container runs for (``dockermagic gateway``).
GATEWAY_USER = "dockermagic.gateway.user"
#: The id of the batch a container belongs to.
BATCH = "dockermagic.batch"
#: An idle container of a pool, waiting for one program.
POOL = "dockermagic.pool"
#: Unix time after which a one-shot container has certainly been killed from
#: inside (its in-container deadline); cleanup removes it past this time.
DEADLINE = "dockermagic.deadline"

#: Seconds past its deadline label before any cleanup removes a container.
DEADLINE_SLACK = 60.0
#: Seconds after which a stopped container of an owner we cannot check is stale.
STALE_AFTER = 3600.0


@dataclass(frozen=True)
class Owner:
    """The identity of a process that owns containers.

    Attributes:
        host: The host name.
        boot: The kernel's boot id ("" where unknown).
        pidns: The PID namespace's inode number ("" where unknown).
        pid: The process id, as seen in that namespace.
        started: The process's start time in clock ticks since boot ("" off Linux).
    """

    host: str
    boot: str
    pidns: str
    pid: int
    started: str

    def labels(self) -> dict[str, str]:
        """The owner labels.

        Returns:
            Label key -> value.
        """
        return {
            OWNER_HOST: self.host,
            OWNER_BOOT: self.boot,
            OWNER_PIDNS: self.pidns,
            OWNER_PID: str(self.pid),
            OWNER_STARTED: self.started,
        }


def new_container_name() -> str:
    """A fresh ``dockermagic-<random>`` name.

    Returns:
        The name.
    """
    return f"dockermagic-{secrets.token_hex(6)}"


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as stream:
            return stream.read().strip()
    except OSError:
        return ""


def _process_start(pid: int) -> str:
    """The start time of a process in clock ticks since boot ("" off Linux)."""
    try:
        # Field 22 counts from after the parenthesised command name, which may
        # itself contain spaces and parentheses.
        return _read(f"/proc/{pid}/stat").rsplit(")", 1)[1].split()[19]
    except IndexError:
        return ""


def _pid_namespace() -> str:
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return ""


@functools.lru_cache(maxsize=8)
def _owner(pid: int) -> Owner:
    # Cached per pid: a forked child (another pid) reads its own.
    return Owner(
        host=socket.gethostname(),
        boot=_read("/proc/sys/kernel/random/boot_id"),
        pidns=_pid_namespace(),
        pid=pid,
        started=_process_start(pid),
    )


def this_owner() -> Owner:
    """The calling process as an owner.

    Returns:
        Its identity.
    """
    return _owner(os.getpid())


def container_labels(language: str, **extra: str) -> dict[str, str]:
    """Labels for a new container owned by this process.

    Args:
        language: The runner's language.
        **extra: Further labels (e.g. a session name).

    Returns:
        The labels.
    """
    labels = {LABEL: "1", **this_owner().labels(), LANGUAGE: language}
    tag = current_settings().tag
    if tag:
        labels[TAG] = tag
    labels.update(extra)
    return labels


def owner_alive(labels: Mapping[str, str]) -> bool:
    """Whether the process that created a container may still run (rule in the module doc).

    Args:
        labels: The container's labels.

    Returns:
        False only when the owner was checkable from here and is gone.
    """
    me = this_owner()
    if labels.get(OWNER_HOST) != me.host:
        return True
    # Containers made before these labels existed were checked by pid alone.
    boot, pidns = labels.get(OWNER_BOOT), labels.get(OWNER_PIDNS)
    if (boot and boot != me.boot) or (pidns and pidns != me.pidns):
        return True
    try:
        pid = int(labels.get(OWNER_PID, ""))
    except ValueError:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    started = labels.get(OWNER_STARTED, "")
    return not started or _process_start(pid) in ("", started)


def is_stale(labels: Mapping[str, str], *, running: bool, created: float, now: float) -> bool:
    """Whether a container should go whoever owns it (rule in the module doc).

    Args:
        labels: The container's labels.
        running: Whether it runs.
        created: Its creation time (Unix seconds).
        now: The current time (Unix seconds).

    Returns:
        True when it is past its deadline, or stopped and old.
    """
    try:
        deadline = float(labels.get(DEADLINE, ""))
    except ValueError:
        deadline = 0.0
    if deadline and now > deadline + DEADLINE_SLACK:
        return True
    return not running and created > 0 and now - created > STALE_AFTER
