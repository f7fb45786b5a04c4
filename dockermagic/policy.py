"""Sandbox limits and hardening: :class:`SandboxPolicy`.

Every run gets :meth:`SandboxPolicy.default` unless the caller passes a loosened
copy (``policy.replace(network=True)``). The policy is pure data; the container
layer (:mod:`dockermagic.container`) hands its two halves to docker-py's public
API: :meth:`SandboxPolicy.container_kwargs` to ``APIClient.create_container``
and :meth:`SandboxPolicy.host_config_kwargs` to ``APIClient.create_host_config``.
The same policy is spelled for the engine at hand: an
:class:`~dockermagic.profiles.EngineProfile` says how (tmpfs owner options,
rlimits, tmpfs the engine adds on its own).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from docker.types import Ulimit

from dockermagic.errors import InvalidArgumentError
from dockermagic.profiles import DOCKER, EngineProfile
from dockermagic.settings import current_settings

__all__ = ["CODE_DIR", "SandboxPolicy", "parse_bytes", "parse_user", "size_text", "under_deadline"]

#: Where the program and its files are copied (a per-container volume, read-only
#: for the sandbox user). Docker refuses ``put_archive`` into a read-only root
#: filesystem except inside a volume, and a copy into a tmpfs is hidden by the
#: mount, so the code lives in a volume and the writable work dir is a tmpfs.
CODE_DIR = "/code"


def under_deadline(seconds: float, command: Sequence[str]) -> list[str]:
    """``command`` under coreutils' ``timeout``, the deadline keeper inside a sandbox.

    As the container's (or task's) PID 1 it cannot be stopped by the program
    (the kernel ignores SIGKILL to a namespace's init from inside), so the
    deadline holds even when the process that started the container is gone.

    Args:
        seconds: When to SIGKILL the program, from the container's start.
        command: The program's argv.

    Returns:
        The argv to run.
    """
    # --preserve-status: a program killed at the deadline exits 137, as it
    # does when the host kills it.
    return ["timeout", "--preserve-status", "-s", "KILL", f"{seconds:.3f}s", *command]


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_bytes(value: int | str, *, argument: str = "size") -> int:
    """Turn ``"256m"``, ``"1g"``, ``"512k"`` or a number of bytes into bytes.

    Args:
        value: An int (bytes) or a string with an optional k/m/g/t suffix
            (binary units, as Docker reads them).
        argument: The argument's name, for the error message.

    Returns:
        The size in bytes.

    Raises:
        InvalidArgumentError: When the value is not a positive size.
    """
    if isinstance(value, bool):
        raise InvalidArgumentError(argument, value, "expected a size such as 256m")
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE_RE.match(str(value))
        if not match:
            raise InvalidArgumentError(argument, value, "expected a size such as 256m or 1g")
        size = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if size <= 0:
        raise InvalidArgumentError(argument, value, "must be positive")
    return size


_USER_RE = re.compile(r"(\d+)(?::(\d+))?")


def size_text(size: int) -> str:
    """A byte count for people: ``"64 MiB"``, ``"20 KiB"``, ``"512 bytes"``.

    Args:
        size: Bytes.

    Returns:
        The text.
    """
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= scale:
            return f"{size / scale:.4g} {unit}"
    return f"{size} bytes"


def parse_user(user: str) -> tuple[int, int]:
    """Read a ``uid[:gid]`` and refuse root.

    Args:
        user: E.g. ``"65534:65534"``; a lone uid means the same gid (Docker
            would otherwise take the group from the image, often root's).

    Returns:
        ``(uid, gid)``.

    Raises:
        InvalidArgumentError: Not numeric (names depend on the image), empty
            (the image's default user, often root), or uid or gid 0.
    """
    match = _USER_RE.fullmatch(user) if isinstance(user, str) else None
    if match is None:
        raise InvalidArgumentError(
            "user", user, "give a numeric uid:gid, e.g. 65534:65534 (names depend on the image)"
        )
    uid = int(match.group(1))
    gid = int(match.group(2)) if match.group(2) is not None else uid
    if uid == 0 or gid == 0:
        # Root in the container is one kernel bug away from root on the host;
        # group 0 owns files root meant to share with no one else.
        raise InvalidArgumentError("user", user, "running as root (uid or gid 0) is not allowed")
    return uid, gid


@dataclass(frozen=True)
class SandboxPolicy:
    """Limits and hardening applied to every container.

    The defaults are the safe ones; loosen a copy with :meth:`replace`.

    Attributes:
        network: Give the container a network (default: none at all).
        user: The uid:gid the program runs as (default: nobody, never root).
        read_only: Make the root filesystem read-only.
        workdir: The program's working directory, a size-limited tmpfs.
        workdir_size: Size of the working-directory tmpfs, in bytes.
        tmp_size: Size of the ``/tmp`` tmpfs, in bytes.
        shm_size: Size of ``/dev/shm`` (shared memory, semaphores), in bytes.
        memory: Memory limit in bytes; swap is set equal so none is added.
        cpus: CPUs the container may use (fractional allowed).
        pids_limit: Maximum number of processes and threads (stops fork bombs).
        nofile: Maximum open files per process.
        timeout: Wall-clock seconds before the container is killed.
        output_limit: Bytes of stdout+stderr kept before the run is killed.
        copy_limit: Bytes of files copied into one container at most (the
            program, ``files=``, included folders, ``put=``), and of files
            brought back (``get=``).
        display_limit: Bytes of displays (plots, HTML...) kept per run,
            counted apart from ``output_limit``.
    """

    network: bool = False
    user: str = "65534:65534"
    read_only: bool = True
    workdir: str = "/work"
    workdir_size: int = 64 * 1024**2
    tmp_size: int = 64 * 1024**2
    shm_size: int = 64 * 1024**2
    memory: int = 256 * 1024**2
    cpus: float = 1.0
    pids_limit: int = 128
    nofile: int = 1024
    timeout: float = 30.0
    output_limit: int = 1024**2
    copy_limit: int = 64 * 1024**2
    display_limit: int = 16 * 1024**2

    def __post_init__(self) -> None:
        # Accept "256m"-style strings for sizes but store bytes, so that equal
        # policies compare equal and the values read back from inspect() match.
        for name in (
            "memory",
            "workdir_size",
            "tmp_size",
            "shm_size",
            "output_limit",
            "copy_limit",
            "display_limit",
        ):
            object.__setattr__(self, name, parse_bytes(getattr(self, name), argument=name))
        if self.memory < 6 * 1024**2:
            raise InvalidArgumentError("memory", self.memory, "Docker needs at least 6m")
        if not (isinstance(self.cpus, (int, float)) and math.isfinite(self.cpus) and self.cpus > 0):
            raise InvalidArgumentError("cpus", self.cpus, "must be a positive number")
        if os.cpu_count() and self.cpus > (os.cpu_count() or 1):
            raise InvalidArgumentError(
                "cpus", self.cpus, f"this machine has only {os.cpu_count()} CPUs"
            )
        if not isinstance(self.pids_limit, int) or self.pids_limit < 8:
            raise InvalidArgumentError("pids_limit", self.pids_limit, "must be an integer >= 8")
        if not isinstance(self.nofile, int) or self.nofile < 16:
            raise InvalidArgumentError("nofile", self.nofile, "must be an integer >= 16")
        if not (isinstance(self.timeout, (int, float)) and math.isfinite(self.timeout)):
            raise InvalidArgumentError("timeout", self.timeout, "must be a number of seconds")
        if self.timeout <= 0:
            raise InvalidArgumentError("timeout", self.timeout, "must be positive")
        if not self.workdir.startswith("/") or self.workdir in ("/", "/tmp"):
            raise InvalidArgumentError("workdir", self.workdir, "must be an absolute path")
        uid, gid = parse_user(self.user)
        object.__setattr__(self, "user", f"{uid}:{gid}")

    @classmethod
    def default(cls) -> SandboxPolicy:
        """The defaults, adjusted by ``DOCKERMAGIC_*`` environment variables.

        Reads ``DOCKERMAGIC_TIMEOUT``, ``DOCKERMAGIC_MEMORY``, ``DOCKERMAGIC_CPUS``,
        ``DOCKERMAGIC_PIDS_LIMIT``, ``DOCKERMAGIC_OUTPUT_LIMIT`` and
        ``DOCKERMAGIC_COPY_LIMIT`` (through :mod:`dockermagic.settings`).

        Returns:
            A policy.

        Raises:
            InvalidArgumentError: When a variable holds an unusable value.
        """
        return cls(**current_settings().policy)

    def replace(self, **changes: Any) -> SandboxPolicy:
        """Return a copy with some fields changed (validated again).

        Args:
            **changes: Field names and their new values; ``None`` values are
                ignored so that optional front-end options can be passed through.

        Returns:
            The new policy.

        Raises:
            InvalidArgumentError: When a field does not exist or a value is bad.
        """
        known = {f.name for f in dataclasses.fields(self)}
        for name in changes:
            if name not in known:
                raise InvalidArgumentError("policy field", name, f"known fields: {sorted(known)}")
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def container_kwargs(self) -> dict[str, Any]:
        """The policy's part of ``APIClient.create_container()``.

        Returns:
            User, working directory, network switch.
        """
        return {
            "user": self.user,
            "working_dir": self.workdir,
            "network_disabled": not self.network,
        }

    def host_config_kwargs(self, profile: EngineProfile = DOCKER) -> dict[str, Any]:
        """The policy's part of ``APIClient.create_host_config()``.

        Args:
            profile: The engine's profile (how it must be asked).

        Returns:
            The limits and hardening as docker-py arguments.
        """
        tmpfs_opts = "rw,nosuid,nodev,mode=1777"
        tmpfs = {
            self.workdir: f"{tmpfs_opts},size={self.workdir_size}{self._owner_opts(profile)}",
            "/tmp": f"{tmpfs_opts},size={self.tmp_size}",
        }
        # Writable tmpfs the engine would add on its own: empty and read-only
        # instead, as the read-only root would have them.
        tmpfs.update(dict.fromkeys(profile.covered_dirs, "ro,nosuid,nodev,noexec,size=4k"))
        return {
            "network_mode": "bridge" if self.network else "none",
            "read_only": self.read_only,
            "tmpfs": tmpfs,
            "shm_size": self.shm_size,
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "pids_limit": self.pids_limit,
            # Without memswap_limit Docker allows as much swap again (pitfall 10).
            "mem_limit": self.memory,
            "memswap_limit": self.memory,
            "nano_cpus": round(self.cpus * 1e9),
            "ulimits": self.ulimits(profile),
            "ipc_mode": "private",
        }

    def ulimits(self, profile: EngineProfile = DOCKER) -> list[Ulimit]:
        """The rlimits every process in the container gets.

        Args:
            profile: The engine's profile (which limits it needs spelled out).

        Returns:
            ``nofile``, and ``nproc`` where the engine's default cannot be granted.
        """
        limits = [Ulimit(name="nofile", soft=self.nofile, hard=self.nofile)]
        if profile.nproc is not None:
            limits.append(Ulimit(name="nproc", soft=profile.nproc, hard=profile.nproc))
        return limits

    def code_tmpfs(self, profile: EngineProfile = DOCKER) -> str:
        """Mount options of the program's folder when an agent fills it.

        Args:
            profile: The engine's profile (how it must be asked).

        Returns:
            tmpfs options: owned by the sandbox user (the agent makes it
            read-only before the program runs), as big as the copy limit.
        """
        return f"rw,nosuid,nodev,mode=0755,size={self.copy_limit}{self._owner_opts(profile)}"

    def _owner_opts(self, profile: EngineProfile) -> str:
        # Docker 20.10 creates the working directory (0755, root) before the
        # tmpfs is mounted and copies that mode onto it, overriding mode=1777:
        # hand the tmpfs to the sandbox user instead so that the cwd is writable.
        # Podman takes no uid=/gid= but has its own option for the same owner.
        uid, gid = parse_user(self.user)
        return profile.tmpfs_owner.format(uid=uid, gid=gid)
