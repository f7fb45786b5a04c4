"""Warm sessions: :class:`Session` and :class:`SessionManager`.

A session keeps one long-lived container per (name, language), created with
the runner's :class:`~dockermagic.policy.SandboxPolicy`, whose main process
(under an init) is a warm interpreter (:mod:`dockermagic.interpreters`).
Variables, imports, functions and classes defined by one cell exist in the
next, as in a notebook kernel; files written to the working directory stay too::

    create (interpreter as main process) -> put_files(server)
      -> attach (stdin+stdout+stderr, one socket for the session's life)
      -> start -> wait for the interpreter's hello frame          once
    send a run frame -> read output frames live -> done frame     per cell
    remove                                                        on stop()

The frames are described in :mod:`dockermagic.protocol`. A cell costs no
Docker API call at all, only a write and a few reads on the attached socket;
the container layer (:mod:`dockermagic.container`) makes the calls of its
start and end, and the supervisor (:mod:`dockermagic.supervisor`) watches each
cell as it watches a one-shot run.

Stopping a cell (timeout, ``cancel``, the output cap, Ctrl-C) sends SIGINT to
the container: ``KeyboardInterrupt`` in Python, a broken script in Node. The
session and its variables stay. A cell that does not stop within
:data:`INTERRUPT_GRACE` seconds gets its container killed; the next cell starts
a new one, and a :class:`SessionRestartedWarning` says so. The same warning
reports an interpreter that died (out of memory, ``os._exit``,
``process.abort()``), a container removed behind the session's back, a broken
protocol, and a cell that left the container near its process or file limit
(more than :data:`LEFTOVER_SHARE` of it: every later cell would fail).

Without its owner: the container's stdin closes when the owner's attach goes
(``StdinOnce``), and the interpreter then ends itself, also during a busy
cell; a cell still running :data:`SERVER_DEADLINE_SLACK` seconds after its
host would have killed it ends the interpreter too. The engine removes the
stopped container (AutoRemove).

A session is one trust domain: a cell runs in the interpreter's own process
and can forge its frames (see :mod:`dockermagic.protocol`). Never use a
session's result as a verdict; checks run in fresh containers.

Cells of one session run one at a time, in the order they were submitted,
whichever threads submit them.
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import re
import threading
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any

import docker

from dockermagic.agent import Agent, AgentRequest
from dockermagic.container import CALL_TIMEOUT, Channel, SandboxContainer
from dockermagic.errors import InvalidArgumentError, SandboxError
from dockermagic.inputs import encode_inputs
from dockermagic.interpreters import interpreter_for
from dockermagic.labels import SESSION
from dockermagic.policy import CODE_DIR, SandboxPolicy
from dockermagic.protocol import BASE_CODE, BASE_WORK, CellDone, ProtocolError, run_request
from dockermagic.result import RunResult
from dockermagic.runners import (
    SETUP_SLACK,
    AbstractDockerCodeRunner,
    Job,
    RemoteSession,
    get_runner,
    runner_class_for,
)
from dockermagic.streams import (
    DisplayCallback,
    DisplayCollector,
    FileCollector,
    OutputCallback,
    OutputCollector,
)
from dockermagic.supervisor import (
    StopReason,
    StreamEnded,
    Supervision,
    check_timeout,
    supervise,
)
from dockermagic.transfer import CopyBudget, read_tree, safe_relative

__all__ = [
    "INTERRUPT_GRACE",
    "LEFTOVER_SHARE",
    "SERVER_DEADLINE_SLACK",
    "Session",
    "SessionManager",
    "SessionRestartedWarning",
]

logger = logging.getLogger(__name__)

#: Seconds a cell may take to stop after its interrupt before its container is killed.
INTERRUPT_GRACE = 2.0
#: Seconds after the host's own kill at which the interpreter ends itself.
SERVER_DEADLINE_SLACK = 3.0
#: The share of the process or file limit a cell may leave in use.
LEFTOVER_SHARE = 0.8
#: Seconds the interpreter may take to start (after the image is there).
_START_TIMEOUT = 30.0
#: Seconds to wait for the engine to report the exit of a container whose stream ended.
_EXIT_WAIT = 5.0

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


class SessionRestartedWarning(UserWarning):
    """A session's interpreter died or was killed; a new one replaces it (state is lost)."""


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


