"""The container layer: one sandbox container, from create to remove.

Every Docker API call of a run and of a session goes through
:class:`SandboxContainer`; runners and sessions are its clients and never touch
``client.api`` themselves. Each call is bounded in time and translated in one
place (:func:`engine_call`): connection failures and an engine that does not
answer become :class:`~dockermagic.errors.EngineUnavailableError`, other
engine refusals :class:`~dockermagic.errors.SandboxError`.

A container's life::

    SandboxContainer.create(spec)     image present (pull once), create
      .put_files({...})               tar into the code volume (/code)
      .attach()  -> Channel           stdin/stdout/stderr, one socket
      .start()                        after subscribing to its exit (ExitWatch)
      ... the program runs; the caller reads the Channel ...
      .kill() / .signal("SIGINT")     bounded, best effort
      .exit_state()                   exit code and OOM, from the engine's events
                                      (an OOM inferred where the engine never says)
      .remove()                       bounded; what cannot finish goes to a reaper

Why these choices (each one a fix for something that bit):

* **Limits without the parent.** A container whose ``spec.deadline`` is set
  runs its program under coreutils' ``timeout -s KILL`` *as PID 1*: the kernel
  ignores SIGKILL and SIGSTOP sent to a PID namespace's init from inside, so
  the program cannot stop its own deadline, and when ``timeout`` exits the
  kernel kills whatever else runs in the container. Every container has the
  engine's ``AutoRemove`` and the ``none`` log driver: a container whose owner
  was SIGKILLed still dies at its deadline, is removed by the engine, and
  never writes its output to the engine's disk (pitfall 26).
* **No race with AutoRemove** (pitfall 2): output comes from an attach made
  before start, and the exit code and OOM flag from the engine's event stream,
  subscribed before start (:class:`ExitWatch`), not from a later inspect.
* **One code path for every engine.** What Podman's Docker API needs
  differently (tmpfs owner options, an explicit nproc limit, event names, a
  code volume that it hands to the container's user) comes from the engine's
  :class:`~dockermagic.profiles.EngineProfile`, asked once per client. Where
  the engine never reports an OOM kill (Podman 4.3), an exit by SIGKILL that
  neither dockermagic nor the deadline sent is reported as a probable OOM
  (``ExitState.oom_certain`` False). Docker can report the kill *after* the
  exit (containerd publishes both independently), so after such an exit the
  ``oom`` event is awaited briefly (:data:`OOM_EVENT_GRACE`) before the same
  inference applies.
* **A hung engine does not hold a run.** Calls run in a helper thread and are
  abandoned after their time (:data:`CALL_TIMEOUT`; :data:`SHORT_TIMEOUT`
  after a deadline). A create that completes after it was abandoned is
  removed; a removal that cannot finish is retried in the background, and
  :func:`dockermagic.cleanup.cleanup` reaps what is still left.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, TypeVar

import docker
import docker.errors
from docker.types import LogConfig, Mount

from dockermagic.engine import engine_errors, engine_profile
from dockermagic.errors import EngineUnavailableError, SandboxError
from dockermagic.images import ensure_image, forget_image
from dockermagic.labels import DEADLINE, container_labels, new_container_name
from dockermagic.policy import CODE_DIR, SandboxPolicy, under_deadline
from dockermagic.profiles import DOCKER, EngineProfile
from dockermagic.transfer import tar_files

__all__ = [
    "CALL_TIMEOUT",
    "DEADLINE_GRACE",
    "SHORT_TIMEOUT",
    "Channel",
    "ContainerSpec",
    "ContainerSummary",
    "ExitState",
    "ExitWatch",
    "SandboxContainer",
    "engine_call",
    "list_containers",
    "reap",
    "remove_containers",
    "run_utility",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds an ordinary engine call may take before the engine counts as hung.
CALL_TIMEOUT = 10.0
#: Seconds a call may take once a run is past its deadline (kill, inspect, remove).
SHORT_TIMEOUT = 2.0
#: Seconds past a run's timeout at which its container kills itself.
DEADLINE_GRACE = 2.0
#: Seconds to wait for the engine to report an exit after the stream ended.
EXIT_WAIT = 5.0
#: The status of a process killed by SIGKILL (the OOM killer's signal).
SIGKILL_STATUS = 137
#: Seconds to wait, after a SIGKILL exit nobody sent, for the engine's ``oom``
#: event: containerd publishes the OOM and the exit on separate paths, and
#: Docker's ``die`` has been seen first (a loaded engine, a TLS client).
OOM_EVENT_GRACE = 2.0


@dataclass(frozen=True)
class ContainerSpec:
    """What to create: image, command, environment, labels and the policy.

    Attributes:
        image: The image reference.
        command: The program's argv.
        environment: Its environment variables (nothing else is passed).
        labels: Container labels (owner, language...; see :mod:`dockermagic.labels`).
        policy: Limits and hardening.
        stdin: Keep stdin open for an attached writer.
        deadline: Seconds after start at which the container kills itself,
            whoever is watching; None for a container that lives until it is
            removed (a session, which runs under ``init`` instead).
        agent: The program is an agent that receives its files over stdin:
            the code folder is then a tmpfs the agent fills (and makes
            read-only), not a volume for ``put_files``.
        name: The container's name.
    """

    image: str
    command: Sequence[str]
    environment: Mapping[str, str]
    labels: Mapping[str, str]
    policy: SandboxPolicy
    stdin: bool = False
    deadline: float | None = None
    agent: bool = False
    name: str = field(default_factory=new_container_name)

    def argv(self) -> list[str]:
        """The container's command: the program, under its deadline keeper if any.

        Returns:
            The argv.
        """
        if self.deadline is None:
            return list(self.command)
        return under_deadline(self.deadline, self.command)


@dataclass(frozen=True)
class ExitState:
    """How a container's program ended, as the engine reported it.

    Attributes:
        exit_code: The exit status; None when the engine never said.
        oom_killed: The kernel's OOM killer acted in the container.
        oom_certain: The engine reported the OOM kill; False when it was
            inferred from a SIGKILL nobody else sent that the engine did not
            report as one (Podman never does, see
            :attr:`EngineProfile.reports_oom`).
    """

    exit_code: int | None
    oom_killed: bool = False
    oom_certain: bool = True


# -- bounded, translated calls ---------------------------------------------------------


def engine_call(
    what: str,
    call: Callable[[], T],
    *,
    timeout: float = CALL_TIMEOUT,
    on_late: Callable[[T], None] | None = None,
) -> T:
    """Make one engine call, bounded in time, with the layer's error translation.

    Args:
        what: What the call does, for messages (``"create"``).
        call: The call.
        timeout: Seconds to wait for it.
        on_late: Receives the call's result if it arrives after the caller
            gave up (a timeout or Ctrl-C), e.g. to remove a late container.

    Returns:
        The call's result.

    Raises:
        EngineUnavailableError: No answer within ``timeout``, or no connection.
        docker.errors.APIError: The engine refused (callers translate further).
    """
    lock = threading.Lock()
    box: dict[str, Any] = {}
    done = threading.Event()

    def target() -> None:
        try:
            with engine_errors():
                value = call()
        except BaseException as exc:
            box["error"] = exc
        else:
            box["value"] = value
        with lock:
            done.set()
            late = box.get("abandoned") and "value" in box
        if late and on_late is not None:
            try:
                on_late(box["value"])
            except Exception:
                logger.debug("late %s clean-up failed", what, exc_info=True)

    worker = threading.Thread(target=target, name=f"dockermagic-{what}", daemon=True)
    worker.start()
    try:
        finished = done.wait(timeout)
    except BaseException:
        with lock:
            box["abandoned"] = not done.is_set()
        raise
    with lock:
        if not done.is_set():
            box["abandoned"] = True
            finished = False
    if not finished:
        raise EngineUnavailableError(f"the engine did not answer within {timeout:g} s ({what})")
    if "error" in box:
        raise box["error"]
    value: T = box["value"]
    return value


def _sandbox_error(
    what: str, exc: docker.errors.APIError, name: str, profile: EngineProfile = DOCKER
) -> SandboxError:
    reason = str(exc.explanation or exc).strip().splitlines()[0] if str(exc) else "refused"
    hint = profile.hint(reason)
    return SandboxError(
        f"The engine refused to {what}: {reason}" + (f" ({hint})" if hint else ""), container=name
    )


# -- the attached stream ---------------------------------------------------------------


class Channel:
    """A container's attached stdin, stdout and stderr: one socket, any transport.

    The same code serves a local unix socket, a TLS connection to a remote
    engine (docker-py hands out an ``ssl.SSLSocket``) and a forwarded SSH
    stream. What a TLS socket cannot do is never done:

    * no ``MSG_PEEK`` (``ValueError`` on an ``SSLSocket``): :meth:`connected`
      reads ahead into a buffer instead;
    * no half-close: ``shutdown(SHUT_WR)`` drops the TLS layer and later reads
      see raw records that never end (pitfall 25); a program's stdin is ended
      by closing a separate stdin-only attach (:meth:`SandboxContainer.attach_stdin`);
    * no read and write at the same moment from two threads: an OpenSSL
      connection is not thread-safe, and a request written by a helper thread
      while the supervisor reads lost the run about once in ten over TLS. The
      socket is non-blocking; every read and write is one short call under a
      lock, and waiting (``select``) happens outside it, so a large write
      never stops the reader and a deadlock cannot form. Nothing sets the
      socket's timeout: a socket has one, and a reader's short one once made
      a helper thread's large write fail after 0.1 s.

    Args:
        sock: What ``attach_socket`` returned.
    """

    #: Bytes written per call: one write never holds the lock for long.
    CHUNK = 65536

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        # docker-py returns a SocketIO for unix sockets; a SocketIO that saw a
        # timeout refuses further reads, so use the socket underneath.
        self._raw: Any = getattr(sock, "_sock", sock)
        self._ahead = b""
        self._ended = False
        self._io = threading.RLock()
        self.closed = False
        with contextlib.suppress(OSError, ValueError):
            self._raw.setblocking(False)

    def _pending(self) -> int:
        """Bytes a TLS layer has decrypted but not handed out (select cannot see them)."""
        pending = getattr(self._raw, "pending", None)
        if pending is None:
            return 0
        with self._io:
            try:
                return int(pending())
            except (OSError, ValueError, AttributeError):
                return 0

    def recv(self, timeout: float) -> bytes | None:
        """Read what arrives within ``timeout`` seconds.

        Args:
            timeout: Seconds to wait at most.

        Returns:
            The bytes; ``None`` when nothing arrived in time; ``b""`` once the
            stream has ended (or was closed).
        """
        if self._ahead:
            ahead, self._ahead = self._ahead, b""
            return ahead
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            if self._ended or self.closed:
                return b""
            if not self._pending():
                wait_for = _WAIT_READ
                remaining = max(deadline - time.monotonic(), 0.0)
                if not self._wait(wait_for, remaining):
                    return None if not (self._ended or self.closed) else b""
            data = self._recv_now()
            if data is not None:
                if not data:
                    self._ended = True
                return data
            if time.monotonic() >= deadline:
                return None

    def _wait(self, what: str, seconds: float) -> bool:
        """Wait until the socket is readable (``"r"``) or writable; False on timeout."""
        try:
            if what == _WAIT_READ:
                ready = select.select([self._raw], [], [], seconds)[0]
            else:
                ready = select.select([], [self._raw], [], seconds)[1]
        except (OSError, ValueError):  # closed by another thread
            self._ended = True
            return False
        return bool(ready)

    def _recv_now(self) -> bytes | None:
        """One non-blocking read; None when a TLS record is still incomplete."""
        with self._io:
            if self.closed:
                return b""
            try:
                data: bytes = self._raw.recv(262144)
            except ssl.SSLWantWriteError:
                # The TLS layer must write first (a key update): wait for room.
                self._wait(_WAIT_WRITE, 0.05)
                return None
            except (ssl.SSLWantReadError, BlockingIOError, InterruptedError, TimeoutError):
                return None
            except (OSError, ValueError, AttributeError):
                # AttributeError: an SSLSocket closed under us has no TLS object.
                return b""
        return data

    def connected(self) -> bool:
        """Whether the stream is still open, without blocking (reads ahead).

        Returns:
            False once the other side has hung up.
        """
        if self._ahead:
            return True
        if self._ended or self.closed:
            return False
        data = self.recv(0)
        if data:
            self._ahead = data
            return True
        return data is None

    def send(self, data: bytes, *, timeout: float) -> None:
        """Write everything, waiting for room at most ``timeout`` seconds in all.

        Args:
            data: The bytes.
            timeout: Seconds the whole write may take.

        Raises:
            OSError: The stream broke or was closed, or the write timed out.
        """
        deadline = time.monotonic() + max(timeout, 0.001)
        view = memoryview(data)
        while view:
            # A TLS write that must wait is retried with the same chunk, as
            # OpenSSL requires; the chunk boundaries never move.
            chunk = view[: self.CHUNK]
            with self._io:
                if self.closed:
                    raise BrokenPipeError("the channel is closed")
                try:
                    sent = int(self._raw.send(chunk))
                except (ssl.SSLWantWriteError, BlockingIOError, InterruptedError):
                    sent = 0
                except ssl.SSLWantReadError:
                    sent = -1
                except (ValueError, AttributeError) as exc:
                    raise BrokenPipeError("the channel is closed") from exc
            if sent > 0:
                view = view[sent:]
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("writing to the container timed out")
            self._wait(_WAIT_READ if sent < 0 else _WAIT_WRITE, min(remaining, 0.05))

    def close(self) -> None:
        """Hang up at once (safe to call twice, from any thread).

        ``shutdown()`` ends the connection now; ``close()`` alone leaves the fd
        open while the HTTP response's ``makefile()`` still refers to it, and
        the engine would keep blocking on writes nobody reads.
        """
        if self.closed:
            return
        # Under the lock: a reader must not be inside the TLS object while
        # shutdown() takes it away. Calls under it are non-blocking; the
        # timeout only guards against the unforeseen.
        locked = self._io.acquire(timeout=1.0)
        try:
            self.closed = True
            with contextlib.suppress(Exception):
                self._raw.shutdown(socket.SHUT_RDWR)
            # Over TLS docker-py hands out the SSLSocket itself, while the HTTP
            # response's SocketIO still holds a reference to it: closing the
            # socket alone leaves its descriptor open until the collector finds
            # it ("unclosed <ssl.SSLSocket>"). Closing the response closes that
            # SocketIO too.
            response = getattr(self._sock, "_response", None)
            for thing in (response, self._raw, self._sock):
                with contextlib.suppress(Exception):  # best effort: the container goes anyway
                    if thing is not None:
                        thing.close()
        finally:
            if locked:
                self._io.release()


_WAIT_READ = "r"
_WAIT_WRITE = "w"


# -- the exit ----------------------------------------------------------------------------


class ExitWatch:
    """The engine's ``oom``, ``die`` and ``destroy`` events of one container, read in a thread.

    Subscribed before the container starts, so the exit is known even when the
    engine removes the container (AutoRemove) before anyone could inspect it.
    Every container ends with ``die`` (or ``destroy`` if it never ran), so the
    thread always ends and closes its own connection; nobody has to cancel it.
    After a SIGKILL exit with no ``oom`` yet it reads on, until the ``oom`` or
    the container's removal, since the engine may report the OOM kill late.

    Args:
        client: The Docker client.
        container_id: The container.
        timeout: Seconds the subscription may take.
        profile: The engine's profile (its names for these events).
    """

    def __init__(
        self,
        client: docker.DockerClient,
        container_id: str,
        *,
        timeout: float = CALL_TIMEOUT,
        profile: EngineProfile = DOCKER,
    ) -> None:
        self.exit_code: int | None = None
        self.oom_killed = False
        #: The exit was reported, or the stream ended without it.
        self.exited = threading.Event()
        #: Nothing more will be read: an ``oom`` after a SIGKILL exit, or the end.
        self.died = threading.Event()
        self._exit_actions = profile.exit_actions
        self._gone_actions = frozenset(profile.exit_actions) - {"die", "died"}
        api = client.api
        # Podman filters by its own names ("died", "remove") and reports them
        # as Docker's ("die") or its own ("remove").
        filters = {
            "container": [container_id],
            "type": ["container"],
            "event": list(profile.exit_filter),
        }
        url = f"{api.base_url}/v{api.api_version}/events"
        # The response arrives once the engine has sent its headers, that is
        # once the subscription exists: nothing after this is missed. The
        # plain requests call (APIClient is a requests.Session) gives us the
        # response to close; docker-py's events() stream leaves its socket
        # open behind the response's makefile() when closed from outside.
        self._response: Any = engine_call(
            "subscribe to events",
            lambda: api.get(
                url, params={"filters": json.dumps(filters)}, stream=True, timeout=None
            ),
            timeout=timeout,
        )
        if self._response.status_code != 200:
            self._response.close()
            raise SandboxError(
                f"The engine refused to report events ({self._response.status_code})"
            )
        self._thread = threading.Thread(target=self._read, name="dockermagic-exit", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for line in self._response.iter_lines():
                if not line:
                    continue
                event = json.loads(line)
                action = event.get("Action") or event.get("status")
                if action == "oom":
                    self.oom_killed = True
                    if self.exited.is_set():
                        break
                elif action in self._exit_actions:
                    if not self.exited.is_set():
                        attributes = (event.get("Actor") or {}).get("Attributes") or {}
                        with contextlib.suppress(TypeError, ValueError):
                            self.exit_code = int(attributes.get("exitCode", ""))
                        self.exited.set()
                    # A SIGKILL with no OOM reported yet: the report may follow
                    # the exit; read on until it comes or the container is gone.
                    late_oom_possible = self.exit_code == SIGKILL_STATUS and not self.oom_killed
                    if not late_oom_possible or action in self._gone_actions:
                        break
        except Exception:  # the engine went away
            logger.debug("event stream ended", exc_info=True)
        finally:
            self.exited.set()
            self.died.set()
            with contextlib.suppress(Exception):
                self._response.close()

    def wait(self, timeout: float, *, oom_grace: float = 0.0) -> ExitState | None:
        """The exit, once the engine reported it.

        Args:
            timeout: Seconds to wait at most for the exit.
            oom_grace: Seconds to wait on, after a SIGKILL exit with no OOM
                reported, for a late ``oom`` event (0 when the kill was ours).

        Returns:
            The state, or None when no exit was reported in time.
        """
        if not self.exited.wait(timeout) or self.exit_code is None:
            return None
        if self.exit_code == SIGKILL_STATUS and not self.oom_killed and oom_grace > 0:
            self.died.wait(oom_grace)
        return ExitState(self.exit_code, self.oom_killed)

    @property
    def broken(self) -> bool:
        """The stream ended without reporting an exit (it never will)."""
        return self.died.is_set() and self.exit_code is None


# -- the container ---------------------------------------------------------------------


class SandboxContainer:
    """One created sandbox container; a context manager that removes it.

    Use :meth:`create`, not the constructor.

    Args:
        client: The Docker client.
        spec: What it was created from.
        container_id: The engine's id.
        call_timeout: Seconds each call of the set-up may take.
        profile: The engine's profile.
    """

    def __init__(
        self,
        client: docker.DockerClient,
        spec: ContainerSpec,
        container_id: str,
        *,
        call_timeout: float = CALL_TIMEOUT,
        profile: EngineProfile = DOCKER,
    ) -> None:
        self.client = client
        self.spec = spec
        self.id = container_id
        self.name = spec.name
        self.profile = profile
        self.removed = False
        #: Seconds each call of the set-up (files, attach, start) may take.
        self.call_timeout = call_timeout
        self._watch: ExitWatch | None = None
        #: When start was asked for (monotonic), None before.
        self._started: float | None = None
        #: dockermagic sent SIGKILL (a timeout, cancel, flood or stop).
        self._killed = False
        #: The exit as last judged (with an inferred OOM).
        self._exit: ExitState | None = None

    def __repr__(self) -> str:
        return f"SandboxContainer({self.name!r}, {self.spec.image!r})"

    def __enter__(self) -> SandboxContainer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    @classmethod
    def create(
        cls,
        client: docker.DockerClient,
        spec: ContainerSpec,
        *,
        on_progress: Callable[[str], None] | None = None,
        timeout: float = CALL_TIMEOUT,
    ) -> SandboxContainer:
        """Create a container (pulling its image first when it is missing).

        Args:
            client: The Docker client.
            spec: What to create.
            on_progress: Receives image pull progress lines.
            timeout: Seconds the create call (and each later set-up call) may take.

        Returns:
            The container (created, not started).

        Raises:
            EngineUnavailableError: No engine answers (in time).
            ImageUnavailableError: The image is missing and cannot be pulled.
            SandboxError: The engine refused to create it.
        """
        api = client.api
        policy = spec.policy
        labels = dict(spec.labels)
        if spec.deadline is not None:
            labels[DEADLINE] = f"{time.time() + timeout + spec.deadline:.0f}"
        # Which engine (asked once per client): how the policy is spelled for it.
        profile = engine_call("ask the engine", lambda: engine_profile(client), timeout=timeout)

        host_kwargs = policy.host_config_kwargs(profile)
        if spec.agent:
            # The agent writes the files it receives here, then makes them
            # read-only; a tmpfs as big as the copy limit, counted in memory.
            host_kwargs["tmpfs"] = {**host_kwargs["tmpfs"], CODE_DIR: policy.code_tmpfs(profile)}
        else:
            # A per-container volume is the one place put_archive may write
            # while the root filesystem is read-only; root-owned, it is
            # read-only for the sandbox user (on Podman once put_files has
            # given it back to root); removed with the container.
            host_kwargs["mounts"] = [Mount(CODE_DIR, None, type="volume")]

        def create() -> str:
            host_config = api.create_host_config(
                **host_kwargs,
                # The in-container deadline keeper is PID 1 when there is a
                # deadline; otherwise a real init forwards signals and reaps.
                init=spec.deadline is None,
                auto_remove=True,
                log_config=LogConfig(type=LogConfig.types.NONE),
            )
            created = api.create_container(
                spec.image,
                command=spec.argv(),
                name=spec.name,
                environment=dict(spec.environment),
                labels=labels,
                stdin_open=spec.stdin,
                host_config=host_config,
                **policy.container_kwargs(),
            )
            return str(created["Id"])

        def remove_late(container_id: str) -> None:
            reap(client, container_id)

        for attempt in (1, 2):
            ensure_image(client, spec.image, on_progress=on_progress)
            try:
                container_id = engine_call("create", create, timeout=timeout, on_late=remove_late)
            except docker.errors.ImageNotFound:
                # Deleted behind our back since it was cached: pull once more.
                forget_image(client, spec.image)
                if attempt == 2:
                    raise
                continue
            except docker.errors.APIError as exc:
                hint = profile.hint(str(exc.explanation or exc))
                raise SandboxError(
                    f"Could not create a container from {spec.image}: {exc.explanation}"
                    + (f" ({hint})" if hint else ""),
                    container=spec.name,
                ) from exc
            return cls(client, spec, container_id, call_timeout=timeout, profile=profile)
        raise AssertionError("unreachable")  # pragma: no cover

    def put_files(self, files: Mapping[str, bytes], *, path: str = CODE_DIR) -> None:
        """Copy files into the container (root-owned, read-only), before or after start.

        Args:
            files: Sandbox path -> content.
            path: Where (a volume: the root filesystem is read-only).

        Raises:
            EngineUnavailableError: No engine answers (in time).
            SandboxError: The engine refused.
        """
        target = PurePosixPath(path)
        if self.profile.volume_owned_by_user and target.parent != target:
            # The engine gave the volume's folder to the sandbox user: copy
            # the folder itself too, root-owned, into its parent (the copy
            # still lands in the volume).
            archive = tar_files(files, folder=target.name)
            target = target.parent
        else:
            archive = tar_files(files)
        # A large archive takes time to travel; allow 10 MB/s at least.
        seconds = self.call_timeout + len(archive) / 10e6
        try:
            engine_call(
                "copy files",
                lambda: self.client.api.put_archive(self.id, str(target), archive),
                timeout=seconds,
            )
        except docker.errors.APIError as exc:
            raise _sandbox_error("copy the files in", exc, self.name, self.profile) from exc

    def attach(self, *, stdin: bool | None = None) -> Channel:
        """Attach to stdin (if open), stdout and stderr: one multiplexed socket.

        Args:
            stdin: Include stdin; default: when the spec keeps it open. A
                program whose input is written once and then ended gets its
                stdin from :meth:`attach_stdin` instead.

        Returns:
            The channel.

        Raises:
            EngineUnavailableError: No engine answers (in time).
            SandboxError: The engine refused.
        """
        with_stdin = self.spec.stdin if stdin is None else stdin
        return self._attach({"stdin": int(with_stdin), "stdout": 1, "stderr": 1, "stream": 1})

    def attach_stdin(self) -> Channel:
        """Attach to stdin alone; closing this channel ends the program's input.

        Ending input by a half-close (``shutdown(SHUT_WR)``) works on a unix
        socket but not over TLS, where it drops the TLS layer and the output
        read afterwards never ends (pitfall 25). A connection of its own that
        is closed whole works on every transport: the engine then closes the
        program's stdin (``StdinOnce``).

        Returns:
            The channel (write, then close).

        Raises:
            EngineUnavailableError: No engine answers (in time).
            SandboxError: The engine refused.
        """
        return self._attach({"stdin": 1, "stdout": 0, "stderr": 0, "stream": 1})

    def _attach(self, params: Mapping[str, int]) -> Channel:
        try:
            sock = engine_call(
                "attach",
                lambda: self.client.api.attach_socket(self.id, params=params),
                timeout=self.call_timeout,
                on_late=lambda late: Channel(late).close(),
            )
        except docker.errors.APIError as exc:
            raise _sandbox_error("attach", exc, self.name) from exc
        return Channel(sock)

    def start(self) -> None:
        """Start the program (its exit is watched from before the start).

        Raises:
            EngineUnavailableError: No engine answers (in time).
            SandboxError: The engine refused (e.g. the image lacks the command).
        """
        self._watch = ExitWatch(
            self.client, self.id, timeout=self.call_timeout, profile=self.profile
        )
        self._started = time.monotonic()
        try:
            engine_call("start", lambda: self.client.api.start(self.id), timeout=self.call_timeout)
        except docker.errors.APIError as exc:
            error = _sandbox_error("start the container", exc, self.name, self.profile)
            if self.spec.deadline is not None and "timeout" in str(exc):
                error = SandboxError(
                    f"{error} (the image needs coreutils' `timeout`, which keeps the "
                    "in-container deadline)",
                    container=self.name,
                )
            raise error from exc

    def signal(self, name: str, *, timeout: float = SHORT_TIMEOUT) -> bool:
        """Send a signal to the container's main process (best effort).

        Args:
            name: E.g. ``"SIGINT"``.
            timeout: Seconds the call may take.

        Returns:
            True when the engine delivered it.
        """
        if name == "SIGKILL":
            # Before sending: the exit it causes must never look like an OOM.
            self._killed = True
        try:
            engine_call(
                f"send {name}", lambda: self.client.api.kill(self.id, signal=name), timeout=timeout
            )
        except (docker.errors.APIError, EngineUnavailableError) as exc:
            # Already exited or removed, or the engine is gone: the reader
            # sees the stream end either way.
            logger.debug("%s to %s failed: %s", name, self.name, exc)
            return False
        return True

    def kill(self, *, timeout: float = SHORT_TIMEOUT) -> bool:
        """Kill the container (SIGKILL to its PID 1; everything in it dies).

        Args:
            timeout: Seconds the call may take.

        Returns:
            True when the engine delivered it.
        """
        return self.signal("SIGKILL", timeout=timeout)

    def kill_soon(self) -> None:
        """Kill the container from a helper thread; the caller does not wait."""
        threading.Thread(target=self.kill, name="dockermagic-kill", daemon=True).start()

    def wait_exit(self, timeout: float) -> ExitState | None:
        """The exit, if the engine reports it within ``timeout`` (no other call).

        Args:
            timeout: Seconds to wait at most.

        Returns:
            The state, or None.
        """
        watch = self._watch
        state = watch.wait(timeout, oom_grace=self._oom_grace()) if watch is not None else None
        return self._judge(state) if state is not None else None

    @property
    def exit_unknown(self) -> bool:
        """The engine's event stream broke: :meth:`wait_exit` will never answer."""
        watch = self._watch
        return watch is None or watch.broken

    @property
    def oom_killed(self) -> bool:
        """The engine reported an OOM kill in this container, or the exit seen implies one."""
        watch = self._watch
        reported = watch is not None and watch.oom_killed
        return reported or (self._exit is not None and self._exit.oom_killed)

    @property
    def oom_certain(self) -> bool:
        """An OOM kill (:attr:`oom_killed`) was reported by the engine, not inferred."""
        watch = self._watch
        return (
            (watch is not None and watch.oom_killed) or self._exit is None or self._exit.oom_certain
        )

    def _oom_grace(self) -> float:
        """Seconds to await a late ``oom`` report: none for a kill that was ours."""
        if not self.profile.reports_oom or self._killed or self._deadline_passed():
            return 0.0
        return OOM_EVENT_GRACE

    def _judge(self, state: ExitState) -> ExitState:
        """The exit, with an OOM kill inferred where the engine did not report one.

        A SIGKILL exit that dockermagic did not send, before the in-container
        deadline could have fired, is most likely the kernel's OOM killer: on
        an engine that never reports one (:attr:`EngineProfile.reports_oom`
        False), and on one whose report did not come within
        :data:`OOM_EVENT_GRACE`. The program killing itself with SIGKILL is the
        other, rare, cause, hence ``oom_certain=False``.
        """
        if (
            not state.oom_killed
            and state.exit_code == SIGKILL_STATUS
            and not self._killed
            and not self._deadline_passed()
        ):
            state = ExitState(state.exit_code, oom_killed=True, oom_certain=False)
            logger.debug("%s: SIGKILL nobody sent, taken as an OOM kill", self.name)
        self._exit = state
        return state

    def _deadline_passed(self) -> bool:
        """The in-container deadline keeper may have fired (conservatively: from start asked)."""
        deadline = self.spec.deadline
        if deadline is None:
            return False
        started = self._started
        return started is None or time.monotonic() - started >= deadline

    def exit_state(self, *, timeout: float = EXIT_WAIT, ask: bool = True) -> ExitState:
        """How the program ended (waits for the engine to report the exit).

        Args:
            timeout: Seconds to wait at most.
            ask: Inspect the container when no exit was reported (False when
                the engine is known not to answer).

        Returns:
            The state; ``exit_code`` is None when the engine never said.
        """
        watch = self._watch
        if watch is not None:
            state = watch.wait(timeout, oom_grace=self._oom_grace())
            if state is not None:
                return self._judge(state)
        if not ask:
            return ExitState(None, bool(watch and watch.oom_killed))
        # No event (the stream broke): ask directly, if it is still there.
        try:
            details = engine_call(
                "inspect", lambda: self.client.api.inspect_container(self.id), timeout=SHORT_TIMEOUT
            )
        except (docker.errors.APIError, EngineUnavailableError):
            return ExitState(None, bool(watch and watch.oom_killed))
        state_info = details.get("State") or {}
        if state_info.get("Running"):
            return ExitState(None, bool(state_info.get("OOMKilled")))
        return self._judge(
            ExitState(int(state_info.get("ExitCode", -1)), bool(state_info.get("OOMKilled")))
        )

    def running(self) -> bool:
        """Whether the container exists and runs (asks the engine).

        Returns:
            False when it exited or is gone.

        Raises:
            EngineUnavailableError: No engine answers (in time).
        """
        if self.removed:
            return False
        try:
            details = engine_call(
                "inspect", lambda: self.client.api.inspect_container(self.id), timeout=SHORT_TIMEOUT
            )
        except docker.errors.NotFound:
            return False
        state = details.get("State") or {}
        return bool(state.get("Running")) and not state.get("Restarting")

    def remove(self, *, timeout: float = SHORT_TIMEOUT, background: bool = False) -> None:
        """Remove the container and its volume; safe to call twice, never raises.

        Runs in a helper thread, so Ctrl-C stops the wait, never the removal;
        what does not finish within ``timeout`` goes on in the background
        (:func:`reap`).

        Args:
            timeout: Seconds to wait for the engine.
            background: Do not wait at all (a pooled run's container: the
                caller has its result; the engine's work goes on meanwhile).
        """
        if self.removed:
            return
        self.removed = True
        _remove(self.client, self.id, self.name, timeout, wait=not background)


