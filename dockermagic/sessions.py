"""Warm sessions: :class:`Session` and :class:`SessionManager`.

A session keeps one long-lived container per (name, language), created with
the runner's :class:`~dockermagic.policy.SandboxPolicy`, whose main process
(under the policy's init) is a warm interpreter (:mod:`dockermagic.interpreters`).
Variables, imports, functions and classes defined by one cell exist in the
next, as in a notebook kernel; files written to the working directory stay too::

    create (interpreter as main process) -> put_archive(server)
      -> attach (stdin+stdout+stderr, one socket for the session's life)
      -> start -> wait for the interpreter's hello frame          once
    send a run frame -> read output frames live -> done frame     per cell
    remove(force, volumes)                                        on stop()

The frames are described in :mod:`dockermagic.protocol`. A cell costs no
Docker API call at all, only a write and a few reads on the attached socket.

Stopping a cell (timeout, ``cancel``, the output cap, Ctrl-C) sends SIGINT to
the container: ``KeyboardInterrupt`` in Python, a broken script in Node. The
session and its variables stay. A cell that does not stop within
:data:`INTERRUPT_GRACE` seconds gets its container killed; the next cell starts
a new one, and a :class:`SessionRestartedWarning` says so. The same warning
reports an interpreter that died (out of memory, ``os._exit``,
``process.abort()``) or a container removed behind the session's back.

Cells of one session run one at a time, in the order they were submitted,
whichever threads submit them.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import logging
import re
import socket
import threading
import time
import warnings
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

import docker
import docker.errors
from docker.types import LogConfig

from dockermagic.cleanup import new_container_name
from dockermagic.engine import engine_errors
from dockermagic.errors import InvalidArgumentError, SandboxError
from dockermagic.interpreters import interpreter_for
from dockermagic.policy import CODE_DIR, SandboxPolicy
from dockermagic.protocol import (
    DONE,
    HELLO,
    STDERR,
    STDOUT,
    CellDone,
    Frame,
    FrameReader,
    ProtocolError,
    parse_done,
    parse_hello,
    run_request,
)
from dockermagic.result import RunResult
from dockermagic.runners import (
    AbstractDockerCodeRunner,
    _close_quietly,
    _raw_socket,
    _remove,
    _tar,
    get_runner,
    runner_class_for,
)
from dockermagic.streams import FrameDecoder, OutputCallback, OutputCollector

__all__ = [
    "INTERRUPT_GRACE",
    "LABEL_SESSION",
    "Session",
    "SessionManager",
    "SessionRestartedWarning",
]

logger = logging.getLogger(__name__)

#: The label that names a container's session.
LABEL_SESSION = "dockermagic.session"

#: Seconds a cell may take to stop after its interrupt before its container is killed.
INTERRUPT_GRACE = 2.0
#: Seconds the interpreter may take to start (after the image is there).
_START_TIMEOUT = 30.0
#: How often the read loop wakes up to notice Ctrl-C, cancellation and deadlines.
_POLL_SECONDS = 0.1
#: Seconds to wait for the engine to record the exit of a container whose stream ended.
_EXIT_WAIT = 5.0

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


class SessionRestartedWarning(UserWarning):
    """A session's interpreter died or was killed; a new one replaces it (state is lost)."""


class _Died(Exception):
    """The interpreter's stream ended (it exited, or its container went away)."""


