"""Settings from the environment: the one place that reads ``DOCKERMAGIC_*``.

:func:`current_settings` reads every variable into a frozen :class:`Settings`;
other modules ask it instead of looking at ``os.environ`` themselves. It reads
the environment at each call (a few microseconds), so a variable changed by a
test or a notebook takes effect at the next run.

==============================  ==================================================
variable                        meaning
==============================  ==================================================
``DOCKERMAGIC_TIMEOUT``         default wall-clock seconds per run or cell
``DOCKERMAGIC_MEMORY``          default memory limit (``256m``, ``1g``)
``DOCKERMAGIC_CPUS``            default CPUs per container
``DOCKERMAGIC_PIDS_LIMIT``      default process/thread limit per container
``DOCKERMAGIC_OUTPUT_LIMIT``    default output kept before a run is killed
``DOCKERMAGIC_COPY_LIMIT``      most bytes of host files copied into one container
``DOCKERMAGIC_<LANG>_IMAGE``    image override per language (the runner names it,
                                e.g. ``DOCKERMAGIC_PYTHON_IMAGE``)
``DOCKERMAGIC_LOG_DIR``         where front ends write logs (default ``logs``)
``DOCKERMAGIC_CACHE_DIR``       locks of image builds (default ``~/.cache/dockermagic``)
``DOCKERMAGIC_POOL_SIZE``       idle containers runners keep started (default: none
                                for library calls; front ends keep 2)
``DOCKERMAGIC_TAG``             a label value on every container (tests use it)
``DOCKERMAGIC_DEBIAN_SUITE``    Debian suite of offline images (default: the host's)
``DOCKERMAGIC_DEBIAN_MIRROR``   Debian mirror of offline images
``DOCKERMAGIC_SSH_CONFIG``      an OpenSSH configuration file for ``ssh://`` engines
                                (``ssh -F``; default: the user's own)
``DOCKERMAGIC_GATEWAY``         a gateway's URL: runs and sessions go through it,
                                never to a Docker engine
``DOCKERMAGIC_TOKEN``           the token the gateway knows this user by (else
                                ``JUPYTERHUB_API_TOKEN``, as a Hub-spawned kernel has)
``DOCKERMAGIC_GATEWAY_CA``      a CA file (PEM) an ``https://`` gateway's certificate is
                                checked against (default: the system's CAs)
==============================  ==================================================

Pure logic, no Docker calls.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dockermagic.errors import InvalidArgumentError

__all__ = ["PREFIX", "Settings", "current_settings"]

PREFIX = "DOCKERMAGIC_"

#: Policy field -> (variable suffix, type the text is converted with).
_POLICY_VARIABLES: dict[str, tuple[str, type]] = {
    "timeout": ("TIMEOUT", float),
    "memory": ("MEMORY", str),
    "cpus": ("CPUS", float),
    "pids_limit": ("PIDS_LIMIT", int),
    "output_limit": ("OUTPUT_LIMIT", str),
    "copy_limit": ("COPY_LIMIT", str),
}


@dataclass(frozen=True)
class Settings:
    """Everything the ``DOCKERMAGIC_*`` variables say (unset ones are absent).

    Attributes:
        policy: Sandbox policy fields to override (converted, not yet validated
            by the policy), e.g. ``{"timeout": 12.5}``.
        images: Image overrides by variable name, e.g.
            ``{"DOCKERMAGIC_PYTHON_IMAGE": "python:3.12"}``.
        log_dir: The log directory front ends use, or None.
        cache_dir: Where build locks live.
        pool_size: Idle containers a runner keeps, when set.
        tag: The value of the tag label on every container, or None.
        debian_suite: The Debian suite offline images are built from, or None.
        debian_mirror: The Debian mirror offline images are built from, or None.
        ssh_config: The OpenSSH configuration file for ``ssh://`` engines, or None.
        gateway: The gateway's URL, or None (then runs use a Docker engine).
        token: The gateway token, or None.
        gateway_ca: The CA file for an ``https://`` gateway, or None.
    """

    policy: Mapping[str, Any] = field(default_factory=dict)
    images: Mapping[str, str] = field(default_factory=dict)
    log_dir: str | None = None
    cache_dir: str = ""
    pool_size: int | None = None
    tag: str | None = None
    debian_suite: str | None = None
    debian_mirror: str | None = None
    ssh_config: str | None = None
    gateway: str | None = None
    token: str | None = field(default=None, repr=False)
    gateway_ca: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Read the settings from an environment mapping.

        Args:
            environ: Usually ``os.environ``.

        Returns:
            The settings.

        Raises:
            InvalidArgumentError: A variable holds a value of the wrong kind.
        """

        def get(suffix: str) -> str | None:
            value = environ.get(PREFIX + suffix, "").strip()
            return value or None

        policy: dict[str, Any] = {}
        for name, (suffix, kind) in _POLICY_VARIABLES.items():
            raw = get(suffix)
            if raw is None:
                continue
            try:
                policy[name] = kind(raw)
            except ValueError as exc:
                raise InvalidArgumentError(PREFIX + suffix, raw, f"not a valid {name}") from exc
        images = {
            key: value.strip()
            for key, value in environ.items()
            if key.startswith(PREFIX) and key.endswith("_IMAGE") and value.strip()
        }
        pool = get("POOL_SIZE")
        try:
            pool_size = int(pool) if pool is not None else None
        except ValueError as exc:
            raise InvalidArgumentError(PREFIX + "POOL_SIZE", pool, "not a number") from exc
        return cls(
            policy=policy,
            pool_size=pool_size,
            images=images,
            log_dir=get("LOG_DIR"),
            cache_dir=get("CACHE_DIR")
            or os.path.join(
                environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "dockermagic"
            ),
            tag=get("TAG"),
            debian_suite=get("DEBIAN_SUITE"),
            debian_mirror=get("DEBIAN_MIRROR"),
            ssh_config=get("SSH_CONFIG"),
            gateway=get("GATEWAY"),
            token=get("TOKEN") or environ.get("JUPYTERHUB_API_TOKEN", "").strip() or None,
            gateway_ca=get("GATEWAY_CA"),
        )

    def image(self, variable: str) -> str | None:
        """The image a language's variable names, if it is set.

        Args:
            variable: The runner's ``image_env_var``.

        Returns:
            The image, or None.
        """
        return self.images.get(variable)


def current_settings() -> Settings:
    """The settings as the environment holds them now.

    Returns:
        The settings.

    Raises:
        InvalidArgumentError: A variable holds a value of the wrong kind.
    """
    return Settings.from_env(os.environ)
