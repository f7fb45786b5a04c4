"""What state dockermagic's surroundings are in, as data: :func:`diagnose`.

One check behind ``dockermagic doctor`` and ``%docker_status``: the engine
(address, whether TLS is on and verified, version, or why it does not
answer), each registered language's image (which one, present or not), how
many dockermagic containers exist, whether the log directory can be written,
and the sandbox limits. Each front end renders the :class:`Diagnosis` in its own words.

Never raises for a problem it finds: a problem is part of the answer.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker

from dockermagic.cleanup import list_containers
from dockermagic.engine import Transport, default_client, engine_transport, engine_version
from dockermagic.errors import DockermagicError, EngineUnavailableError
from dockermagic.gateway.client import GatewayBackend
from dockermagic.images import image_present, runner_image
from dockermagic.logs import log_directory, prepare_log_dir
from dockermagic.policy import SandboxPolicy
from dockermagic.runners import AbstractDockerCodeRunner, configured_backend, runner_classes
from dockermagic.settings import current_settings

__all__ = ["Diagnosis", "ImageCheck", "diagnose"]


@dataclass(frozen=True)
class ImageCheck:
    """A language's image.

    Attributes:
        language: The runner's language.
        image: The image it would use ('' when that could not be decided).
        present: Whether the engine has it locally; None when it could not be checked.
        problem: Why it could not be decided or checked ('' when it could).
    """

    language: str
    image: str
    present: bool | None
    problem: str = ""


@dataclass(frozen=True)
class Diagnosis:
    """What :func:`diagnose` found.

    Attributes:
        address: Where the engine is expected ('' when unknown).
        transport: How the client reaches it (TLS, verified); None when no
            client could be made.
        version: ``name`` (Docker or Podman), ``version``, ``api_version``,
            ``os`` and ``arch`` of the engine; None when it does not answer.
        engine_error: Why the engine does not answer ('' when it does).
        images: One check per registered language, in registration order.
        containers: How many dockermagic containers exist (None without an engine).
        log_dir: The log directory.
        log_problem: Why it cannot be written ('' when it can, or was not checked).
        policy: The sandbox limits in force.
        gateway: The gateway runs go through ('' when they use an engine here).
        gateway_user: Who the gateway says we are ('' when it does not answer).
        gateway_backend: Where the gateway runs one-shot programs: ``local``
            (its engine) or ``swarm`` ('' when it does not say).
    """

    address: str
    transport: Transport | None
    version: Mapping[str, str] | None
    engine_error: str
    images: tuple[ImageCheck, ...]
    containers: int | None
    log_dir: Path
    log_problem: str
    policy: SandboxPolicy
    gateway: str = ""
    gateway_user: str = ""
    gateway_backend: str = ""

    def engine_rows(self) -> list[tuple[str, str]]:
        """The engine in words, as ``(label, text)`` rows that every front end prints.

        Returns:
            ``engine`` (version, or why it does not answer), then ``address``
            and ``transport`` (TLS on or off, verified or not) when known.
        """
        if self.gateway:
            if self.engine_error:
                return [("backend", f"gateway {self.gateway}: {self.engine_error}")]
            where = (
                "; one-shot runs on a Swarm, sessions on its manager"
                if self.gateway_backend == "swarm"
                else ""
            )
            return [
                ("backend", f"gateway {self.gateway} (no Docker engine needed here{where})"),
                ("user", self.gateway_user),
            ]
        if self.version is None:
            rows = [("engine", f"NOT REACHABLE: {self.engine_error}")]
        else:
            version = self.version
            rows = [
                (
                    "engine",
                    f"{version.get('name', 'Docker')} {version['version']} "
                    f"(API {version['api_version']}, "
                    f"{version['os']}/{version['arch']})",
                )
            ]
        if self.address:
            rows.append(("address", self.address))
        if self.transport is not None:
            rows.append(("transport", self.transport.describe()))
        return rows

    @property
    def problems(self) -> list[str]:
        """Everything that stops runs from working, one line each ([] when none)."""
        found = [f"engine: {self.engine_error}"] if self.engine_error else []
        found += [
            f"{check.language}: {check.problem or f'{check.image} is missing'}"
            for check in self.images
            if not check.present and not self.engine_error
        ]
        if self.log_problem:
            found.append(f"logs: {self.log_problem}")
        return found


def diagnose(
    *,
    client: docker.DockerClient | None = None,
    images: Mapping[str, str] | None = None,
    log_dir: str | os.PathLike[str] | None = None,
    check_log_dir: bool = True,
    policy: SandboxPolicy | None = None,
) -> Diagnosis:
    """Check the engine, the images, leftover containers, the log directory.

    Args:
        client: The client; the process's shared client when None.
        images: Image per language that the caller configured (others: the
            runner's usual choice).
        log_dir: The log directory (see :func:`dockermagic.logs.log_directory`).
        check_log_dir: Create the log directory if missing and prove it is
            writable (as a run would).
        policy: The limits to report; :meth:`SandboxPolicy.default` when None.

    Returns:
        The diagnosis.
    """
    if current_settings().gateway:
        return _through_gateway(images or {}, log_dir, check_log_dir, policy)
    address, transport, version, engine_error = "", None, None, ""
    try:
        client = client or default_client()
        transport = engine_transport(client)
        address = transport.address
        version = engine_version(client)
    except EngineUnavailableError as exc:
        address, engine_error, client = exc.base_url or address, str(exc), None
    chosen = images or {}
    checks = tuple(_image_check(client, cls, chosen.get(cls.language)) for cls in runner_classes())
    containers: int | None = None
    if client is not None:
        try:
            containers = len(list_containers(client))
        except DockermagicError:
            containers = None
    directory, log_problem = _log_dir_state(log_dir, check=check_log_dir)
    return Diagnosis(
        address=address,
        transport=transport,
        version=version,
        engine_error=engine_error,
        images=checks,
        containers=containers,
        log_dir=directory,
        log_problem=log_problem,
        policy=policy if policy is not None else SandboxPolicy.default(),
    )


def _image_check(
    client: docker.DockerClient | None,
    cls: type[AbstractDockerCodeRunner],
    configured: str | None,
) -> ImageCheck:
    language = cls.language
    if client is None:
        return ImageCheck(language, configured or "", None, "engine not reachable")
    image = configured or ""
    try:
        image = runner_image(client, cls, configured)
        return ImageCheck(language, image, image_present(client, image))
    except DockermagicError as exc:
        return ImageCheck(language, image or cls.default_image, None, str(exc))


def _through_gateway(
    chosen: Mapping[str, str],
    log_dir: str | os.PathLike[str] | None,
    check_log_dir: bool,
    policy: SandboxPolicy | None,
) -> Diagnosis:
    """The diagnosis when runs go through a gateway: it holds the engine and the images."""
    url, user, problem, runs_on = current_settings().gateway or "", "", "", ""
    images: dict[str, Any] = {}
    try:
        backend = configured_backend()
        assert backend is not None
        url = backend.address
        info = backend.info() if isinstance(backend, GatewayBackend) else {}
        user = str(info.get("user", ""))
        runs_on = str(info.get("backend", ""))
        images = info.get("images", {}) if isinstance(info.get("images"), dict) else {}
    except DockermagicError as exc:
        problem = str(exc)
    checks = []
    for cls in runner_classes():
        listed = images.get(cls.language) or []
        image = chosen.get(cls.language) or (listed[0] if listed else "the gateway's default")
        checks.append(ImageCheck(cls.language, image, None if problem else True, problem))
    directory, log_problem = _log_dir_state(log_dir, check=check_log_dir)
    return Diagnosis(
        address=url,
        transport=None,
        version=None,
        engine_error=problem,
        images=tuple(checks),
        containers=None,
        log_dir=directory,
        log_problem=log_problem,
        policy=policy if policy is not None else SandboxPolicy.default(),
        gateway=url,
        gateway_user=user,
        gateway_backend=runs_on,
    )


def _log_dir_state(log_dir: str | os.PathLike[str] | None, *, check: bool) -> tuple[Path, str]:
    """The log folder, and what is wrong with it ('' when nothing or unchecked)."""
    if not check:
        return log_directory(log_dir), ""
    try:
        return prepare_log_dir(log_dir), ""
    except DockermagicError as exc:
        return log_directory(log_dir), str(exc)
