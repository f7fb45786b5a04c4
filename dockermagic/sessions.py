"""Warm containers: :class:`Session` and :class:`SessionManager`.

A session keeps one long-lived container per (name, language), created with the
runner's :class:`~dockermagic.policy.SandboxPolicy`, and runs each program in it
with ``docker exec`` instead of creating a container per run. Files a program
writes to the working directory are there for the next one::

    create (keeper process under init) -> start            once per session
    put_archive(/code/cell-N/...) -> exec_create -> exec_start(socket)
      -> drain output (watchdog kills at the deadline) -> exec_inspect    per run
    remove(force, volumes)                                 on stop()

Killing an exec's client does not kill its process (pitfall 4), so stopping a
run kills *inside* the container: the keeper runs under a uid of its own, and
``kill -KILL -1`` executed as the sandbox user ends every process of that user
(the program and anything it spawned) but neither init nor the keeper.

A session whose container died (out of memory, engine restarted, removed by
hand) is recreated on the next run with a :class:`SessionRestartedWarning`.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import re
import threading
import time
import warnings
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

import docker
import docker.errors

from dockermagic.cleanup import new_container_name
from dockermagic.engine import engine_errors
from dockermagic.errors import InvalidArgumentError, SandboxError
from dockermagic.policy import CODE_DIR, SandboxPolicy
from dockermagic.result import RunResult
from dockermagic.runners import (
    AbstractDockerCodeRunner,
    _close_quietly,
    _feed_stdin,
    _raw_socket,
    _remove,
    _tar,
    _Watchdog,
    get_runner,
    runner_class_for,
)
from dockermagic.streams import OutputCallback, OutputCollector

__all__ = [
    "LABEL_SESSION",
    "Session",
    "SessionManager",
    "SessionRestartedWarning",
]

logger = logging.getLogger(__name__)

#: The label that names a container's session.
LABEL_SESSION = "dockermagic.session"

#: The warm container's own process: it only has to stay alive. Under the
#: policy's init (``init=True``) it is PID 2; init reaps the programs' orphans.
KEEPER_COMMAND = ("sleep", "infinity")

#: Ends every process of the calling (sandbox) user except the caller itself.
#: A shell builtin, so images without procps work too.
_KILL_COMMAND = ("sh", "-c", "kill -s KILL -- -1")

#: The OOM-kill counter of the container's cgroup (v2, then v1 layout).
_OOM_COMMAND = (
    "sh",
    "-c",
    "cat /sys/fs/cgroup/memory.events /sys/fs/cgroup/memory/memory.oom_control 2>/dev/null",
)
_OOM_RE = re.compile(r"^oom_kill\s+(\d+)\s*$", re.MULTILINE)

#: Seconds the in-container kill may take before the whole container is killed.
_KILL_WAIT = 2.0
#: Seconds to wait for the engine to record an exec's exit after its stream ended.
_EXIT_WAIT = 5.0

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


class SessionRestartedWarning(UserWarning):
    """A session's container had died and a new one replaced it (files are lost)."""


def _keeper_user(user: str) -> str:
    """A uid for the keeper process that differs from the sandbox user's.

    ``kill -1`` as the sandbox user must not reach the keeper, so it runs under
    a neighbouring unprivileged uid with the same group.
    """
    uid, _, gid = user.partition(":")
    keeper = "65533" if uid != "65533" else "65532"
    return f"{keeper}:{gid or uid}"