class _FifoLock:
    """A reentrant lock that is granted in the order it was requested.

    ``threading.Lock`` makes no promise about which waiter wins; cells
    submitted from several threads must run in submission order.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._waiters: collections.deque[tuple[int, threading.Event]] = collections.deque()
        self._owner: int | None = None
        self._depth = 0

    def acquire(self) -> None:
        me = threading.get_ident()
        with self._mutex:
            if self._owner == me:
                self._depth += 1
                return
            if self._owner is None and not self._waiters:
                self._owner, self._depth = me, 1
                return
            ticket = (me, threading.Event())
            self._waiters.append(ticket)
        try:
            ticket[1].wait()
        except BaseException:
            with self._mutex:
                if ticket in self._waiters:
                    self._waiters.remove(ticket)
                    raise
            self.release()  # it was handed over meanwhile: pass it on
            raise

    def release(self) -> None:
        with self._mutex:
            self._depth -= 1
            if self._depth > 0:
                return
            if self._waiters:
                owner, event = self._waiters.popleft()
                self._owner, self._depth = owner, 1
                event.set()
            else:
                self._owner = None

    def locked(self) -> bool:
        with self._mutex:
            return self._owner is not None

    def __enter__(self) -> None:
        self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


class _Cell:
    """The host's view of one running cell."""

    def __init__(self, cell_id: int, collector: OutputCollector) -> None:
        self.id = cell_id
        self.collector = collector
        self.interrupted_at: float | None = None
        self.timed_out = False
        self.cancelled = False
        self.killed = False