def _remove(
    client: docker.DockerClient, container_id: str, name: str, timeout: float, *, wait: bool = True
) -> None:
    """Remove in a helper thread; one warning (no traceback) when it cannot finish now."""
    done = threading.Event()
    lock = threading.Lock()
    warned = False

    def warn_once(message: str, *args: object) -> None:
        nonlocal warned
        with lock:
            if warned:
                return
            warned = True
        logger.warning(message, *args)

    def remove() -> None:
        try:
            _remove_now(client, container_id)
        except EngineUnavailableError as exc:
            if _unreachable(exc):
                # No engine at all: nothing to retry against; the container
                # dies at its deadline, and cleanup removes what is left.
                warn_once("could not remove %s: %s", name, exc.reason)
            else:
                warn_once("could not remove %s yet (%s); retrying in the background", name, exc)
                reap(client, container_id)
        except Exception as exc:
            warn_once("could not remove %s yet (%s); retrying in the background", name, exc)
            reap(client, container_id)
        finally:
            done.set()

    worker = threading.Thread(target=remove, name="dockermagic-remove", daemon=True)
    worker.start()
    if not wait:
        return
    with contextlib.suppress(KeyboardInterrupt):  # the removal goes on regardless
        if not done.wait(timeout):
            warn_once("removing %s takes long; it goes on in the background", name)


