"""The runners: :class:`AbstractDockerCodeRunner` and one subclass per language.

A language is a table entry: a subclass fills in class attributes (name,
aliases, file suffixes, default image, file name, offline image) and answers
two questions only it can answer (:meth:`~AbstractDockerCodeRunner.command`,
:meth:`~AbstractDockerCodeRunner.environment`); :func:`register_runner` adds it
to the registry that :func:`get_runner`, the magics and the batch runner read.

One run is one container, driven through the Docker SDK::

    create -> put_archive(code) -> attach (one multiplexed socket) -> start
      -> drain output (watchdog kills at the deadline; cap kills on flood)
      -> inspect (exit code, OOMKilled) -> remove, always, in ``finally``
"""

from __future__ import annotations

import abc
import contextlib
import io
import logging
import os
import socket
import tarfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

import docker
import docker.errors
import docker.models.containers
from docker.types import Mount

from dockermagic.cleanup import container_labels, new_container_name
from dockermagic.engine import default_client, engine_errors
from dockermagic.errors import InvalidArgumentError, SandboxError
from dockermagic.images import (
    OfflineImage,
    ProgressCallback,
    ensure_image,
    forget_image,
    runner_image,
)
from dockermagic.policy import CODE_DIR, SandboxPolicy
from dockermagic.result import RunResult
from dockermagic.streams import FrameDecoder, OutputCallback, OutputCollector

__all__ = [
    "AbstractDockerCodeRunner",
    "JavaScriptDockerRunner",
    "PythonDockerRunner",
    "get_runner",
    "register_runner",
    "runner_class_for",
    "runner_classes",
]

logger = logging.getLogger(__name__)

#: How often the drain loop wakes up to notice Ctrl-C, cancellation and a
#: deadline that the watchdog somehow missed.
_POLL_SECONDS = 0.1
#: Extra seconds past the deadline before the drain loop gives up on the stream.
_DEADLINE_GRACE = 2.0