class Session:
    """One warm interpreter of one language, in its own locked-down container.

    Created lazily by the first :meth:`run` (or :meth:`start`); use
    :class:`SessionManager` to share sessions by name. A context manager:
    ``with Session("lab", PythonDockerRunner()) as s: s.run("x = 1")`` stops
    it at the end.

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
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            raise InvalidArgumentError(
                "session name", name, "use letters, digits, '_', '.' or '-' (up to 63)"
            )
        self.interpreter = interpreter_for(runner.language)
        self.name = name
        self.runner = runner
        self.grace = grace
        #: What the interpreter said about itself (language, version, pid).
        self.interpreter_info: dict[str, Any] = {}
        self.runs = 0
        self.restarts = 0
        self.restart_reason = ""
        self.created_at = 0.0
        self._lock = _FifoLock()
        self._box: SandboxContainer | None = None
        self._agent: Agent | None = None
        self._container_name = ""
        # The running cell's stop, for interrupt() from another thread.
        self._cell_stop: _CellStop | None = None
        # Through a gateway the session lives there; this object forwards to it.
        backend = runner.backend
        self._remote: RemoteSession | None = (
            backend.session(name, runner) if backend is not None else None
        )

    def __repr__(self) -> str:
        state = "started" if self._box is not None else "not started"
        return f"Session({self.name!r}, {self.language!r}, {state})"

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

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
    def container_name(self) -> str:
        """The name of the current (or last) container; '' before the first start."""
        if self._remote is not None:
            return self._remote.container_name
        return self._container_name

    @property
    def container_id(self) -> str | None:
        """The id of the current container, or None when there is none (or behind a gateway)."""
        box = self._box
        return box.id if box is not None else None

    @property
    def alive(self) -> bool:
        """Whether the session's container exists and is running (asks the engine)."""
        if self._remote is not None:
            return self._remote.alive
        box = self._box
        return box is not None and box.running()

    @property
    def remote(self) -> bool:
        """Whether the session lives on a gateway."""
        return self._remote is not None

    def start(self) -> None:
        """Start the interpreter if it is not running.

        A container that died since the last cell is removed and replaced,
        with a :class:`SessionRestartedWarning`.

        Raises:
            EngineUnavailableError: No engine answers.
            ImageUnavailableError: The image is missing and cannot be pulled.
            SandboxError: The container or its interpreter could not start.
        """
        if self._remote is not None:
            with self._lock:
                self._remote.start()
            return
        with self._lock:
            self._ensure_started()

    def reset(self) -> None:
        """Restart the interpreter: variables and files are gone, the session stays.

        Raises:
            EngineUnavailableError: No engine answers.
            SandboxError: The new interpreter could not start.
        """
        with self._lock:
            if self._remote is not None:
                self._remote.reset()
            else:
                self._discard()
                self._ensure_started()
        logger.info(
            "reset session %s (%s)",
            self.name,
            self.language,
            extra={"container": self._container_name, "language": self.language},
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
        on_display: DisplayCallback | None = None,
        display_last: bool | None = None,
        put: Iterable[str | os.PathLike[str]] = (),
        get: Sequence[str] = (),
        name: str | None = None,
        first_line: int = 1,
    ) -> RunResult:
        """Run a cell in the warm interpreter; the run contract of the runners.

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
            on_display: Called as ``on_display(data, metadata)`` with each display.
            display_last: Display the value of a last expression (default: yes,
                as a notebook cell does).
            put: Host files or folders copied into the session's working
                directory before the cell (they stay, as files a cell writes do).
            get: Glob patterns of files in the working directory to bring back
                after the cell (``RunResult.files``).
            name: What tracebacks call the cell (``Cell In[5]``); its path
                ``/code/cell-N/<filename>`` when None.
            first_line: The number tracebacks give the cell's first line.

        Returns:
            The :class:`RunResult` (``container_name`` is the session's container).

        Raises:
            EngineUnavailableError: No engine answers.
            InvalidArgumentError: A bad timeout, file name or input.
            SandboxError: The interpreter could not be started.
        """
        limit = check_timeout(timeout, self.policy.timeout)
        source = code.encode("utf-8") if isinstance(code, str) else bytes(code)
        stdin_bytes = stdin.encode("utf-8") if isinstance(stdin, str) else stdin
        values = encode_inputs(inputs) if inputs else None
        entry = safe_relative(filename or self.runner.filename)
        budget = CopyBudget(self.policy.copy_limit)
        program: dict[str, bytes] = {}
        if files:
            # The cell's own source travels in its request; with files next to
            # it, it is written there too (a cell may read its own folder).
            for rel, content in {**dict(files), entry: source}.items():
                data = content.encode("utf-8") if isinstance(content, str) else bytes(content)
                budget.take(len(data), rel)
                program[safe_relative(rel)] = data
        if self._remote is not None:
            return self._run_remote(
                Job(
                    code=program,
                    put=tuple(put),
                    entry=entry,
                    source=source,
                    limit=limit,
                    stdin=stdin_bytes,
                    inputs=values,
                    display_last=True if display_last is None else display_last,
                    get=tuple(get),
                    labels=None,
                    name=name,
                    first_line=first_line,
                    timeout_given=timeout is not None,
                ),
                budget,
                on_output,
                on_display,
                cancel,
            )
        work: dict[str, bytes] = {}
        for item in put:
            work.update(read_tree(item, budget=budget))
        with self._lock:
            self._ensure_started(min(CALL_TIMEOUT, limit + SETUP_SLACK))
            self.runs += 1
            folder = PurePosixPath(CODE_DIR, f"cell-{self.runs}")
            box, agent = self._box, self._agent
            assert box is not None
            assert agent is not None
            request = run_request(
                self.runs,
                source,
                str(folder / entry),
                stdin=stdin_bytes,
                inputs=values,
                # The agent's own last resort, after the host's interrupt and kill.
                deadline=limit + self.grace + SERVER_DEADLINE_SLACK,
                display_last=True if display_last is None else display_last,
                get=tuple(get),
                get_limit=self.policy.copy_limit,
                name=name,
                first_line=first_line,
            )
            frames = [
                *agent.file_frames(
                    {f"{folder.name}/{rel}": data for rel, data in program.items()}, BASE_CODE
                ),
                *agent.file_frames(work, BASE_WORK),
                request,
            ]
            stop = _CellStop(cancel)
            self._cell_stop = stop
            try:
                return self._run_cell(box, agent, frames, limit, on_output, on_display, stop)
            finally:
                self._cell_stop = None

    def interrupt(self) -> bool:
        """Interrupt the cell running now, if any (from another thread).

        The cell stops as after Ctrl-C or its ``cancel``: its interpreter gets
        an interrupt (``KeyboardInterrupt`` in Python), its result is
        ``cancelled``, and the session keeps what earlier cells defined; a
        cell that does not stop within ``grace`` seconds is killed and the
        interpreter restarted. Through a gateway, the gateway's session is
        interrupted (a student may interrupt only their own).

        Returns:
            Whether a cell was running.

        Raises:
            GatewayUnavailableError: The gateway does not answer.
        """
        if self._remote is not None:
            return self._remote.interrupt()
        stop = self._cell_stop
        if stop is None:
            return False
        stop.set()
        return True

    def _run_remote(
        self,
        job: Job,
        budget: CopyBudget,
        on_output: OutputCallback | None,
        on_display: DisplayCallback | None,
        cancel: threading.Event | None,
    ) -> RunResult:
        remote = self._remote
        assert remote is not None
        with self._lock:
            before = remote.restarts
            result = remote.run(job, budget, on_output, on_display, cancel)
            self.runs = remote.runs
            if remote.restarts > before:
                # The gateway saw the interpreter die or be killed (a cell that
                # would not stop, out of memory...): say so as a local session
                # does, in the gateway's session's words when it gave them.
                self._restart_warning(
                    remote.restart_reason
                    or f" was restarted on the gateway: its interpreter {result.describe()}",
                    stacklevel=4,
                )
            return result

    def put(self, *paths: str | os.PathLike[str]) -> None:
        """Copy host files or folders into the session's working directory, now.

        The rules of ``run(put=...)``: regular files only (no links, devices
        or pipes), names that stay inside the folder, within
        ``policy.copy_limit`` bytes in all. The files stay for later cells.

        Args:
            *paths: Host files or folders.

        Raises:
            InvalidArgumentError: A path that may not be copied (named), or
                more than the copy limit.
            SandboxError: The session's interpreter could not be reached.
        """
        # An empty cell carries them: the same checked path as a cell's files,
        # locally and through a gateway.
        self.run("", put=paths, display_last=False)

    def get(self, *patterns: str) -> dict[str, bytes]:
        """Files of the session's working directory, fetched now.

        Regular files only, no links, within ``policy.copy_limit`` bytes.

        Args:
            *patterns: Glob patterns (``"*.csv"``, ``"out/*"``), matched
                against the path relative to the working directory and the name.

        Returns:
            Relative path -> content.

        Raises:
            SandboxError: The session's interpreter could not be reached.
        """
        result = self.run("", get=patterns, display_last=False)
        return dict(result.files)

    def stop(self) -> None:
        """Remove the container (and its volume). Safe to call twice, from any thread.

        A cell running meanwhile ends at once (its result says the session
        was stopped).
        """
        if self._remote is not None:
            self._remote.stop()
            return
        box, self._box = self._box, None
        if box is not None:
            box.remove()
            logger.info(
                "stopped session %s (%s), container %s",
                self.name,
                self.language,
                box.name,
                extra={"container": box.name, "language": self.language},
            )
        if not self._lock.locked():
            # No cell reads the channel: close it here (else the cell does).
            self._close_channel()

    # -- the container ------------------------------------------------------------------

    def _ensure_started(self, call_timeout: float = CALL_TIMEOUT) -> None:
        if self._box is not None:
            agent = self._agent
            if agent is not None and (agent.backlog or agent.channel.connected()):
                return
            reason = self._death_reason(self._box)
            self._restart_warning(f" had stopped ({reason})", stacklevel=5)
        self._create(call_timeout)

    def _restart_warning(self, what: str, *, stacklevel: int) -> None:
        self._discard()
        self.restarts += 1
        #: Why the interpreter was last replaced (the words of the warning).
        self.restart_reason = what
        warnings.warn(
            f"session {self.name!r} ({self.language}){what}; the next cell starts a new "
            "interpreter: variables and files written by earlier runs are gone",
            SessionRestartedWarning,
            stacklevel=stacklevel,
        )

    def _create(self, call_timeout: float) -> None:
        spec = self.runner.container_spec(
            self.interpreter.command, stdin=True, labels={SESSION: self.name}, agent=True
        )
        box = SandboxContainer.create(
            self.client, spec, on_progress=self.runner.on_progress, timeout=call_timeout
        )
        self._box, self._container_name = box, spec.name
        try:
            agent = Agent(box.attach(), self.interpreter)
            self._agent = agent
            box.start()
            agent.send(agent.frames_to_boot(), timeout=call_timeout)
            try:
                self.interpreter_info = agent.await_hello(_START_TIMEOUT, time.monotonic)
            except (StreamEnded, ProtocolError, SandboxError) as exc:
                why = self._death_reason(box) if isinstance(exc, StreamEnded) else str(exc)
                raise SandboxError(
                    f"The {self.language} interpreter of session {self.name!r} did not start"
                    f" ({why})",
                    container=box.name,
                ) from exc
        except BaseException as exc:
            self._discard()
            if isinstance(exc, SandboxError) and not str(exc).startswith("The "):
                raise SandboxError(
                    f"Could not start session {self.name!r}: {exc}", container=spec.name
                ) from exc
            raise
        self.created_at = time.time()
        logger.info(
            "started session %s (%s) in %s from %s",
            self.name,
            self.language,
            spec.name,
            spec.image,
            extra={"container": spec.name, "language": self.language},
        )

    def _discard(self) -> None:
        """Forget the container (removing it) and its channel; the next cell starts anew."""
        box, self._box = self._box, None
        self._close_channel()
        if box is not None:
            box.remove()

    def _close_channel(self) -> None:
        agent, self._agent = self._agent, None
        if agent is not None:
            agent.channel.close()
            agent.backlog.clear()

    def _death_reason(self, box: SandboxContainer) -> str:
        if self._box is not box:
            return "its container was removed"
        state = box.exit_state(timeout=_EXIT_WAIT)
        if state.oom_killed and not state.oom_certain:
            return (
                "the interpreter was killed (SIGKILL), most likely for running out of memory "
                "(the engine did not report an OOM kill)"
            )
        if state.oom_killed:
            return "the interpreter ran out of memory (OOM) and was killed"
        if state.exit_code is None:
            return "the interpreter's stream broke"
        return f"the interpreter exited with status {state.exit_code}"

    # -- one cell -----------------------------------------------------------------------

    def _run_cell(
        self,
        box: SandboxContainer,
        agent: Agent,
        frames: list[bytes],
        limit: float,
        on_output: OutputCallback | None,
        on_display: DisplayCallback | None,
        cancel: threading.Event | None,
    ) -> RunResult:
        collector = OutputCollector(self.policy.output_limit, on_output)
        displays = DisplayCollector(self.policy.display_limit, on_display)
        files = FileCollector(self.policy.copy_limit)
        stopper = _Interrupter(self, box, agent.channel)
        cell = AgentRequest(agent, self.runs, stop=stopper.stop, force=stopper.force, files=files)
        exit_code, oom, note = -1, False, ""
        started = time.monotonic()
        try:
            # Blocking, and bounded: a large cell (code, stdin, inputs, files)
            # takes a while to travel, and the socket may be in non-blocking mode.
            agent.send(frames, timeout=max(limit, 30.0))
            watch = supervise(
                cell,
                limit=limit,
                collector=collector,
                cancel=cancel,
                grace=self.grace,
                displays=displays,
            )
        except OSError as exc:
            # The stream broke while the request was being sent.
            watch = Supervision(duration=time.monotonic() - started)
            cell.broken = exc
        if watch.exit_code is not None:
            exit_code = watch.exit_code
        elif cell.forced:
            exit_code = 137
        elif cell.broken is not None:
            if self._box is not box:
                # stop() removed the container while the cell ran.
                self._close_channel()
                watch.reason = StopReason.CANCEL
                note = "\n[dockermagic] the session was stopped\n"
            else:
                exit_code, oom, note = self._handle_death(box, cell.broken)
        if note:
            collector.add("stderr", note.encode())
            collector.finish()
        done = cell.done
        result = watch.result(
            collector,
            language=self.language,
            image=box.spec.image,
            exit_code=exit_code,
            oom_killed=oom,
            oom_certain=box.oom_certain,
            container_name=box.name,
            displays=displays,
            files=dict(files.files),
            files_skipped=(*done.skipped, *files.skipped.items()) if done else (),
            cpu_seconds=done.cpu_seconds if done else None,
            peak_memory_bytes=done.peak_memory_bytes if done else None,
        )
        if done is not None and self._box is box:
            self._check_leftovers(done)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s session %s cell %d finished: %s (%.4f s)",
                box.name,
                self.name,
                cell.id,
                result.status,
                result.duration,
                extra={"container": box.name, "language": self.language},
            )
        return result

    def _check_leftovers(self, done: CellDone) -> None:
        """Restart a session that a cell left near its process or file limits."""
        policy = self.policy
        if done.tasks >= policy.pids_limit * LEFTOVER_SHARE:
            what = f"{done.tasks} processes and threads (limit {policy.pids_limit})"
        elif done.fds >= policy.nofile * LEFTOVER_SHARE:
            what = f"{done.fds} open files (limit {policy.nofile})"
        else:
            return
        self._restart_warning(
            f": cell {done.id} left {what} behind, so it was restarted", stacklevel=5
        )

    def _handle_death(self, box: SandboxContainer, exc: BaseException) -> tuple[int, bool, str]:
        """The stream ended or broke during a cell: report, clean up, warn."""
        cause = exc.__cause__ if isinstance(exc, StreamEnded) else exc
        if isinstance(cause, ProtocolError):
            reason = f"the interpreter broke the protocol ({cause})"
        else:
            reason = self._death_reason(box)
        state = box.exit_state(timeout=0.2)
        exit_code = state.exit_code if state.exit_code is not None else -1
        self._restart_warning(f": {reason}", stacklevel=6)
        return exit_code, state.oom_killed, f"\n[dockermagic] {reason}\n"


