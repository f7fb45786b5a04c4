"""What differs between engines that speak the Docker API: :class:`EngineProfile`.

dockermagic talks to every engine through the Docker Engine API, but Podman's
Docker-compatible service (measured on Debian's Podman 4.3) accepts, reports
and defaults some things differently. Each difference is one field here, and
the modules that build or watch containers (:mod:`dockermagic.policy`,
:mod:`dockermagic.container`) read the field instead of asking which engine
it is. :func:`profile_for` picks the profile from what the engine's version
endpoint says; :func:`dockermagic.engine.engine_profile` asks once per client.

Pure data, no Docker calls.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["DOCKER", "PODMAN", "EngineProfile", "engine_name", "profile_for"]


@dataclass(frozen=True)
class EngineProfile:
    """How one kind of engine must be asked, and what it reports.

    Attributes:
        name: The engine's name for people (``"Docker"``, ``"Podman"``).
        tmpfs_owner: The tmpfs options that give a tmpfs to the sandbox user,
            a template with ``{uid}`` and ``{gid}``. Docker takes ``uid=`` and
            ``gid=``; Podman 4.3 refuses them (``unknown mount option``) and
            takes ``U`` instead: it then adds the container user's uid and gid.
        nproc: An explicit ``RLIMIT_NPROC`` for every container, or None for
            the engine's default. Podman's Docker API asks for 4194304, which
            a host without ``CAP_SYS_RESOURCE`` cannot grant (``error setting
            rlimit type 6``). The count is per uid on the whole host (every
            uid-65534 process of every container), so it is a generous
            ceiling, not the per-container limit (``pids_limit`` is).
        covered_dirs: Writable tmpfs the engine adds on its own to a container
            with a read-only root, which dockermagic covers with an empty,
            read-only tmpfs so that only ``/work`` and ``/tmp`` stay writable.
            Podman's Docker API always adds ``/var/tmp`` (mode 1777, no size),
            and ``/run`` (root's only, left alone: ``/run/podman-init`` is
            mounted into it).
        volume_owned_by_user: A new volume's folder is handed to the
            container's user when first mounted (Podman), so the code folder
            would be the program's to write in; the files copied in then carry
            the folder itself, root-owned, which puts it back.
        reports_oom: The engine says when the kernel's OOM killer acted (an
            ``oom`` event, ``State.OOMKilled``). Podman 4.3 never does: conmon
            writes its OOM marker where Podman does not look, its events have
            no ``oom``, and the container's memory cgroup (with its counters)
            is gone by the time its exit is reported.
        exit_filter: Event names to subscribe to for a container's end, as
            the engine's ``/events`` filter spells them.
        exit_actions: The ``Action`` of the events that mean the end.
        removal_races: Texts of a removal error that means the engine's own
            ``AutoRemove`` is already at it (wait for it rather than fail).
        network_disabled_reported: ``Config.NetworkDisabled`` appears in
            ``inspect()``. Podman omits it; the container still has only
            ``lo`` (tests read that from inside instead).
        image_prefixes: What the engine puts before the name it was given
            for an image (Podman: ``localhost/`` on a loaded image,
            ``docker.io/`` on one built through its Docker API), left out
            when dockermagic shows the name it gave the image.
        hints: ``(error text, what to do)`` pairs added to the messages of
            engine errors that name a missing piece of the engine's host.
    """

    name: str
    tmpfs_owner: str = ",uid={uid},gid={gid}"
    nproc: int | None = None
    covered_dirs: tuple[str, ...] = ()
    volume_owned_by_user: bool = False
    reports_oom: bool = True
    exit_filter: tuple[str, ...] = ("oom", "die", "destroy")
    exit_actions: tuple[str, ...] = ("die", "destroy")
    removal_races: tuple[str, ...] = ("already in progress",)
    network_disabled_reported: bool = True
    image_prefixes: tuple[str, ...] = ()
    hints: tuple[tuple[str, str], ...] = ()

    def hint(self, message: str) -> str:
        """What to do about an engine error, when this profile knows ('' otherwise).

        Args:
            message: The engine's error text.

        Returns:
            The advice, or ''.
        """
        return next((advice for text, advice in self.hints if text in message), "")

    def image_name(self, name: str) -> str:
        """An image's name as dockermagic gave it, without the engine's prefix.

        Args:
            name: A name (tag) the engine lists.

        Returns:
            The name without a prefix of :attr:`image_prefixes`.
        """
        for prefix in self.image_prefixes:
            if name.startswith(prefix):
                return name.removeprefix(prefix)
        return name


#: The Docker Engine (moby), the reference every default above describes.
DOCKER = EngineProfile(name="Docker")

#: Podman's Docker-compatible service (``podman system service``), as of 4.3.
PODMAN = EngineProfile(
    name="Podman",
    tmpfs_owner=",U",
    # Below the hard limit a Linux host gives root by default from 1 GiB of
    # memory (the kernel's threads-max / 2), far above one container's pids.
    nproc=4096,
    covered_dirs=("/var/tmp",),
    volume_owned_by_user=True,
    reports_oom=False,
    exit_filter=("died", "remove"),
    exit_actions=("die", "died", "remove"),
    removal_races=("already in progress", "state improper", "could not be stopped"),
    network_disabled_reported=False,
    image_prefixes=("localhost/", "docker.io/"),
    hints=(
        (
            "container-init binary not found",
            "the Podman host lacks catatonit, Podman's init (Debian: apt-get install catatonit)",
        ),
        (
            "error setting rlimit",
            "the Podman service cannot raise this limit (it lacks CAP_SYS_RESOURCE)",
        ),
    ),
)


def engine_name(version: Mapping[str, Any]) -> str:
    """The engine's name, from what its ``/version`` endpoint says.

    Podman names itself in ``Components`` (``"Podman Engine"``); its
    ``Platform.Name`` is the host's OS. Docker says ``"Engine"`` there and
    ``"Docker Engine - Community"`` (or nothing) as the platform.

    Args:
        version: The endpoint's answer (``DockerClient.version()``).

    Returns:
        ``"Podman"`` or ``"Docker"``.
    """
    names = [str(part.get("Name", "")) for part in version.get("Components") or ()]
    names.append(str((version.get("Platform") or {}).get("Name", "")))
    return "Podman" if any("podman" in name.lower() for name in names) else "Docker"


def profile_for(version: Mapping[str, Any]) -> EngineProfile:
    """The profile of the engine that answered this ``/version``.

    Args:
        version: The endpoint's answer (``DockerClient.version()``).

    Returns:
        :data:`PODMAN` or :data:`DOCKER`.
    """
    return PODMAN if engine_name(version) == "Podman" else DOCKER
