"""Third-party packages without network in the sandbox: derived images, built once.

A run that needs packages (``PythonDockerRunner(requirements=["numpy"])``,
``%docker_requirements python numpy``) runs in a *derived image*: the
runner's base image plus one layer holding the packages. The sandbox never
gets network, and neither does the build:

* **Python**: a short probe container (no network) reads the image's Python
  version, ABI and platform tags; the host's ``pip install --target DIR
  --python-version … --abi … --platform … --only-binary=:all:`` then fetches
  binary wheels for exactly that interpreter (no pip needed in the image);
  ``DIR`` becomes ``/opt/dockermagic/python``, on ``PYTHONPATH``.
* **JavaScript**: the host's ``npm install --ignore-scripts`` fetches the
  packages into a staging folder; its ``node_modules`` becomes ``/node_modules``,
  where both ``require`` and ``import`` find it from any folder.
* The layer is added by the engine's builder from a context tar, with
  ``network_mode="none"``: ``FROM base`` and one ``COPY``; no ``RUN``.

A derived image is tagged by a hash of (base image id, normalised
requirements, the package tool's version) — ``dockermagic/python-deps:<hash>``
— and labelled with its base and requirements, so every kernel, batch worker
and notebook asking for the same set reuses it. A file lock on the hash makes
two processes asking at once build it once; the builder tags only a finished
image, so a failed build leaves no tag behind. A package manager's failure is
one :class:`~dockermagic.errors.PackageInstallError` naming the package and
the reason.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import io
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors

from dockermagic.container import run_utility
from dockermagic.engine import engine_errors, engine_profile
from dockermagic.errors import InvalidArgumentError, PackageInstallError
from dockermagic.images import ProgressCallback, ensure_image
from dockermagic.settings import current_settings

__all__ = [
    "DERIVED_LABEL",
    "REQUIREMENTS_LABEL",
    "DerivedImage",
    "derived_image",
    "list_derived_images",
    "normalise_requirements",
    "prune_derived_images",
    "read_requirements",
]

logger = logging.getLogger(__name__)

#: Labels every derived image carries.
DERIVED_LABEL = "dockermagic.deps"
REQUIREMENTS_LABEL = "dockermagic.requirements"
BASE_LABEL = "dockermagic.base"
LANGUAGE_LABEL = "dockermagic.deps.language"

#: Where the packages live in a derived image.
PYTHON_SITE = "/opt/dockermagic/python"
NODE_MODULES = "/node_modules"

_SPEC = re.compile(r"^[A-Za-z0-9@][A-Za-z0-9._/@<>=!~*^,\[\] +-]*$")
_PY_NAME = re.compile(r"([A-Za-z0-9._-]+)")

#: base image id, requirements, tool version -> the derived image's tag (this process).
_known: dict[tuple[str, tuple[str, ...], str], str] = {}
_known_lock = threading.Lock()


@dataclass(frozen=True)
class DerivedImage:
    """A derived image as ``dockermagic images --list`` shows it.

    Attributes:
        tag: Its tag.
        language: The language it serves.
        base: The image it was built from.
        requirements: What it adds.
        size: Bytes.
        created: Unix time.
    """

    tag: str
    language: str
    base: str
    requirements: tuple[str, ...]
    size: int
    created: float


def normalise_requirements(language: str, specs: Iterable[str]) -> tuple[str, ...]:
    """Check requirement specs and put them in one canonical order.

    Args:
        language: ``"python"`` or ``"javascript"``.
        specs: ``["numpy", "matplotlib==3.*"]`` or ``["lodash@4"]``.

    Returns:
        Sorted, without duplicates or surrounding space; Python names lower-cased.

    Raises:
        InvalidArgumentError: A spec that is empty, an option (``-r``, ``--index-url``),
            or has characters no package spec has.
    """
    seen: dict[str, None] = {}
    for raw in specs:
        spec = " ".join(str(raw).split())
        if not spec:
            continue
        if spec.startswith("-") or not _SPEC.match(spec):
            raise InvalidArgumentError(
                "requirement", raw, "expected a package spec such as numpy>=1.26"
            )
        if language == "python":
            # PEP 503: names compare lower-case, with runs of -_. as one dash.
            match = _PY_NAME.match(spec)
            if match:
                name, rest = match.group(1), spec[match.end() :]
                spec = re.sub(r"[-_.]+", "-", name).lower() + rest.replace(" ", "")
        seen[spec] = None
    return tuple(sorted(seen))


def read_requirements(path: str | os.PathLike[str]) -> list[str]:
    """Specs from a ``requirements.txt`` or a ``package.json``.

    Args:
        path: The file.

    Returns:
        The specs (comments, blank lines and options dropped; a package.json's
        ``dependencies`` as ``name@range``).

    Raises:
        InvalidArgumentError: It cannot be read or parsed.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidArgumentError("requirements", str(path), exc.strerror or str(exc)) from exc
    if file.name == "package.json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise InvalidArgumentError("requirements", str(path), f"not JSON: {exc}") from exc
        deps = data.get("dependencies") or {}
        if not isinstance(deps, dict):
            raise InvalidArgumentError("requirements", str(path), "dependencies is not an object")
        return [f"{name}@{version}" for name, version in deps.items()]
    specs = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            specs.append(line)
    return specs