class _CellStop(threading.Event):
    """A cell's stop: set by :meth:`Session.interrupt`, or by the caller's ``cancel``.

    The supervisor polls ``is_set()`` only (it never waits on the event), so
    the caller's event is consulted there instead of being linked by a thread
    per cell (a warm cell costs a few milliseconds).
    """

    def __init__(self, cancel: threading.Event | None) -> None:
        super().__init__()
        self._cancel = cancel

    def is_set(self) -> bool:
        """Whether the cell is to stop."""
        return super().is_set() or (self._cancel is not None and self._cancel.is_set())


class _Interrupter:
    """How a session's cell is stopped: interrupted, and killed only past its grace."""

    def __init__(self, session: Session, box: SandboxContainer, channel: Channel) -> None:
        self.session = session
        self.box = box
        self.channel = channel
        self.interrupted = False

    def stop(self, reason: StopReason) -> bool:
        if not self.interrupted:
            self.interrupted = True
            # SIGINT reaches the interpreter through init: KeyboardInterrupt
            # in Python, a broken script in Node. In a helper thread, so that a
            # hung engine cannot hold the read loop.
            threading.Thread(
                target=self.box.signal, args=("SIGINT",), name="dockermagic-interrupt", daemon=True
            ).start()
        return True

    def force(self) -> None:
        session = self.session
        # Hang up first: the engine does not finish a kill while output it
        # holds waits for a reader.
        self.channel.close()
        self.box.kill_soon()
        session._restart_warning(
            f": the cell did not stop within {session.grace:g} s of its interrupt, so its "
            "interpreter was killed",
            stacklevel=6,
        )


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

    def __enter__(self) -> SessionManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(
        self,
        name: str,
        language: str,
        *,
        image: str | None = None,
        policy: SandboxPolicy | None = None,
        requirements: Iterable[str] | None = None,
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
            requirements: Packages for a new session (a derived image; see
                :mod:`dockermagic.packages`).

        Returns:
            The session (its container starts at the first cell).

        Raises:
            InvalidArgumentError: Unknown language, a language without a warm
                interpreter, or a bad name.
        """
        runner = get_runner(
            language, image=image, policy=policy, client=self._client, requirements=requirements
        )
        key = (name, runner.language)
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                session = Session(name, runner)
                self._sessions[key] = session
                return session
        old = session.runner.policy
        wanted = runner.policy
        if (
            _container_fields(old) != _container_fields(wanted)
            or (image is not None and image != session.runner.base_image)
            or runner.requirements != session.runner.requirements
        ):
            warnings.warn(
                f"session {name!r} ({runner.language}) keeps the image, packages and limits "
                "it was started with; stop it to change them",
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
