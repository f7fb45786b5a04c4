"""Finding, pulling and (offline) building the images the runners use.

Resolution order for a runner's image: the explicit argument, then the
runner's environment variable (``DOCKERMAGIC_PYTHON_IMAGE``...), then the
official default if it is present locally, then the locally built offline image
if present, then the official default, pulled on demand. A pull that fails
raises :class:`~dockermagic.errors.ImageUnavailableError` naming the command
that builds the offline images (:func:`build_offline_image`: a Debian root
filesystem made by ``mmdebstrap`` and imported, no registry involved).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import docker
import docker.errors
from docker.utils import parse_repository_tag

from dockermagic.engine import engine_errors
from dockermagic.errors import DockermagicError, ImageUnavailableError
from dockermagic.settings import current_settings

__all__ = [
    "OFFLINE_BUILD_COMMAND",
    "SPEC_LABEL",
    "ImageStatus",
    "OfflineImage",
    "build_offline_image",
    "ensure_image",
    "forget_image",
    "image_digest",
    "image_present",
    "offline_image_current",
    "prepare_images",
    "resolve_image",
    "runner_image",
]

logger = logging.getLogger(__name__)

#: The command users are told to run when no image can be pulled.
OFFLINE_BUILD_COMMAND = "dockermagic images --offline"

#: ``on_progress(message)`` receives one human-readable line at a time.
ProgressCallback = Callable[[str], None]

_present_lock = threading.Lock()
_present: set[tuple[str, str]] = set()


@dataclass(frozen=True)
class OfflineImage:
    """How to build a language's image from Debian packages, with no registry.

    Attributes:
        tag: The local image reference, e.g. ``dockermagic/python:offline``.
        packages: Debian packages to install on top of the essential set.
        hooks: Shell commands run in the new root filesystem (``$1`` is its path).
        cmd: The image's default command.
    """

    tag: str
    packages: tuple[str, ...]
    hooks: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ("/bin/sh",)

    @property
    def fingerprint(self) -> str:
        """A short hash of what the image is built from (its label says it)."""
        text = json.dumps([self.packages, self.hooks, self.cmd])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


#: The label an offline image carries with its spec's fingerprint.
SPEC_LABEL = "dockermagic.offline.spec"


def offline_image_current(client: docker.DockerClient, spec: OfflineImage) -> bool:
    """Whether the offline image is present and built from this spec.

    An image from an older spec (say, without the plotting packages) is
    rebuilt by ``dockermagic images``.

    Args:
        client: The client.
        spec: The spec.

    Returns:
        True when present and current.
    """
    try:
        with engine_errors():
            labels = client.images.get(spec.tag).labels or {}
    except docker.errors.ImageNotFound:
        return False
    return labels.get(SPEC_LABEL) == spec.fingerprint


def _client_key(client: docker.DockerClient) -> str:
    return str(client.api.base_url)


def image_present(client: docker.DockerClient, image: str) -> bool:
    """Whether an image is in the engine's local store (cached once seen).

    Args:
        client: The client.
        image: An image reference.

    Returns:
        True when present.
    """
    key = (_client_key(client), image)
    if key in _present:
        return True
    try:
        with engine_errors():
            client.images.get(image)
    except docker.errors.ImageNotFound:
        return False
    with _present_lock:
        _present.add(key)
    return True


def image_digest(client: docker.DockerClient, image: str) -> str:
    """The content id of a local image (``sha256:...``), what an audit record names.

    A tag can be moved to other content; the id cannot. Cached per image
    reference for the life of the process: a retagged image shows its new id
    only after a restart.

    Args:
        client: The client.
        image: An image reference.

    Returns:
        The id, or "" when the engine does not have the image.
    """
    key = (_client_key(client), image)
    found = _digests.get(key)
    if found is not None:
        return found
    try:
        with engine_errors():
            digest = str(client.images.get(image).id or "")
    except docker.errors.ImageNotFound:
        return ""
    _digests[key] = digest
    return digest


_digests: dict[tuple[str, str], str] = {}


def forget_image(client: docker.DockerClient, image: str) -> None:
    """Drop an image from the presence cache (after the engine said "no such image").

    Args:
        client: The client.
        image: The image reference.
    """
    with _present_lock:
        _present.discard((_client_key(client), image))


def resolve_image(
    client: docker.DockerClient,
    *,
    explicit: str | None,
    env_var: str,
    default: str,
    offline: OfflineImage | None,
) -> str:
    """Choose the image a run will use (see the module docstring for the order).

    Args:
        client: The client, to check what is present locally.
        explicit: The image the caller asked for, if any.
        env_var: The environment variable that overrides the default.
        default: The official image.
        offline: The offline image that replaces a missing default.

    Returns:
        An image reference; it may still have to be pulled.
    """
    if explicit:
        return explicit
    from_env = current_settings().image(env_var)
    if from_env:
        return from_env
    if image_present(client, default):
        return default
    if offline is not None and image_present(client, offline.tag):
        logger.debug("%s is not present; using the offline image %s", default, offline.tag)
        return offline.tag
    return default


class ImageDeclaration(Protocol):
    """What :func:`runner_image` reads from a runner class (or instance)."""

    @property
    def default_image(self) -> str:
        """The official image."""

    @property
    def image_env_var(self) -> str:
        """The environment variable that overrides the default."""

    @property
    def offline_image(self) -> OfflineImage | None:
        """The offline build that replaces a missing default."""


def runner_image(
    client: docker.DockerClient, runner: ImageDeclaration, explicit: str | None = None
) -> str:
    """:func:`resolve_image` with a runner class's (or runner's) own declarations.

    Args:
        client: The client.
        runner: A runner class or instance.
        explicit: The image the caller asked for, if any.

    Returns:
        An image reference; it may still have to be pulled.
    """
    return resolve_image(
        client,
        explicit=explicit,
        env_var=runner.image_env_var,
        default=runner.default_image,
        offline=runner.offline_image,
    )


def ensure_image(
    client: docker.DockerClient,
    image: str,
    *,
    on_progress: ProgressCallback | None = None,
) -> str:
    """Make sure an image is present, pulling it when it is not.

    Args:
        client: The client.
        image: The image reference.
        on_progress: Receives pull progress lines; the logger gets them too.

    Returns:
        The image reference.

    Raises:
        ImageUnavailableError: When the pull fails (no registry, no such image).
    """
    if image_present(client, image):
        return image
    _pull(client, image, on_progress)
    with _present_lock:
        _present.add((_client_key(client), image))
    return image


def _pull(client: docker.DockerClient, image: str, on_progress: ProgressCallback | None) -> None:
    def report(message: str) -> None:
        logger.info("%s", message)
        if on_progress is not None:
            on_progress(message)

    repository, tag = parse_repository_tag(image)
    report(f"pulling {image} ...")
    layers: dict[str, tuple[int, int]] = {}
    last = 0.0
    try:
        with engine_errors():
            for event in client.api.pull(repository, tag=tag or "latest", stream=True, decode=True):
                if "error" in event:
                    raise ImageUnavailableError(
                        image, str(event["error"]), build_command=OFFLINE_BUILD_COMMAND
                    )
                detail = event.get("progressDetail") or {}
                if event.get("id") and detail.get("total"):
                    layers[event["id"]] = (int(detail.get("current", 0)), int(detail["total"]))
                now = time.monotonic()
                if layers and now - last > 1.0:
                    done = sum(c for c, _ in layers.values())
                    total = sum(t for _, t in layers.values())
                    report(f"pulling {image}: {done / 2**20:.0f}/{total / 2**20:.0f} MiB")
                    last = now
    except docker.errors.APIError as exc:
        reason = str(exc.explanation or exc).splitlines()[0]
        raise ImageUnavailableError(image, reason, build_command=OFFLINE_BUILD_COMMAND) from exc
    if not image_present(client, image):
        raise ImageUnavailableError(
            image, "the pull finished but the image is missing", build_command=OFFLINE_BUILD_COMMAND
        )
    report(f"pulled {image}")


def _debian_suite() -> str:
    try:
        with open("/etc/os-release", encoding="utf-8") as release:
            for line in release:
                if line.startswith("VERSION_CODENAME="):
                    return line.split("=", 1)[1].strip().strip('"') or "bookworm"
    except OSError:
        pass
    return "bookworm"


def build_offline_image(
    client: docker.DockerClient,
    spec: OfflineImage,
    *,
    on_progress: ProgressCallback | None = None,
) -> str:
    """Build an image from Debian packages with ``mmdebstrap`` and import it.

    Needs ``mmdebstrap`` (``apt-get install mmdebstrap``), root, and access to a
    Debian mirror (``DOCKERMAGIC_DEBIAN_MIRROR``, default deb.debian.org), but no
    container registry.

    Args:
        client: The client.
        spec: What to build.
        on_progress: Receives progress lines.

    Returns:
        The new image's reference.

    Raises:
        DockermagicError: When mmdebstrap is missing or fails.
    """

    def report(message: str) -> None:
        logger.info("%s", message)
        if on_progress is not None:
            on_progress(message)

    tool = shutil.which("mmdebstrap")
    if tool is None:
        raise DockermagicError(
            "Building offline images needs mmdebstrap: `apt-get install mmdebstrap`."
        )
    settings = current_settings()
    suite = settings.debian_suite or _debian_suite()
    mirror = settings.debian_mirror or "http://deb.debian.org/debian"
    repository, tag = parse_repository_tag(spec.tag)
    with tempfile.TemporaryDirectory(prefix="dockermagic-rootfs-") as workdir:
        rootfs = os.path.join(workdir, "rootfs.tar")
        command = [
            tool,
            "--variant=essential",
            # Only what the packages need: recommends made the Python image
            # with matplotlib 1.2 GB (a compiler, boost, scipy, sympy).
            '--aptopt=APT::Install-Recommends "false"',
            f"--include={','.join(spec.packages)}",
            "--format=tar",
            # Documentation is dead weight in a sandbox image.
            *(
                f"--dpkgopt=path-exclude=/usr/share/{part}/*"
                for part in ("man", "doc", "info", "locale")
            ),
            *(f"--customize-hook={hook}" for hook in spec.hooks),
            suite,
            rootfs,
            mirror,
        ]
        report(f"building {spec.tag} from Debian {suite} ({', '.join(spec.packages)}) ...")
        started = time.monotonic()
        proc = subprocess.run(command, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
            raise DockermagicError(f"mmdebstrap failed for {spec.tag}:\n{tail}")
        report(f"imported root filesystem for {spec.tag} ({time.monotonic() - started:.0f} s)")
        cmd = ", ".join(f'"{part}"' for part in spec.cmd)
        with engine_errors():
            client.api.import_image_from_file(
                rootfs,
                repository=repository,
                tag=tag or "latest",
                changes=[
                    f"CMD [{cmd}]",
                    "ENV LANG=C.UTF-8",
                    "LABEL dockermagic.offline=1",
                    f"LABEL {SPEC_LABEL}={spec.fingerprint}",
                ],
            )
    forget_image(client, spec.tag)
    if not image_present(client, spec.tag):
        raise DockermagicError(f"import of {spec.tag} reported success but the image is missing")
    report(f"built {spec.tag}")
    return spec.tag


@dataclass(frozen=True)
class ImageStatus:
    """What :func:`prepare_images` did for one language.

    Attributes:
        language: The runner's language.
        image: The image the runner will now use.
        action: ``"present"``, ``"pulled"`` or ``"built"``.
    """

    language: str
    image: str
    action: str


def prepare_images(
    client: docker.DockerClient,
    runner_classes: Iterable[Any],
    *,
    offline: bool | None = None,
    rebuild: bool = False,
    on_progress: ProgressCallback | None = None,
) -> list[ImageStatus]:
    """Make every runner's image available: keep, pull, or build offline.

    Args:
        client: The client.
        runner_classes: Runner classes (their image attributes are read).
        offline: True: build the offline images, never pull. False: only pull.
            None: use what is present, else pull, else build offline.
        rebuild: Build the offline images even when present.
        on_progress: Receives progress lines.

    Returns:
        One status per runner class.

    Raises:
        ImageUnavailableError: When an image can be neither pulled nor built.
    """
    statuses = []
    for cls in runner_classes:
        spec: OfflineImage | None = cls.offline_image
        if offline and spec is not None:
            if rebuild or not offline_image_current(client, spec):
                build_offline_image(client, spec, on_progress=on_progress)
                statuses.append(ImageStatus(cls.language, spec.tag, "built"))
            else:
                statuses.append(ImageStatus(cls.language, spec.tag, "present"))
            continue
        image = runner_image(client, cls)
        if spec is not None and image == spec.tag and not offline_image_current(client, spec):
            if on_progress is not None:
                on_progress(f"{spec.tag} was built from an older spec; building it again")
            build_offline_image(client, spec, on_progress=on_progress)
            statuses.append(ImageStatus(cls.language, spec.tag, "built"))
            continue
        if image_present(client, image):
            statuses.append(ImageStatus(cls.language, image, "present"))
            continue
        try:
            ensure_image(client, image, on_progress=on_progress)
            statuses.append(ImageStatus(cls.language, image, "pulled"))
        except ImageUnavailableError:
            if offline is False or spec is None or image != cls.default_image:
                raise
            if on_progress is not None:
                on_progress(f"cannot pull {image}; building {spec.tag} offline instead")
            build_offline_image(client, spec, on_progress=on_progress)
            statuses.append(ImageStatus(cls.language, spec.tag, "built"))
    return statuses