class Session:
    """One warm container of one language, reused by every run.

    Created lazily by the first :meth:`run` (or :meth:`start`); use
    :class:`SessionManager` to share sessions by name.

    Args:
        name: The session's name (letters, digits, ``_.-``).
        runner: Supplies the language's command, environment, image, policy
            and client.
    """

    def __init__(self, name: str, runner: AbstractDockerCodeRunner) -> None:
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise InvalidArgumentError(
                "session name", name, "use letters, digits, '_', '.' or '-' (up to 63)"
            )
        self.name = name
        self.runner = runner
        self.container_name = ""
        self.container_id: str | None = None
        self.runs = 0
        self.created_at = 0.0
        self._lock = threading.RLock()
        self._oom_kills = 0
        self._stopped = False

    def __repr__(self) -> str:
        state = "alive" if self.container_id and not self._stopped else "not started"
        return f"Session({self.name!r}, {self.language!r}, {state})"

    @property
    def language(self) -> str:
        """The runner's language."""
        return self.runner.language

    @property
    def client(self) -> docker.DockerClient:
        """The runner's Docker client."""
        return self.runner.client

    @property
    def policy(self) -> SandboxPolicy:
        """The runner's policy (its timeout and output cap apply per run)."""
        return self.runner.policy

    @property
    def alive(self) -> bool:
        """Whether the warm container exists and is running (asks the engine)."""
        if self.container_id is None:
            return False
        try:
            with engine_errors():
                state = self.client.api.inspect_container(self.container_id)["State"]
        except docker.errors.NotFound:
            return False
        return bool(state.get("Running")) and not state.get("Restarting")

    def start(self) -> None:
        """Create and start the warm container if it is not running.

        A container that died since the last run is removed and replaced, with
        a :class:`SessionRestartedWarning`.

        Raises:
            EngineUnavailableError: No engine answers.
            ImageUnavailableError: The image is missing and cannot be pulled.
            SandboxError: The container could not be created or started.
        """
        with self._lock:
            self._stopped = False
            if self.container_id is not None:
                if self.alive:
                    return
                reason = self._death_reason()
                _remove(self.client, self.container_id)
                self.container_id = None
                warnings.warn(
                    f"session {self.name!r} ({self.language}) had stopped ({reason}); "
                    "started a new one: files written by earlier runs are gone",
                    SessionRestartedWarning,
                    stacklevel=3,
                )
            self._create()

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
    ) -> RunResult:
        """Run source code in the warm container; same contract as the runner's ``run``.

        The program's files go to a fresh folder ``/code/cell-N/``; its working
        directory (the policy's ``workdir``) is shared by all runs of the session.

        Args:
            code: The program's source.
            timeout: Wall-clock seconds; the policy's timeout when None. At the
                deadline the program's processes are killed, the session stays.
            stdin: Data for the program's standard input.
            on_output: Called as ``on_output(stream, text)`` while the program runs.
            files: Extra files (relative path -> content) next to the program.
            filename: The program's file name; the runner's default when None.
            cancel: When set, the program is killed and the result marked cancelled.

        Returns:
            The :class:`RunResult` (``container_name`` is the session's container).

        Raises:
            EngineUnavailableError: No engine answers.
            InvalidArgumentError: A bad timeout, file name or stdin.
            SandboxError: The session's container vanished during the run.
        """
        limit = self.policy.timeout if timeout is None else timeout
        if not isinstance(limit, (int, float)) or isinstance(limit, bool) or limit <= 0:
            raise InvalidArgumentError("timeout", timeout, "must be a positive number of seconds")
        source = code.encode("utf-8") if isinstance(code, str) else code
        stdin_bytes = stdin.encode("utf-8") if isinstance(stdin, str) else stdin
        with self._lock:
            self.start()
            self.runs += 1
            folder = PurePosixPath(CODE_DIR, f"cell-{self.runs}")
            entry = filename or self.runner.filename
            program = {entry: source}
            for rel, content in (files or {}).items():
                program[rel] = content.encode("utf-8") if isinstance(content, str) else content
            archive = _tar({f"{folder.name}/{rel}": data for rel, data in program.items()})
            return self._exec(archive, str(folder / entry), limit, stdin_bytes, on_output, cancel)

    def stop(self) -> None:
        """Remove the warm container (and its volume). Safe to call twice."""
        with self._lock:
            self._stopped = True
            if self.container_id is not None:
                _remove(self.client, self.container_id)
                logger.info(
                    "stopped session %s (%s), container %s",
                    self.name,
                    self.language,
                    self.container_name,
                    extra={"container": self.container_name, "language": self.language},
                )
            self.container_id = None

    def kill_programs(self, *, wait: bool = True) -> bool:
        """Kill every program running in the session (the container stays).

        Args:
            wait: Wait until the kill is confirmed (else only start it). Do not
                wait while a program's output stream is left unread: the engine
                confirms nothing in the container until that stream is drained.

        Returns:
            True when the kill was confirmed (or started, without ``wait``);
            False when that failed and the whole container was killed instead
            (the next run starts a new one).
        """
        container_id = self.container_id
        if container_id is None:
            return True
        api = self.client.api
        try:
            exec_id = api.exec_create(container_id, list(_KILL_COMMAND), user=self.policy.user)[
                "Id"
            ]
            api.exec_start(exec_id, detach=True)
            if not wait:
                return True
            deadline = time.monotonic() + _KILL_WAIT
            while time.monotonic() < deadline:
                info = api.exec_inspect(exec_id)
                if not info.get("Running") and info.get("ExitCode") is not None:
                    if info.get("ExitCode") == 0:
                        return True
                    break
                time.sleep(0.02)
        except docker.errors.APIError:
            pass
        except Exception:  # the engine vanished; the run reports that
            logger.debug("killing programs in %s failed", self.container_name, exc_info=True)
        # No exec possible (e.g. the pids limit is exhausted by a fork bomb):
        # kill the container; start() notices and recreates it.
        self._kill_container()
        return False

    def _kill_and_discard(self, raw: Any) -> None:
        """Kill the programs, then read their stream to its end and drop it.

        Hanging up on a running exec instead makes the engine wait up to 10 s
        (TERM, then KILL) and hold back everything else in the container.
        """
        started = self.kill_programs(wait=False)
        if not (_discard(raw, _EXIT_WAIT) and started):
            self._kill_container()

    def _kill_container(self) -> None:
        if self.container_id is not None:
            with contextlib.suppress(Exception):
                self.client.api.kill(self.container_id)

    # -- internals ---------------------------------------------------------------------

    def _create(self) -> None:
        name = new_container_name()
        image = self.runner.image
        created: Any = self.runner._create(
            image,
            name,
            self.runner.filename,
            False,
            {LABEL_SESSION: self.name},
            overrides={"command": list(KEEPER_COMMAND), "user": _keeper_user(self.policy.user)},
        )
        # The runner returns the new container's id (a model object in older versions).
        container_id = created if isinstance(created, str) else str(created.id)
        try:
            with engine_errors():
                self.client.api.start(container_id)
                support = self.runner.support_files()
                if support:
                    # Shared by every run (e.g. Node's stdio preload), under
                    # the code directory where the language's command expects them.
                    self.client.api.put_archive(container_id, CODE_DIR, _tar(support))
        except docker.errors.APIError as exc:
            _remove(self.client, container_id)
            raise SandboxError(
                f"Could not start session {self.name!r}: {exc.explanation}", container=name
            ) from exc
        except BaseException:
            _remove(self.client, container_id)
            raise
        self.container_id = container_id
        self.container_name = name
        self.created_at = time.time()
        self._oom_kills = 0
        logger.info(
            "started session %s (%s) in %s from %s",
            self.name,
            self.language,
            name,
            image,
            extra={"container": name, "language": self.language},
        )

    def _exec(
        self,
        archive: bytes,
        path: str,
        limit: float,
        stdin_bytes: bytes | None,
        on_output: OutputCallback | None,
        cancel: threading.Event | None,
    ) -> RunResult:
        assert self.container_id is not None
        api = self.client.api
        sock: Any = None
        raw: Any = None
        watchdog: _ExecWatchdog | None = None
        finished = False
        try:
            with engine_errors():
                api.put_archive(self.container_id, CODE_DIR, archive)
                exec_id = api.exec_create(
                    self.container_id,
                    self.runner.command(path),
                    stdin=stdin_bytes is not None,
                    user=self.policy.user,
                    workdir=self.policy.workdir,
                    environment=self.runner.environment(),
                )["Id"]
                sock = api.exec_start(exec_id, socket=True)
            raw = _raw_socket(sock)
            started = time.monotonic()
            watchdog = _ExecWatchdog(self, limit)
            if stdin_bytes is not None:
                _feed_stdin(raw, stdin_bytes)
            collector = OutputCollector(self.policy.output_limit, on_output)
            cancelled = self.runner._drain(raw, collector, watchdog, cancel, started + limit)
            duration = time.monotonic() - started
            watchdog.cancel()
            collector.finish()
            exit_code = self._exit_code(exec_id, watchdog)
            finished = True
        finally:
            if watchdog is not None:
                watchdog.cancel()
            if not finished and raw is not None and self.container_id is not None:
                # Interrupted (Ctrl-C) or failed half-way: the exec's process
                # survives its client (pitfall 4), so kill it, in a thread that
                # a second Ctrl-C cannot stop, before hanging up (see overflow).
                killer = threading.Thread(
                    target=self._kill_and_discard, args=(raw,), name="dockermagic-kill"
                )
                killer.start()
                killer.join()
            if sock is not None:
                _close_quietly(sock)
        timed_out = watchdog.fired and not cancelled
        oom = False
        if exit_code == 137 and not (timed_out or cancelled or collector.truncated):
            oom = self._oom_happened()
        if exit_code is None:
            # The container died under the program: say why if the engine knows.
            oom = "OOM" in self._death_reason()
            exit_code = -1
        result = RunResult(
            language=self.language,
            image=self.runner.image,
            exit_code=exit_code,
            stdout=collector.text("stdout"),
            stderr=collector.text("stderr"),
            duration=duration,
            timed_out=timed_out,
            oom_killed=oom,
            output_truncated=collector.truncated,
            cancelled=cancelled,
            container_name=self.container_name,
        )
        logger.debug(
            "%s session %s run %d finished: %s (%.3f s)",
            self.container_name,
            self.name,
            self.runs,
            result.status,
            duration,
            extra={"container": self.container_name, "language": self.language},
        )
        return result

    def _exit_code(self, exec_id: str, watchdog: _ExecWatchdog) -> int | None:
        """The exec's exit status; None when the container died under it."""
        api = self.client.api
        deadline = time.monotonic() + _EXIT_WAIT
        while True:
            try:
                with engine_errors():
                    info = api.exec_inspect(exec_id)
            except docker.errors.NotFound:
                return None  # the container (and its execs) are gone
            if not info.get("Running"):
                code = info.get("ExitCode")
                if code is None or (code != 0 and not self.alive):
                    return None  # the container died under the program
                return int(code)
            if time.monotonic() > deadline:
                # The stream ended (dropped connection, pitfall 9) but the
                # program still runs: stop it rather than leave it behind.
                watchdog.kill_now()
                deadline = time.monotonic() + _EXIT_WAIT
            time.sleep(0.02)

    def _oom_happened(self) -> bool:
        """Whether the kernel OOM-killed something since the last check.

        Docker records ``OOMKilled`` only for a container's main process, so a
        program killed inside a session shows up only in the cgroup's counter.
        """
        if self.container_id is None:
            return False
        try:
            result = self.client.api.exec_create(
                self.container_id, list(_OOM_COMMAND), user=self.policy.user
            )
            output = self.client.api.exec_start(result["Id"]).decode("utf-8", "replace")
        except Exception:  # best effort: the run is already over
            logger.debug("reading the OOM counter failed", exc_info=True)
            return False
        counts = [int(n) for n in _OOM_RE.findall(output)]
        if not counts:
            return False
        count = max(counts)
        happened = count > self._oom_kills
        self._oom_kills = count
        return happened

    def _death_reason(self) -> str:
        if self.container_id is None:
            return "never started"
        try:
            state = self.client.api.inspect_container(self.container_id)["State"]
        except docker.errors.NotFound:
            return "its container was removed"
        except Exception:
            return "its container is unreachable"
        if state.get("OOMKilled"):
            return "killed: out of memory (OOM)"
        return f"its container exited with status {state.get('ExitCode')}"