def _unreachable(exc: EngineUnavailableError) -> bool:
    return any(word in exc.reason for word in ("refused", "no such file"))


def _remove_now(client: docker.DockerClient, container_id: str) -> bool:
    """Remove now; False when it was gone already."""
    api = client.api
    try:
        with engine_errors():
            api.remove_container(container_id, force=True, v=True)
    except docker.errors.NotFound:
        return False
    except docker.errors.APIError as exc:
        if not any(race in str(exc) for race in engine_profile(client).removal_races):
            raise
        # The engine's AutoRemove is at it: wait until it is done, so that
        # "no container left" holds when we return.
        with contextlib.suppress(docker.errors.NotFound), engine_errors():
            api.wait(container_id, condition="removed", timeout=int(CALL_TIMEOUT))
    return True


class _Reaper:
    """Retries removals that could not finish (an engine that hangs or restarts)."""

    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[docker.DockerClient, str, float]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def add(self, client: docker.DockerClient, container_id: str) -> None:
        self._queue.put((client, container_id, time.monotonic() + 600))
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="dockermagic-reaper", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                client, container_id, until = self._queue.get(timeout=30)
            except queue.Empty:
                return
            try:
                _remove_now(client, container_id)
            except EngineUnavailableError as exc:
                if _unreachable(exc) or time.monotonic() >= until:
                    logger.warning(
                        "gave up removing %s; `dockermagic cleanup` will", container_id[:12]
                    )
                else:
                    time.sleep(1.0)
                    self._queue.put((client, container_id, until))
            except Exception:
                if time.monotonic() < until:
                    time.sleep(1.0)
                    self._queue.put((client, container_id, until))
                else:
                    logger.warning(
                        "gave up removing %s; `dockermagic cleanup` will", container_id[:12]
                    )