# -- the tools on the host ----------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _tool_version(language: str) -> str:
    # Once per process: asking npm costs a subprocess.
    if language == "python":
        from importlib.metadata import version

        return f"pip-{version('pip')}"
    npm = shutil.which("npm")
    if npm is None:
        raise PackageInstallError("", "npm is not installed on this machine (apt-get install npm)")
    done = subprocess.run([npm, "--version"], capture_output=True, text=True, check=False)
    return f"npm-{done.stdout.strip()}"


def _probe_python(client: docker.DockerClient, image: str) -> dict[str, Any]:
    """The image's Python: version, implementation, ABI, platform tags (no network)."""
    code = (
        "import json, sys\n"
        "try:\n    from packaging import tags\n"
        "except ImportError:\n    from pip._vendor.packaging import tags\n"
        "t = list(tags.sys_tags())\n"
        "print(json.dumps({'version': '%d.%d' % sys.version_info[:2], "
        "'interpreter': t[0].interpreter, 'abi': t[0].abi, "
        "'platforms': [p for p in dict.fromkeys(x.platform for x in t) if p != 'any']}))\n"
    )
    output = run_utility(client, image, ["python3", "-c", code])
    try:
        info: dict[str, Any] = json.loads(output.decode().strip().splitlines()[-1])
    except (ValueError, IndexError) as exc:
        raise PackageInstallError(
            "", f"could not read the Python of {image}: {output[-300:]!r}"
        ) from exc
    return info


# -- building -------------------------------------------------------------------------------


def derived_image(
    client: docker.DockerClient,
    base: str,
    language: str,
    requirements: Sequence[str],
    *,
    on_progress: ProgressCallback | None = None,
) -> str:
    """The image with the packages, built now if nobody built it before.

    Args:
        client: The Docker client.
        base: The runner's image.
        language: ``"python"`` or ``"javascript"``.
        requirements: Package specs (normalised here).
        on_progress: Receives progress lines while it builds.

    Returns:
        The derived image's tag (the base itself when there are no requirements).

    Raises:
        PackageInstallError: A package could not be had (with its name and why).
        InvalidArgumentError: A language without package support, a bad spec.
    """
    specs = normalise_requirements(language, requirements)
    if not specs:
        return base
    if language not in ("python", "javascript"):
        raise InvalidArgumentError("language", language, "has no package support")
    ensure_image(client, base, on_progress=on_progress)
    with engine_errors():
        base_id = str(client.images.get(base).id)
    tool = _tool_version(language)
    key = (base_id, specs, tool)
    with _known_lock:
        known = _known.get(key)
    if known is not None:
        return known
    digest = hashlib.sha256(json.dumps([base_id, specs, tool]).encode()).hexdigest()[:16]
    short = "python" if language == "python" else "node"
    tag = f"dockermagic/{short}-deps:{digest}"
    with _build_lock(digest):
        if not _present(client, tag):
            _build(client, base, language, specs, tag, on_progress)
    with _known_lock:
        _known[key] = tag
    return tag


def _present(client: docker.DockerClient, tag: str) -> bool:
    try:
        with engine_errors():
            client.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return True