class _ExecWatchdog(_Watchdog):
    """Kills a session's programs, not its container, at the deadline."""

    def __init__(self, session: Session, seconds: float) -> None:
        self.session = session
        assert session.container_id is not None
        super().__init__(session.client, session.container_id, seconds)

    def kill_now(self) -> None:
        self.session.kill_programs()

    def overflow(self, raw: Any) -> None:
        self.session._kill_and_discard(raw)


def _discard(raw: Any, seconds: float) -> bool:
    """Read a stream to its end, dropping the data. False if it did not end in time."""
    deadline = time.monotonic() + seconds
    with contextlib.suppress(OSError):
        raw.settimeout(0.1)
    while time.monotonic() < deadline:
        try:
            if not raw.recv(65536):
                return True
        except TimeoutError:
            continue
        except OSError:
            return True
    return False


class SessionManager:
    """Creates, reuses and stops named sessions; one per (name, language).

    Every session still open when the interpreter exits is stopped (``atexit``);
    containers of a process that died anyway are removed by
    :func:`dockermagic.cleanup` at the next start.

    Args:
        client: The Docker client for new sessions; the shared one when None.
    """

    def __init__(self, client: docker.DockerClient | None = None) -> None:
        self._client = client
        self._sessions: dict[tuple[str, str], Session] = {}
        self._lock = threading.Lock()
        atexit.register(self.stop_all)

    def get(
        self,
        name: str,
        language: str,
        *,
        image: str | None = None,
        policy: SandboxPolicy | None = None,
    ) -> Session:
        """The session of that name and language, created when missing.

        The container's limits and image are fixed when it is created; a
        request with different ones keeps the session (and warns). The timeout
        and output cap are per run and always follow the request.

        Args:
            name: The session's name.
            language: A language name or alias (see :func:`~dockermagic.get_runner`).
            image: The image for a new session; the runner's default when None.
            policy: The policy for a new session (and the per-run limits).

        Returns:
            The session (its container starts at the first run).

        Raises:
            InvalidArgumentError: Unknown language or bad name.
        """
        runner = get_runner(language, image=image, policy=policy, client=self._client)
        key = (name, runner.language)
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                session = Session(name, runner)
                self._sessions[key] = session
                return session
        old = session.runner.policy
        wanted = runner.policy
        if _container_fields(old) != _container_fields(wanted) or (
            image is not None and image != session.runner.image
        ):
            warnings.warn(
                f"session {name!r} ({runner.language}) keeps the image and limits it was "
                "started with; stop it to change them",
                UserWarning,
                stacklevel=2,
            )
        session.runner.policy = old.replace(
            timeout=wanted.timeout, output_limit=wanted.output_limit
        )
        return session

    def sessions(self) -> list[Session]:
        """The sessions, in creation order.

        Returns:
            The sessions (started or not).
        """
        with self._lock:
            return list(self._sessions.values())

    def stop(self, name: str, language: str | None = None) -> list[Session]:
        """Stop and forget the sessions of a name (of one language, or all).

        Args:
            name: The session's name.
            language: Only this language (name or alias); every language when None.

        Returns:
            The sessions that were stopped.
        """
        canonical = runner_class_for(language).language if language else None
        with self._lock:
            keys = [
                key
                for key in self._sessions
                if key[0] == name and (canonical is None or key[1] == canonical)
            ]
            sessions = [self._sessions.pop(key) for key in keys]
        for session in sessions:
            session.stop()
        return sessions

    def stop_all(self) -> int:
        """Stop and forget every session.

        Returns:
            How many sessions there were.
        """
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
        for session in sessions:
            try:
                session.stop()
            except Exception:  # at exit: one failure must not keep the others
                logger.warning("stopping session %s failed", session.name, exc_info=True)
        return len(sessions)

    def close(self) -> None:
        """Stop every session and forget the exit hook."""
        self.stop_all()
        atexit.unregister(self.stop_all)


def _container_fields(policy: SandboxPolicy) -> SandboxPolicy:
    """The policy without its per-run fields, for comparing containers."""
    return policy.replace(timeout=1.0, output_limit=1)