class Session:
    """One warm interpreter of one language, in its own locked-down container.

    Created lazily by the first :meth:`run` (or :meth:`start`); use
    :class:`SessionManager` to share sessions by name.

    Args:
        name: The session's name (letters, digits, ``_.-``).
        runner: Supplies the language, image, environment, policy and client.
        grace: Seconds an interrupted cell may take to stop before the
            container is killed.

    Raises:
        InvalidArgumentError: A bad name, or a language without a warm interpreter.
    """

    def __init__(
        self, name: str, runner: AbstractDockerCodeRunner, *, grace: float = INTERRUPT_GRACE
    ) -> None:
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise InvalidArgumentError(
                "session name", name, "use letters, digits, '_', '.' or '-' (up to 63)"
            )
        self.interpreter = interpreter_for(runner.language)
        self.name = name
        self.runner = runner
        self.grace = grace
        self.container_name = ""
        self.container_id: str | None = None
        #: What the interpreter said about itself (language, version, pid).
        self.interpreter_info: dict[str, Any] = {}
        self.runs = 0
        self.restarts = 0
        self.created_at = 0.0
        self._lock = _FifoLock()
        self._sock: Any = None
        self._raw: Any = None
        self._docker_frames = FrameDecoder()
        self._frames = FrameReader()
        self._backlog: collections.deque[Frame] = collections.deque()

    def __repr__(self) -> str:
        state = "started" if self.container_id else "not started"
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
        """The runner's policy (its timeout and output cap apply per cell)."""
        return self.runner.policy

    @property
    def alive(self) -> bool:
        """Whether the session's container exists and is running (asks the engine)."""
        container_id = self.container_id
        if container_id is None:
            return False
        try:
            with engine_errors():
                state = self.client.api.inspect_container(container_id)["State"]
        except docker.errors.NotFound:
            return False
        return bool(state.get("Running")) and not state.get("Restarting")

    def start(self) -> None:
        """Start the interpreter if it is not running.

        A container that died since the last cell is removed and replaced,
        with a :class:`SessionRestartedWarning`.

        Raises:
            EngineUnavailableError: No engine answers.
            ImageUnavailableError: The image is missing and cannot be pulled.
            SandboxError: The container or its interpreter could not start.
        """
        with self._lock:
            self._ensure_started()

    def reset(self) -> None:
        """Restart the interpreter: variables and files are gone, the session stays.

        Raises:
            EngineUnavailableError: No engine answers.
            SandboxError: The new interpreter could not start.
        """
        with self._lock:
            self._discard()
            self._ensure_started()
        logger.info(
            "reset session %s (%s)",
            self.name,
            self.language,
            extra={"container": self.container_name, "language": self.language},
        )

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
        inputs: Mapping[str, Any] | None = None,
    ) -> RunResult:
        """Run a cell in the warm interpreter; same contract as the runner's ``run``.

        The cell sees the variables of earlier cells. Its traceback names it
        ``/code/cell-N/<filename>`` with its own line numbers; ``files`` are
        copied to that folder.

        Args:
            code: The cell's source.
            timeout: Wall-clock seconds; the policy's timeout when None. At the
                deadline the cell is interrupted; the session stays.
            stdin: Data for the cell's standard input; end-of-file at once when None.
            on_output: Called as ``on_output(stream, text)`` while the cell runs.
            files: Extra files (relative path -> content) next to the cell.
            filename: The cell's file name; the runner's default when None.
            cancel: When set, the cell is interrupted and the result marked cancelled.
            inputs: JSON values defined before the cell runs: variables in
                Python, read-only globals in JavaScript.

        Returns:
            The :class:`RunResult` (``container_name`` is the session's container).

        Raises:
            EngineUnavailableError: No engine answers.
            InvalidArgumentError: A bad timeout or file name.
            SandboxError: The interpreter could not be started.
        """
        limit = self.policy.timeout if timeout is None else timeout
        if not isinstance(limit, (int, float)) or isinstance(limit, bool) or limit <= 0:
            raise InvalidArgumentError("timeout", timeout, "must be a positive number of seconds")
        source = code.encode("utf-8") if isinstance(code, str) else code
        stdin_bytes = stdin.encode("utf-8") if isinstance(stdin, str) else stdin
        with self._lock:
            self._ensure_started()
            self.runs += 1
            folder = PurePosixPath(CODE_DIR, f"cell-{self.runs}")
            entry = filename or self.runner.filename
            if files:
                program = {entry: source}
                for rel, content in files.items():
                    program[rel] = content.encode("utf-8") if isinstance(content, str) else content
                archive = _tar({f"{folder.name}/{rel}": data for rel, data in program.items()})
                assert self.container_id is not None
                with engine_errors():
                    self.client.api.put_archive(self.container_id, CODE_DIR, archive)
            request = run_request(
                self.runs, source, str(folder / entry), stdin=stdin_bytes, inputs=inputs
            )
            return self._run_cell(request, limit, on_output, cancel)

    def stop(self) -> None:
        """Remove the container (and its volume). Safe to call twice, from any thread.

        A cell running meanwhile ends at once (its result says the
        interpreter's container was removed).
        """
        container_id, self.container_id = self.container_id, None
        if container_id is not None:
            _remove(self.client, container_id)
            logger.info(
                "stopped session %s (%s), container %s",
                self.name,
                self.language,
                self.container_name,
                extra={"container": self.container_name, "language": self.language},
            )
        if not self._lock.locked():
            # No cell reads the socket: close it here (else the cell does).
            self._close_socket()

    # -- the container ------------------------------------------------------------------

    def _ensure_started(self) -> None:
        if self.container_id is not None:
            if self._connected():
                return
            reason = self._death_reason()
            self._discard()
            self.restarts += 1
            warnings.warn(
                f"session {self.name!r} ({self.language}) had stopped ({reason}); "
                "started a new one: variables and files written by earlier runs are gone",
                SessionRestartedWarning,
                stacklevel=4,
            )
        self._create()

    def _connected(self) -> bool:
        """Whether the attached stream is still open (no API call: a peek)."""
        raw = self._raw
        if raw is None:
            return False
        try:
            # Non-blocking: in timeout mode the socket would wait first.
            raw.settimeout(0.0)
            data = raw.recv(1, socket.MSG_PEEK)
        except (BlockingIOError, TimeoutError):
            return True  # open, nothing to read
        except OSError:
            return False
        return bool(data)  # output waiting (b"" means the stream ended)

    def _create(self) -> None:
        name = new_container_name()
        image = self.runner.image
        api = self.client.api
        container_id = self.runner._create(
            image,
            name,
            self.runner.filename,
            True,
            {LABEL_SESSION: self.name},
            overrides={
                "command": list(self.interpreter.command),
                # Output travels over the attached socket only; a json log
                # on the engine's disk would copy every byte a cell prints.
                "log_config": LogConfig(type=LogConfig.types.NONE),
            },
        )
        self.container_id, self.container_name = container_id, name
        try:
            with engine_errors():
                files = {**self.runner.support_files(), **self.interpreter.files}
                api.put_archive(container_id, CODE_DIR, _tar(files))
                sock = api.attach_socket(
                    container_id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
                )
                self._sock, self._raw = sock, _raw_socket(sock)
                api.start(container_id)
            self._docker_frames = FrameDecoder()
            self._frames = FrameReader()
            self._backlog.clear()
            self.interpreter_info = self._await_hello()
        except docker.errors.APIError as exc:
            self._discard()
            raise SandboxError(
                f"Could not start session {self.name!r}: {exc.explanation}", container=name
            ) from exc
        except BaseException:
            self._discard()
            raise
        self.created_at = time.time()
        logger.info(
            "started session %s (%s) in %s from %s",
            self.name,
            self.language,
            name,
            image,
            extra={"container": name, "language": self.language},
        )

    def _await_hello(self) -> dict[str, Any]:
        deadline = time.monotonic() + _START_TIMEOUT
        said: list[bytes] = []
        while time.monotonic() < deadline:
            try:
                frames = self._receive(_POLL_SECONDS)
            except (_Died, ProtocolError) as exc:
                text = b"".join(said).decode("utf-8", "replace").strip()
                raise SandboxError(
                    f"The {self.language} interpreter of session {self.name!r} did not start"
                    f" ({self._death_reason() if isinstance(exc, _Died) else exc})"
                    + (f": {text[-2000:]}" if text else ""),
                    container=self.container_name,
                ) from exc
            for frame in frames:
                if frame.kind == HELLO:
                    return parse_hello(frame.payload)
                said.append(frame.payload)
        raise SandboxError(
            f"The {self.language} interpreter of session {self.name!r} did not answer within "
            f"{_START_TIMEOUT:g} s",
            container=self.container_name,
        )

    def _discard(self) -> None:
        """Forget the container (removing it) and its socket; the next cell starts anew."""
        container_id, self.container_id = self.container_id, None
        self._close_socket()
        if container_id is not None:
            _remove(self.client, container_id)

    def _close_socket(self) -> None:
        sock, self._sock, self._raw = self._sock, None, None
        if sock is not None:
            _close_quietly(sock)
        self._backlog.clear()

    def _death_reason(self) -> str:
        container_id = self.container_id
        if container_id is None:
            return "its container was removed"
        api = self.client.api
        deadline = time.monotonic() + _EXIT_WAIT
        try:
            while True:
                state = api.inspect_container(container_id)["State"]
                # The stream can end a moment before the engine records the exit.
                if not state.get("Running") or time.monotonic() > deadline:
                    break
                time.sleep(0.02)
        except docker.errors.NotFound:
            return "its container was removed"
        except Exception:
            return "its container is unreachable"
        if state.get("OOMKilled"):
            return "the interpreter ran out of memory (OOM) and was killed"
        if state.get("Running"):
            return "the interpreter's stream broke"
        return f"the interpreter exited with status {state.get('ExitCode')}"

    # -- one cell -----------------------------------------------------------------------

    def _receive(self, seconds: float) -> list[Frame]:
        """Frames that arrive within ``seconds`` (maybe none).

        Raises:
            _Died: The stream ended.
            ProtocolError: The interpreter sent garbage.
        """
        if self._backlog:
            frames = list(self._backlog)
            self._backlog.clear()
            return frames
        raw = self._raw
        if raw is None:
            raise _Died()
        raw.settimeout(max(seconds, 0.001))
        try:
            data = raw.recv(262144)
        except TimeoutError:
            return []
        except OSError as exc:
            raise _Died() from exc
        if not data:
            raise _Died()
        decoded: list[Frame] = []
        for stream, payload in self._docker_frames.feed(data):
            if stream == "stdout":
                decoded.extend(self._frames.feed(payload))
            else:
                # The server's own fd 2 (its start-up errors): the cell's stderr.
                decoded.append(Frame(STDERR, payload))
        return decoded

    def _run_cell(
        self,
        request: bytes,
        limit: float,
        on_output: OutputCallback | None,
        cancel: threading.Event | None,
    ) -> RunResult:
        cell = _Cell(self.runs, OutputCollector(self.policy.output_limit, on_output))
        started = time.monotonic()
        done: CellDone | None = None
        exit_code = -1
        oom = False
        try:
            try:
                self._raw.sendall(request)
                done = self._drain(cell, started + limit, cancel)
            except BaseException as exc:
                if isinstance(exc, (_Died, ProtocolError, OSError)):
                    raise
                # Ctrl-C (or a failure in on_output): stop the cell before
                # giving up, in a thread that a second Ctrl-C cannot stop.
                stopper = threading.Thread(
                    target=self._stop_quietly, args=(cell,), name="dockermagic-interrupt"
                )
                stopper.start()
                stopper.join()
                raise
        except (_Died, ProtocolError, OSError) as exc:
            exit_code, oom = self._handle_death(cell, exc)
        duration = time.monotonic() - started
        cell.collector.finish()
        if done is not None:
            exit_code = done.exit_code
        elif cell.killed:
            exit_code = 137
        result = RunResult(
            language=self.language,
            image=self.runner.image,
            exit_code=exit_code,
            stdout=cell.collector.text("stdout"),
            stderr=cell.collector.text("stderr"),
            duration=duration,
            timed_out=cell.timed_out and not cell.cancelled,
            oom_killed=oom,
            output_truncated=cell.collector.truncated,
            cancelled=cell.cancelled,
            container_name=self.container_name,
        )
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s session %s cell %d finished: %s (%.4f s)",
                self.container_name,
                self.name,
                cell.id,
                result.status,
                duration,
                extra={"container": self.container_name, "language": self.language},
            )
        return result

    def _drain(
        self, cell: _Cell, deadline: float, cancel: threading.Event | None
    ) -> CellDone | None:
        """Read frames until the cell's done frame; None when its container was killed."""
        while True:
            now = time.monotonic()
            if cell.interrupted_at is None:
                if cancel is not None and cancel.is_set():
                    cell.cancelled = True
                    self._interrupt(cell)
                elif now >= deadline:
                    cell.timed_out = True
                    self._interrupt(cell)
                wait = min(_POLL_SECONDS, max(deadline - now, 0.0))
            else:
                left = cell.interrupted_at + self.grace - now
                if left <= 0:
                    self._kill(cell)
                    return None
                wait = min(_POLL_SECONDS, left)
            frames = self._receive(wait)
            for index, frame in enumerate(frames):
                if frame.kind in (STDOUT, STDERR):
                    stream = "stdout" if frame.kind == STDOUT else "stderr"
                    if (
                        not cell.collector.add(stream, frame.payload)
                        and cell.interrupted_at is None
                    ):
                        # Output cap: stop the cell, keep reading (and dropping)
                        # so the interpreter is not blocked writing.
                        self._interrupt(cell)
                elif frame.kind == DONE:
                    done = parse_done(frame.payload)
                    if done.id == cell.id:
                        # Output printed after the cell (by its threads) waits
                        # for the next cell.
                        self._backlog.extend(frames[index + 1 :])
                        return done

    def _interrupt(self, cell: _Cell) -> None:
        cell.interrupted_at = time.monotonic()
        container_id = self.container_id
        if container_id is None:
            return
        try:
            # The init forwards it to the interpreter, its only child.
            self.client.api.kill(container_id, signal="SIGINT")
        except Exception:  # gone already: the read loop sees the stream end
            logger.debug("interrupting %s failed", self.container_name, exc_info=True)

    def _kill(self, cell: _Cell) -> None:
        cell.killed = True
        self.restarts += 1
        container_id = self.container_id
        # Hang up first: the engine does not finish a kill while output it
        # holds waits for a reader (see runners._Watchdog.overflow).
        self._close_socket()
        if container_id is not None:
            with contextlib.suppress(Exception):
                self.client.api.kill(container_id)
        self._discard()
        warnings.warn(
            f"session {self.name!r} ({self.language}): the cell did not stop within "
            f"{self.grace:g} s of its interrupt, so its interpreter was killed; the next cell "
            "starts a new one: variables and files are gone",
            SessionRestartedWarning,
            stacklevel=5,
        )

    def _stop_quietly(self, cell: _Cell) -> None:
        """Interrupt the cell and wait for its end, dropping its output (after Ctrl-C)."""
        try:
            if cell.interrupted_at is None:
                cell.cancelled = True
                self._interrupt(cell)
            cell.collector.on_output = None
            self._drain(cell, float("inf"), None)
        except Exception:
            logger.debug("stopping a cell of %s failed", self.container_name, exc_info=True)
            self._discard()

    def _handle_death(self, cell: _Cell, exc: BaseException) -> tuple[int, bool]:
        """The stream ended or broke during a cell: report, clean up, warn."""
        if self.container_id is None:
            # stop() removed the container while the cell ran.
            self._close_socket()
            cell.cancelled = True
            cell.collector.add("stderr", b"\n[dockermagic] the session was stopped\n")
            return -1, False
        reason = (
            f"the interpreter broke the protocol ({exc})"
            if isinstance(exc, ProtocolError)
            else self._death_reason()
        )
        exit_code = -1
        oom = "OOM" in reason
        container_id = self.container_id
        with contextlib.suppress(Exception):
            state = self.client.api.inspect_container(container_id)["State"]
            if not state.get("Running"):
                exit_code = int(state.get("ExitCode", -1))
        self._discard()
        self.restarts += 1
        cell.collector.add("stderr", f"\n[dockermagic] {reason}\n".encode())
        warnings.warn(
            f"session {self.name!r} ({self.language}): {reason}; the next cell starts a new "
            "interpreter: variables and files are gone",
            SessionRestartedWarning,
            stacklevel=5,
        )
        return exit_code, oom