_reaper = _Reaper()


def reap(client: docker.DockerClient, container_id: str) -> None:
    """Remove a container in the background, retrying for a while.

    Args:
        client: The Docker client.
        container_id: The container.
    """
    _reaper.add(client, container_id)


def run_utility(
    client: docker.DockerClient, image: str, command: Sequence[str], *, timeout: float = 60.0
) -> bytes:
    """Run a short helper command (no network, an unprivileged user) and return its output.

    For dockermagic's own questions to an image (which Python, which
    platform), never for user code.

    Args:
        client: The Docker client.
        image: The image.
        command: The argv.
        timeout: Seconds it may take.

    Returns:
        Its stdout and stderr together.

    Raises:
        EngineUnavailableError: No engine answers (in time).
        SandboxError: The engine refused, or the command did not finish.
    """
    api = client.api
    profile = engine_call("ask the engine", lambda: engine_profile(client))
    # The limits the engine needs spelled out (Podman's defaults are refused).
    ulimits = SandboxPolicy().ulimits(profile)
    host_config = api.create_host_config(
        network_mode="none",
        read_only=True,
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        ulimits=ulimits,
    )
    created = engine_call(
        "create",
        lambda: api.create_container(
            image,
            command=list(command),
            user="65534:65534",
            host_config=host_config,
            labels=container_labels("utility"),
        ),
    )
    container_id = str(created["Id"])
    try:
        engine_call("start", lambda: api.start(container_id))
        engine_call(
            "wait", lambda: api.wait(container_id, timeout=int(timeout)), timeout=timeout + 5
        )
        output: bytes = engine_call(
            "logs", lambda: api.logs(container_id, stdout=True, stderr=True)
        )
    except docker.errors.APIError as exc:
        raise _sandbox_error("run a helper", exc, container_id[:12], profile) from exc
    finally:
        _remove(client, container_id, container_id[:12], SHORT_TIMEOUT)
    return output