class AbstractDockerCodeRunner(abc.ABC):
    """Runs source code of one language in a fresh, locked-down container.

    Subclasses declare the language through class attributes and implement
    :meth:`command` and :meth:`environment`.

    Args:
        image: The image to use; by default the runner's environment variable,
            the official image, or the offline build (see :mod:`dockermagic.images`).
        policy: Limits and hardening; :meth:`SandboxPolicy.default` when None.
        client: A Docker client; the process's shared client when None.
        on_progress: Receives image pull progress lines.
    """

    #: The language's canonical name, e.g. ``"python"``.
    language: ClassVar[str]
    #: Other names accepted by :func:`get_runner`, e.g. ``("py",)``.
    aliases: ClassVar[tuple[str, ...]] = ()
    #: File suffixes this runner runs, e.g. ``(".py",)``.
    suffixes: ClassVar[tuple[str, ...]] = ()
    #: The official image used when nothing else is configured.
    default_image: ClassVar[str]
    #: The environment variable that overrides :attr:`default_image`.
    image_env_var: ClassVar[str]
    #: The file name source code passed to :meth:`run` is saved as.
    filename: ClassVar[str]
    #: How to build an image offline; None when this language cannot.
    offline_image: ClassVar[OfflineImage | None] = None

    def __init__(
        self,
        *,
        image: str | None = None,
        policy: SandboxPolicy | None = None,
        client: docker.DockerClient | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        self.policy = policy if policy is not None else SandboxPolicy.default()
        self._explicit_image = image
        self._image: str | None = None
        self._client = client
        self.on_progress = on_progress

    def __repr__(self) -> str:
        image = self._image or self._explicit_image or "auto"
        return f"{type(self).__name__}(image={image!r})"

    # -- what a language must answer -------------------------------------------------

    @abc.abstractmethod
    def command(self, path: str) -> list[str]:
        """The argv that runs the program saved at ``path`` in the container.

        Args:
            path: Absolute path of the program file inside the container.

        Returns:
            The command, e.g. ``["python3", path]``.
        """

    @abc.abstractmethod
    def environment(self) -> dict[str, str]:
        """The environment variables the language needs (and nothing else).

        Returns:
            Variable names and values.
        """

    def support_files(self) -> dict[str, bytes]:
        """Files the language needs next to every program (e.g. a preload).

        Returns:
            Relative path (under the code directory) -> content; none by default.
        """
        return {}

    # -- public API -------------------------------------------------------------------

    @property
    def client(self) -> docker.DockerClient:
        """The Docker client (the process's shared one unless injected)."""
        if self._client is None:
            self._client = default_client()
        return self._client

    @property
    def image(self) -> str:
        """The image this runner uses (resolved on first access)."""
        if self._image is None:
            self._image = runner_image(self.client, self, self._explicit_image)
        return self._image

    def run(
        self,
        code: str | bytes,
        *,
        timeout: float | None = None,
        stdin: str | bytes | None = None,
        on_output: OutputCallback | None = None,
        files: Mapping[str, str | bytes] | None = None,
        filename: str | None = None,
        cancel: threading.Event | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> RunResult:
        """Run source code in a new container and return what happened.

        A failing program (syntax error, exception, non-zero exit, timeout,
        out-of-memory, output flood) is a result, not an exception.

        Args:
            code: The program's source.
            timeout: Wall-clock seconds; the policy's timeout when None.
            stdin: Data for the program's standard input (closed after it);
                when None the program reads end-of-file at once.
            on_output: Called as ``on_output(stream, text)`` with each chunk of
                output while the program runs, in the order it was produced.
            files: Extra files (relative path -> content) copied next to the
                program, read-only.
            filename: The program's file name; :attr:`filename` when None.
            cancel: When this event is set, the container is killed and the
                result marked ``cancelled``.
            labels: Extra container labels (e.g. a batch id).

        Returns:
            The :class:`RunResult`.

        Raises:
            EngineUnavailableError: No engine answers.
            ImageUnavailableError: The image is missing and cannot be pulled.
            InvalidArgumentError: A bad timeout, file name or stdin.
            SandboxError: The container vanished or could not be created.
        """
        source = code.encode("utf-8") if isinstance(code, str) else code
        name = filename or self.filename
        program = {**self.support_files(), name: source}
        for rel, content in (files or {}).items():
            program[rel] = content.encode("utf-8") if isinstance(content, str) else content
        return self._execute(
            program,
            entry=name,
            timeout=timeout,
            stdin=stdin,
            on_output=on_output,
            cancel=cancel,
            labels=labels,
        )

    def run_file(
        self,
        path: str | os.PathLike[str],
        *,
        timeout: float | None = None,
        stdin: str | bytes | None = None,
        on_output: OutputCallback | None = None,
        files: Mapping[str, str | bytes] | None = None,
        include: Iterable[str | os.PathLike[str]] = (),
        cancel: threading.Event | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> RunResult:
        """Run an existing script file under its own name.

        Args:
            path: The script on the host.
            timeout: See :meth:`run`.
            stdin: See :meth:`run`.
            on_output: See :meth:`run`.
            files: See :meth:`run`.
            include: Host files or folders copied next to the script (a folder
                keeps its name), so a script can read inputs from its own folder.
            cancel: See :meth:`run`.
            labels: See :meth:`run`.

        Returns:
            The :class:`RunResult`.

        Raises:
            InvalidArgumentError: The file does not exist or is not readable.
        """
        script = Path(path)
        try:
            source = script.read_bytes()
        except OSError as exc:
            raise InvalidArgumentError("script", str(path), exc.strerror or str(exc)) from exc
        extra: dict[str, str | bytes] = dict(files or {})
        for item in include:
            extra.update(_read_tree(Path(item)))
        return self.run(
            source,
            timeout=timeout,
            stdin=stdin,
            on_output=on_output,
            files=extra,
            filename=script.name,
            cancel=cancel,
            labels=labels,
        )

    # -- the container lifecycle --------------------------------------------------------

    def _execute(
        self,
        program: Mapping[str, bytes],
        *,
        entry: str,
        timeout: float | None,
        stdin: str | bytes | None,
        on_output: OutputCallback | None,
        cancel: threading.Event | None,
        labels: Mapping[str, str] | None,
    ) -> RunResult:
        limit = self.policy.timeout if timeout is None else timeout
        if not isinstance(limit, (int, float)) or isinstance(limit, bool) or limit <= 0:
            raise InvalidArgumentError("timeout", timeout, "must be a positive number of seconds")
        archive = _tar(program)
        stdin_bytes = stdin.encode("utf-8") if isinstance(stdin, str) else stdin
        name = new_container_name()
        image = self.image
        container: str | None = None  # the container's id once created
        watchdog: _Watchdog | None = None
        sock: Any = None
        try:
            container = self._create(image, name, entry, stdin_bytes is not None, labels)
            with engine_errors():
                self.client.api.put_archive(container, CODE_DIR, archive)
                sock = self.client.api.attach_socket(
                    container,
                    params={
                        "stdin": int(stdin_bytes is not None),
                        "stdout": 1,
                        "stderr": 1,
                        "stream": 1,
                    },
                )
                raw = _raw_socket(sock)
                self.client.api.start(container)
            started = time.monotonic()
            watchdog = _Watchdog(self.client, container, limit)
            if stdin_bytes is not None:
                _feed_stdin(raw, stdin_bytes)
            collector = OutputCollector(self.policy.output_limit, on_output)
            cancelled = self._drain(raw, collector, watchdog, cancel, started + limit)
            duration = time.monotonic() - started
            # Close now, not in finally: after a flood or a cancel the engine
            # would otherwise block writing to a socket nobody reads, and the
            # container's exit (and our inspect) would wait for it.
            _close_quietly(sock)
            sock = None
            watchdog.cancel()
            collector.finish()
            state = self._final_state(container, name)
            result = RunResult(
                language=self.language,
                image=image,
                exit_code=int(state.get("ExitCode", -1)),
                stdout=collector.text("stdout"),
                stderr=collector.text("stderr"),
                duration=duration,
                timed_out=watchdog.fired and not cancelled,
                oom_killed=bool(state.get("OOMKilled")),
                output_truncated=collector.truncated,
                cancelled=cancelled,
                container_name=name,
            )
            logger.debug(
                "%s finished: %s (%.3f s)",
                name,
                result.status,
                duration,
                extra={"container": name, "language": self.language},
            )
            return result
        finally:
            if watchdog is not None:
                watchdog.cancel()
            if sock is not None:
                _close_quietly(sock)
            if container is not None:
                _remove(self.client, container)

    def _create(
        self,
        image: str,
        name: str,
        entry: str,
        with_stdin: bool,
        labels: Mapping[str, str] | None,
        overrides: Mapping[str, Any] | None = None,
    ) -> Any:
        # ``overrides`` replaces create() arguments last: a session's warm
        # container (dockermagic.sessions) has its own command and user.
        path = str(PurePosixPath(CODE_DIR) / entry)
        kwargs: dict[str, Any] = {
            "command": self.command(path),
            "name": name,
            "labels": container_labels(self.language, **dict(labels or {})),
            "environment": self.environment(),
            "stdin_open": with_stdin,
            # A per-container volume is the one place put_archive may write
            # while the root filesystem is read-only; root-owned, it is
            # read-only for the sandbox user. Removed with the container (v=True).
            "mounts": [Mount(CODE_DIR, None, type="volume")],
            **self.policy.create_kwargs(),
            **dict(overrides or {}),
        }
        # The low-level call skips the inspect that containers.create() makes
        # to build a model object we do not need (one round trip per run).
        create_args = _create_container_args(
            {"image": image, "version": self.client.api.api_version, **kwargs}
        )
        for attempt in (1, 2):
            ensure_image(self.client, image, on_progress=self.on_progress)
            try:
                with engine_errors():
                    created = self.client.api.create_container(**create_args)
                return str(created["Id"])
            except docker.errors.ImageNotFound:
                # Deleted behind our back since it was cached: pull once more.
                forget_image(self.client, image)
                if attempt == 2:
                    raise
            except docker.errors.APIError as exc:
                raise SandboxError(
                    f"Could not create a container from {image}: {exc.explanation}", container=name
                ) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _drain(
        self,
        raw: Any,
        collector: OutputCollector,
        watchdog: _Watchdog,
        cancel: threading.Event | None,
        deadline: float,
    ) -> bool:
        """Read the attach stream to its end. Returns True when cancelled."""
        decoder = FrameDecoder()
        raw.settimeout(_POLL_SECONDS)
        while True:
            try:
                data = raw.recv(65536)
            except TimeoutError:
                # Waking up here lets Ctrl-C (raised between bytecodes) through
                # even when the program prints nothing.
                # We stop reading from here on, so close the stream before the
                # kill (see _Watchdog.overflow).
                if cancel is not None and cancel.is_set():
                    watchdog.overflow(raw)
                    return True
                if time.monotonic() > deadline + _DEADLINE_GRACE:
                    # The watchdog fired but the stream did not end (engine
                    # stuck): stop reading; the container is removed anyway.
                    watchdog.fired = True
                    watchdog.overflow(raw)
                    return False
                continue
            except OSError:
                return False  # connection dropped; _final_state checks the exit
            if not data:
                return False
            for stream, payload in decoder.feed(data):
                if not collector.add(stream, payload):
                    # Output flood: stop the program and stop reading, so the
                    # parent's memory stays bounded (pitfall 7).
                    watchdog.overflow(raw)
                    return False

    def _final_state(self, container: str, name: str) -> dict[str, Any]:
        # The stream can end before the engine records the exit, and a dropped
        # connection also looks like an end of stream (pitfall 9): confirm.
        try:
            with engine_errors():
                state: dict[str, Any] = self.client.api.inspect_container(container)["State"]
                if state.get("Running"):
                    self.client.api.wait(container, timeout=30)
                    state = self.client.api.inspect_container(container)["State"]
        except docker.errors.NotFound as exc:
            raise SandboxError("The container disappeared while running", container=name) from exc
        return state


class _Watchdog:
    """Kills a container at a wall-clock deadline (``wait(timeout)`` does not, pitfall 3)."""

    def __init__(self, client: docker.DockerClient, container_id: str, seconds: float) -> None:
        self.client = client
        self.container_id = container_id
        self.fired = False
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def _expire(self) -> None:
        self.fired = True
        self.kill_now()

    def overflow(self, raw: Any) -> None:
        """Stop a program whose output exceeded the cap; ``raw`` is its stream."""
        # Close the stream first: the engine does not finish a kill while
        # output it still holds waits for a reader, and kill() would hang
        # until the HTTP timeout.
        _close_quietly(raw)
        self.kill_now()

    def kill_now(self) -> None:
        try:
            self.client.api.kill(self.container_id)
        except docker.errors.APIError:
            pass  # already exited or removed
        except Exception:  # the engine vanished; the finally-block reports it
            logger.debug("kill of %s failed", self.container_id, exc_info=True)

    def cancel(self) -> None:
        self._timer.cancel()


def _tar(files: Mapping[str, bytes]) -> bytes:
    """A tar archive of the program's files (root-owned, read-only)."""
    buffer = io.BytesIO()
    now = time.time()
    dirs: set[str] = set()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for rel, content in sorted(files.items()):
            clean = _safe_relative(rel)
            for parent in reversed(PurePosixPath(clean).parents[:-1]):
                if str(parent) not in dirs:
                    dirs.add(str(parent))
                    info = tarfile.TarInfo(str(parent))
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o555, now
                    archive.addfile(info)
            info = tarfile.TarInfo(clean)
            info.size, info.mode, info.mtime = len(content), 0o444, now
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _safe_relative(rel: str) -> str:
    path = PurePosixPath(rel.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or not path.parts or str(path) == ".":
        raise InvalidArgumentError("file name", rel, "must be a relative path inside the sandbox")
    return str(path)


def _read_tree(root: Path) -> dict[str, bytes]:
    if root.is_file():
        return {root.name: root.read_bytes()}
    if not root.is_dir():
        raise InvalidArgumentError("include", str(root), "no such file or folder")
    return {
        str(PurePosixPath(root.name, *p.relative_to(root).parts)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _raw_socket(sock: Any) -> Any:
    # docker-py returns a SocketIO for unix sockets; a SocketIO that saw a
    # timeout refuses further reads, so use the socket underneath.
    return getattr(sock, "_sock", sock)


def _feed_stdin(raw: Any, data: bytes) -> None:
    def feed() -> None:
        try:
            raw.sendall(data)
            # Half-close: with StdinOnce the engine then closes the program's stdin.
            raw.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the program exited without reading it all

    threading.Thread(target=feed, name="dockermagic-stdin", daemon=True).start()


def _close_quietly(sock: Any) -> None:
    raw = _raw_socket(sock)
    # shutdown() ends the connection at once; close() alone leaves the fd open
    # while the HTTP response's makefile() wrapper still refers to it, and the
    # engine would keep blocking on writes nobody reads.
    with contextlib.suppress(Exception):
        raw.shutdown(socket.SHUT_RDWR)
    for thing in (raw, sock):
        with contextlib.suppress(Exception):  # best effort: the container goes anyway
            thing.close()


def _remove(client: docker.DockerClient, container_id: str) -> None:
    """Remove a container, even if Ctrl-C arrives meanwhile.

    The removal runs in its own thread: a KeyboardInterrupt in the caller stops
    the join, never the removal.
    """

    def remove() -> None:
        for _ in range(3):
            try:
                client.api.remove_container(container_id, force=True, v=True)
                return
            except docker.errors.NotFound:
                return
            except docker.errors.APIError as exc:
                if "already in progress" in str(exc):
                    return
                logger.warning("removing %s failed, retrying: %s", container_id[:12], exc)
                time.sleep(0.2)
            except Exception:
                logger.warning("removing %s failed", container_id[:12], exc_info=True)
                return

    worker = threading.Thread(target=remove, name="dockermagic-remove")
    worker.start()
    worker.join()


# -- languages ---------------------------------------------------------------------------


#: docker-py's own split of ``containers.create()`` keywords into the config and
#: host config of the low-level call (private, but unchanged since docker-py 2).
_create_container_args: Callable[[dict[str, Any]], dict[str, Any]] = (
    docker.models.containers._create_container_args  # type: ignore[attr-defined]
)

_registry: dict[str, type[AbstractDockerCodeRunner]] = {}

RunnerClass = type[AbstractDockerCodeRunner]


def register_runner(cls: RunnerClass) -> RunnerClass:
    """Add a runner class to the registry (usable as a class decorator).

    Args:
        cls: A concrete subclass of :class:`AbstractDockerCodeRunner`.

    Returns:
        The class, unchanged.

    Raises:
        InvalidArgumentError: When the class is abstract or lacks a declaration.
    """
    if abc.ABC in cls.__bases__ or getattr(cls, "__abstractmethods__", None):
        raise InvalidArgumentError("runner", cls.__name__, "is abstract")
    for attr in ("language", "default_image", "image_env_var", "filename"):
        if not getattr(cls, attr, None):
            raise InvalidArgumentError("runner", cls.__name__, f"does not declare {attr!r}")
    _registry[cls.language] = cls
    return cls


def unregister_runner(language: str) -> None:
    """Remove a language from the registry (for tests and plug-ins).

    Args:
        language: The canonical language name.
    """
    _registry.pop(language, None)


def runner_classes() -> list[RunnerClass]:
    """The registered runner classes, in registration order.

    Returns:
        The classes.
    """
    return list(_registry.values())


def runner_class_for(language_or_path: str | os.PathLike[str]) -> RunnerClass:
    """Find the runner class for a language name, alias, or file path.

    Args:
        language_or_path: ``"python"``, ``"js"``, ``"scripts/job.mjs"``...

    Returns:
        The runner class.

    Raises:
        InvalidArgumentError: When no registered runner matches.
    """
    key = os.fspath(language_or_path)
    lowered = key.lower().strip()
    for cls in _registry.values():
        if lowered == cls.language or lowered in cls.aliases:
            return cls
    suffix = PurePosixPath(lowered.replace("\\", "/")).suffix
    if suffix:
        for cls in _registry.values():
            if suffix in cls.suffixes:
                return cls
    known = ", ".join(sorted(c.language for c in _registry.values()))
    raise InvalidArgumentError("language", key, f"no runner for it (known: {known})")


def get_runner(language_or_path: str | os.PathLike[str], **kwargs: Any) -> AbstractDockerCodeRunner:
    """Make a runner for a language name, alias, or file path.

    Args:
        language_or_path: See :func:`runner_class_for`.
        **kwargs: Passed to the runner's constructor (``image``, ``policy``...).

    Returns:
        A runner instance.
    """
    return runner_class_for(language_or_path)(**kwargs)


@register_runner
class PythonDockerRunner(AbstractDockerCodeRunner):
    """Runs Python 3 code."""

    language = "python"
    aliases = ("py", "python3")
    suffixes = (".py",)
    default_image = "python:3.12-slim"
    image_env_var = "DOCKERMAGIC_PYTHON_IMAGE"
    filename = "main.py"
    offline_image = OfflineImage(
        tag="dockermagic/python:offline",
        # python3 brings the whole standard library (multiprocessing, gzip...);
        # pytest lets the teaching notebooks run tests inside the sandbox.
        packages=("python3", "python3-pytest"),
        hooks=('ln -sf python3 "$1/usr/bin/python"',),
        cmd=("python3",),
    )

    def command(self, path: str) -> list[str]:
        """Run the file with the image's ``python3``."""
        return ["python3", path]

    def environment(self) -> dict[str, str]:
        """Unbuffered UTF-8 output, no bytecode files, HOME in the work dir."""
        return {
            # Block-buffered stdout loses output on a timeout kill (pitfall 12).
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUTF8": "1",
            "HOME": self.policy.workdir,
        }


_NODE_PRELOAD = ".dockermagic/stdio.js"
_NODE_STDIO_PRELOAD = b"""\
for (const stream of [process.stdout, process.stderr]) {
  if (stream._handle && typeof stream._handle.setBlocking === "function") {
    stream._handle.setBlocking(true);
  }
}
"""


@register_runner
class JavaScriptDockerRunner(AbstractDockerCodeRunner):
    """Runs JavaScript with Node.js (``.mjs`` as an ES module, ``.cjs``/``.js`` as CommonJS)."""

    language = "javascript"
    aliases = ("js", "node", "nodejs")
    suffixes = (".js", ".mjs", ".cjs")
    default_image = "node:22-slim"
    image_env_var = "DOCKERMAGIC_JS_IMAGE"
    filename = "main.js"
    offline_image = OfflineImage(
        tag="dockermagic/node:offline",
        packages=("nodejs",),
        cmd=("node",),
    )

    def command(self, path: str) -> list[str]:
        """Run the file with ``node``, after the stdio preload."""
        return ["node", "--require", f"{CODE_DIR}/{_NODE_PRELOAD}", path]

    def support_files(self) -> dict[str, bytes]:
        """A preload that makes stdout/stderr blocking.

        Node writes to pipes asynchronously here, so ``process.exit()`` right
        after a large write dropped everything past the first 64 KiB (pitfall
        12). Blocking writes keep it all.
        """
        return {_NODE_PRELOAD: _NODE_STDIO_PRELOAD}

    def environment(self) -> dict[str, str]:
        """No colour codes in captured output, HOME in the work dir."""
        return {"NODE_DISABLE_COLORS": "1", "HOME": self.policy.workdir}