class SessionManager:
    """Creates, reuses, resets and stops named sessions; one per (name, language).

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
        and output cap are per cell and always follow the request.

        Args:
            name: The session's name.
            language: A language name or alias (see :func:`~dockermagic.get_runner`).
            image: The image for a new session; the runner's default when None.
            policy: The policy for a new session (and the per-cell limits).

        Returns:
            The session (its container starts at the first cell).

        Raises:
            InvalidArgumentError: Unknown language, a language without a warm
                interpreter, or a bad name.
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

    def _matching(self, name: str | None, language: str | None) -> list[Session]:
        canonical = runner_class_for(language).language if language else None
        with self._lock:
            return [
                session
                for (session_name, session_language), session in self._sessions.items()
                if (name is None or session_name == name)
                and (canonical is None or session_language == canonical)
            ]

    def reset(self, name: str | None = None, language: str | None = None) -> list[Session]:
        """Restart the interpreters of a name's sessions (or of every session).

        Args:
            name: The session's name; every session when None.
            language: Only this language (name or alias); every language when None.

        Returns:
            The sessions that were restarted.
        """
        sessions = self._matching(name, language)
        for session in sessions:
            session.reset()
        return sessions

    def stop(self, name: str, language: str | None = None) -> list[Session]:
        """Stop and forget the sessions of a name (of one language, or all).

        Args:
            name: The session's name.
            language: Only this language (name or alias); every language when None.

        Returns:
            The sessions that were stopped.
        """
        sessions = self._matching(name, language)
        with self._lock:
            for session in sessions:
                self._sessions.pop((session.name, session.language), None)
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
    """The policy without its per-cell fields, for comparing containers."""
    return policy.replace(timeout=1.0, output_limit=1)