@dataclass(frozen=True)
class ContainerSummary:
    """What the engine's container list says about one dockermagic container.

    Attributes:
        id: The container id.
        name: The container name (``dockermagic-...``).
        labels: Its labels (owner, language, session...).
        status: ``"running"``, ``"exited"``, ``"created"``... (as the engine names it)
        created: When it was created (Unix seconds; 0 when unknown).
    """

    id: str
    name: str
    labels: dict[str, str]
    status: str
    created: float = 0.0


def list_containers(
    client: docker.DockerClient, label_filters: Sequence[str]
) -> list[ContainerSummary]:
    """Containers with these labels, running or not.

    Uses the engine's list endpoint only: docker-py's ``containers.list()``
    inspects every container, and an inspect waits while a container is being
    killed, so one stuck container would stall every listing.

    Args:
        client: The Docker client.
        label_filters: ``"key"`` or ``"key=value"`` filters, all required.

    Returns:
        One summary per container.

    Raises:
        EngineUnavailableError: No engine answers (in time).
    """
    rows = engine_call(
        "list containers",
        lambda: client.api.containers(all=True, filters={"label": list(label_filters)}),
    )
    return [
        ContainerSummary(
            id=row["Id"],
            name=(row.get("Names") or ["/" + row["Id"][:12]])[0].lstrip("/"),
            labels=row.get("Labels") or {},
            status=row.get("State", ""),
            created=float(row.get("Created") or 0),
        )
        for row in rows
    ]


def remove_containers(client: docker.DockerClient, ids: Iterable[str]) -> list[str]:
    """Remove containers now (for cleanup).

    Args:
        client: The Docker client.
        ids: Container ids.

    Returns:
        The ids this call removed (not those already gone or that failed).

    Raises:
        EngineUnavailableError: No engine answers.
    """
    removed = []
    for container_id in ids:
        try:
            if _remove_now(client, container_id):
                removed.append(container_id)
        except docker.errors.APIError as exc:
            # Another cleanup won the race, or the engine refuses: not ours now.
            logger.warning("could not remove %s: %s", container_id[:12], exc.explanation)
    return removed