@contextlib.contextmanager
def _build_lock(digest: str) -> Iterator[None]:
    folder = Path(current_settings().cache_dir) / "builds"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{digest}.lock", "w") as lock:
        # Another process building the same set: wait for it, then reuse.
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _build(
    client: docker.DockerClient,
    base: str,
    language: str,
    specs: tuple[str, ...],
    tag: str,
    on_progress: ProgressCallback | None,
) -> None:
    def report(message: str) -> None:
        logger.info("%s", message)
        if on_progress is not None:
            on_progress(message)

    started = time.monotonic()
    report(f"building {tag} from {base} with {', '.join(specs)} ...")
    with tempfile.TemporaryDirectory(prefix="dockermagic-deps-") as staging:
        root = Path(staging)
        if language == "python":
            info = _probe_python(client, base)
            _pip(root / "layer", info, specs, report)
            target, env = PYTHON_SITE, f"ENV PYTHONPATH={PYTHON_SITE}"
        else:
            _npm(root / "layer", specs, report)
            target, env = NODE_MODULES, ""
        size = sum(f.stat().st_size for f in (root / "layer").rglob("*") if f.is_file())
        report(f"fetched {size / 2**20:.1f} MiB; adding them to {base} ...")
        labels = {
            DERIVED_LABEL: "1",
            LANGUAGE_LABEL: language,
            BASE_LABEL: base,
            REQUIREMENTS_LABEL: json.dumps(list(specs)),
        }
        dockerfile = "\n".join(
            [
                f"FROM {base}",
                f"COPY layer {target}",
                env,
                *(f"LABEL {key}={json.dumps(value)}" for key, value in labels.items()),
                "",
            ]
        )
        (root / "Dockerfile").write_text(dockerfile)
        context = io.BytesIO()
        with tarfile.open(fileobj=context, mode="w") as archive:
            # Readable by the sandbox user, owned by root.
            def owned_by_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
                info.uid = info.gid = 0
                info.uname = info.gname = "root"
                info.mode = (info.mode | 0o444 | (0o111 if info.isdir() else 0)) & 0o755
                return info

            archive.add(root / "Dockerfile", "Dockerfile", filter=owned_by_root)
            archive.add(root / "layer", "layer", filter=owned_by_root)
        context.seek(0)
        try:
            with engine_errors():
                client.images.build(
                    fileobj=context,
                    custom_context=True,
                    tag=tag,
                    network_mode="none",
                    pull=False,
                    rm=True,
                    forcerm=True,
                )
        except docker.errors.BuildError as exc:
            raise PackageInstallError("", f"the image build failed: {exc.msg}") from exc
        except docker.errors.APIError as exc:
            raise PackageInstallError(
                "", f"the engine refused the build: {exc.explanation}"
            ) from exc
    report(f"built {tag} in {time.monotonic() - started:.1f} s")


#: Lines of pip and npm worth showing while they work.
_PROGRESS_LINES = ("Collecting", "Downloading", "Installing", "added ", "Successfully")


def _run_tool(command: list[str], report: ProgressCallback, cwd: Path | None = None) -> str:
    lines: list[str] = []
    with subprocess.Popen(
        command,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={
            **os.environ,
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "npm_config_update_notifier": "false",
        },
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            line = line.rstrip()
            lines.append(line)
            if line.startswith(_PROGRESS_LINES):
                report(line[:160])
    output = "\n".join(lines)
    if process.returncode != 0:
        raise _install_error(output)
    return output


def _pip(
    layer: Path, info: dict[str, Any], specs: tuple[str, ...], report: ProgressCallback
) -> None:
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--target",
        str(layer),
        "--only-binary=:all:",
        "--no-compile",
        "--retries",
        "1",
        "--timeout",
        "20",
        "--python-version",
        info["version"],
        "--implementation",
        info["interpreter"][:2],
        "--abi",
        info["abi"],
    ]
    for platform in info["platforms"]:
        command += ["--platform", platform]
    _run_tool([*command, *specs], report)
    # Console scripts would name the host's interpreter: they mean nothing in the image.
    shutil.rmtree(layer / "bin", ignore_errors=True)


def _npm(layer: Path, specs: tuple[str, ...], report: ProgressCallback) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise PackageInstallError("", "npm is not installed on this machine (apt-get install npm)")
    work = layer.parent / "npm"
    work.mkdir(parents=True)
    (work / "package.json").write_text('{"name": "dockermagic-deps", "private": true}')
    _run_tool(
        [
            npm,
            "install",
            "--ignore-scripts",
            "--no-audit",
            "--no-fund",
            "--omit=dev",
            "--fetch-retries=1",
            "--no-package-lock",
            *specs,
        ],
        report,
        cwd=work,
    )
    shutil.move(str(work / "node_modules"), str(layer))


_PIP_PACKAGE = re.compile(
    r"(?:No matching distribution found for|Could not find a version that satisfies the "
    r"requirement)\s+([^\s(]+)"
)
_NPM_PACKAGE = re.compile(r"(?:404 Not Found - GET \S+/|No matching version found for )([^\s/]+)")


def _install_error(output: str) -> PackageInstallError:
    """One clear error from a package manager's output."""
    text = output.strip()
    package = ""
    for pattern in (_PIP_PACKAGE, _NPM_PACKAGE):
        match = pattern.search(text)
        if match:
            package = match.group(1).rstrip(".")
            break
    if re.search(r"Invalid requirement|Invalid version|Invalid tag name|EINVALIDTAGNAME", text):
        reason = "the version spec is not valid"
        found = re.search(r"Invalid requirement: '([^']+)'", text)
        package = package or (found.group(1) if found else "")
    elif re.search(
        r"NewConnectionError|Failed to establish|ConnectionError|ENOTFOUND|ECONNREFUSED|"
        r"EAI_AGAIN|Network is unreachable|Max retries exceeded|ETIMEDOUT",
        text,
    ):
        reason = "the package index cannot be reached from this machine"
    elif "404" in text or "E404" in text:
        reason = "no such package on the registry"
    elif "No matching version" in text or "ETARGET" in text:
        reason = "no version matches the spec"
    elif "No matching distribution" in text or "Could not find a version" in text:
        reason = "no such package, or no binary wheel for the image's Python and platform"
    else:
        tail = [line for line in text.splitlines() if line.strip()][-1:] or ["failed"]
        reason = tail[0][:300]
    return PackageInstallError(package, reason)


# -- housekeeping ---------------------------------------------------------------------------


def list_derived_images(client: docker.DockerClient) -> list[DerivedImage]:
    """Every derived image on the engine.

    Args:
        client: The Docker client.

    Returns:
        Newest first.
    """
    with engine_errors():
        images = client.images.list(filters={"label": DERIVED_LABEL})
    # Podman names a built image "docker.io/<tag>": show the tag it was built as.
    profile = engine_profile(client)
    found = []
    for image in images:
        labels = image.labels or {}
        try:
            requirements = tuple(json.loads(labels.get(REQUIREMENTS_LABEL, "[]")))
        except ValueError:
            requirements = ()
        created = image.attrs.get("Created", "")
        for tag in image.tags or [image.short_id]:
            found.append(
                DerivedImage(
                    tag=profile.image_name(tag),
                    language=labels.get(LANGUAGE_LABEL, ""),
                    base=labels.get(BASE_LABEL, ""),
                    requirements=requirements,
                    size=int(image.attrs.get("Size", 0)),
                    created=_timestamp(created),
                )
            )
    return sorted(found, key=lambda d: d.created, reverse=True)


def _timestamp(text: str) -> float:
    from datetime import datetime

    try:
        return datetime.fromisoformat(text[:26].rstrip("Z") + "+00:00").timestamp()
    except ValueError:
        return 0.0


def prune_derived_images(client: docker.DockerClient, *, older_than_days: float = 0.0) -> list[str]:
    """Remove derived images no container uses (running or not).

    Args:
        client: The Docker client.
        older_than_days: Only those created longer ago.

    Returns:
        The removed tags.
    """
    cutoff = time.time() - older_than_days * 86400
    removed = []
    for image in list_derived_images(client):
        if image.created > cutoff:
            continue
        try:
            with engine_errors():
                # Without force the engine refuses an image a container uses.
                client.images.remove(image.tag, noprune=False)
        except docker.errors.APIError as exc:
            logger.info("kept %s: %s", image.tag, exc.explanation)
            continue
        removed.append(image.tag)
    with _known_lock:
        _known.clear()
    return removed
