"""The client's end: runs and sessions through a gateway, as a runner's backend.

When ``DOCKERMAGIC_GATEWAY`` and ``DOCKERMAGIC_TOKEN`` (or a Hub-spawned
kernel's ``JUPYTERHUB_API_TOKEN``) are set, every runner and session of the
process hands its checked :class:`~dockermagic.runners.Job` to
:class:`GatewayBackend` instead of a Docker engine: the magics, the panel,
the CLI and library calls keep the run contract (the same
:class:`~dockermagic.result.RunResult`, statuses, exceptions, and live
``on_output``/``on_display``). The process needs no Docker socket.

A gateway that does not answer, or goes away mid-run, raises
:class:`~dockermagic.errors.GatewayUnavailableError`; the next call connects
again. A session the gateway no longer knows (it restarted) is opened again
at the next cell, which the session reports as a restart.

The standard library's ``http.client`` only, one kept-alive connection per thread.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import http.client
import json
import re
import select
import ssl
import threading
import time
import urllib.parse
import weakref
from collections.abc import Iterator, Mapping
from typing import Any

from dockermagic.errors import (
    GatewayError,
    GatewayUnavailableError,
    InvalidArgumentError,
)
from dockermagic.gateway.wire import API, RUN_HEADER, decode_error, decode_result, encode_bytes
from dockermagic.policy import SandboxPolicy
from dockermagic.result import RunResult
from dockermagic.runners import AbstractDockerCodeRunner, Job
from dockermagic.streams import DisplayCallback, OutputCallback
from dockermagic.transfer import CopyBudget, read_tree

__all__ = ["GatewayBackend", "GatewaySession", "NotFoundError", "gateway_backend"]

#: Seconds to connect to the gateway.
CONNECT_TIMEOUT = 5.0
#: Seconds of silence on a run's stream beyond its own timeout (the gateway
#: sends a line every few seconds while a program waits for its turn).
READ_SLACK = 30.0
#: Seconds a Ctrl-C waits for the gateway to end the program before it goes on.
INTERRUPT_WAIT = 5.0
#: Bytes read from a stream at once, and of an error answer at most.
READ_SIZE = 64 * 1024
MAX_ERROR = 1024**2
#: Longest line of a run's stream the client accepts.
MAX_LINE = 256 * 1024**2

_backends: dict[tuple[str, str, str | None], GatewayBackend] = {}


class NotFoundError(GatewayError):
    """The gateway knows no such run or session (for this user): gone, or never theirs."""


_backends_lock = threading.Lock()


def gateway_backend(url: str, token: str | None, *, ca: str | None = None) -> GatewayBackend:
    """The backend for a gateway URL and token, one per process.

    Args:
        url: The gateway's URL (``http://host:port`` or ``https://...``).
        token: The user's token.
        ca: A CA file (PEM) for an ``https://`` gateway; the system's CAs when None.

    Returns:
        The backend.

    Raises:
        InvalidArgumentError: No token, or a URL that is not http(s).
    """
    if not token:
        raise InvalidArgumentError(
            "DOCKERMAGIC_TOKEN",
            "",
            f"a gateway ({url}) needs a token: set DOCKERMAGIC_TOKEN to the one your teacher gave",
        )
    if not url.startswith(("http://", "https://")):
        raise InvalidArgumentError("DOCKERMAGIC_GATEWAY", url, "expected an http(s) URL")
    key = (url.rstrip("/"), token, ca)
    with _backends_lock:
        backend = _backends.get(key)
        if backend is None:
            backend = _backends[key] = GatewayBackend(key[0], token, ca=ca)
        return backend


def _policy_request(policy: SandboxPolicy, limit: float | None) -> dict[str, Any]:
    """The policy fields a request asks for: those that differ from the library's defaults.

    A request that asks for nothing special gets the gateway's defaults (the
    teacher's ceiling may be lower than the library's); a timeout the caller
    named (``limit``) is always asked for, so that one over the ceiling fails.
    """
    plain = _plain_policy()
    asked = {
        name: getattr(policy, name)
        for name in _POLICY_FIELDS
        if getattr(policy, name) != getattr(plain, name)
    }
    if limit is not None:
        asked["timeout"] = limit
    return asked


_RUN_ID = re.compile(r"[0-9a-f]{1,64}")
_POLICY_FIELDS = tuple(f.name for f in dataclasses.fields(SandboxPolicy))


@functools.cache
def _plain_policy() -> SandboxPolicy:
    return SandboxPolicy()


def _limit(job: Job) -> float | None:
    return job.limit if job.timeout_given else None


class GatewayBackend:
    """Runs jobs on a gateway (a :class:`~dockermagic.runners.Backend`).

    Args:
        url: The gateway's URL.
        token: The user's token.
        ca: A CA file (PEM) for an ``https://`` gateway; the system's CAs when None.
    """

    def __init__(self, url: str, token: str, *, ca: str | None = None) -> None:
        self.url = url
        self._token = token
        self._ca = ca
        self._local = threading.local()
        self._info: dict[str, Any] | None = None
        # Every connection with the thread it serves: those of threads that
        # ended are closed when a new one opens, the rest with the backend.
        self._connections: list[tuple[threading.Thread, http.client.HTTPConnection]] = []
        self._connections_lock = threading.Lock()
        weakref.finalize(self, _close_all, self._connections, self._connections_lock)

    def __repr__(self) -> str:
        return f"GatewayBackend({self.url!r})"

    @property
    def address(self) -> str:
        """The gateway's URL."""
        return self.url

    # -- HTTP -------------------------------------------------------------------------------

    def _open(self, timeout: float) -> http.client.HTTPConnection:
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme == "https":
            return http.client.HTTPSConnection(
                parts.hostname or "",
                parts.port,
                timeout=timeout,
                context=ssl.create_default_context(cafile=self._ca),
            )
        return http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)

    def _connection(self) -> http.client.HTTPConnection:
        # One kept-alive connection per thread; a connection the gateway has
        # closed meanwhile (it restarted, or timed it out) is readable at
        # EOF: replaced before use, so a request is never sent twice.
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        if connection is not None and connection.sock is not None:
            readable, _, _ = select.select([connection.sock], [], [], 0)
            if readable:
                connection.close()
                connection = None
        if connection is None:
            connection = self._open(CONNECT_TIMEOUT)
            self._local.connection = connection
            with self._connections_lock:
                for owner, old in list(self._connections):
                    if not owner.is_alive():
                        old.close()
                        self._connections.remove((owner, old))
                self._connections.append((threading.current_thread(), connection))
        return connection

    def close(self) -> None:
        """Close every connection of this backend (a later call opens new ones)."""
        _close_all(self._connections, self._connections_lock)
        self._local = threading.local()

    def _forget_connection(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None
            with self._connections_lock:
                self._connections[:] = [p for p in self._connections if p[1] is not connection]

    def request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        timeout: float = 30.0,
    ) -> http.client.HTTPResponse:
        """Send one request; raise the gateway's error when it answers with one.

        Args:
            method: ``GET``, ``POST``, ``DELETE``.
            path: The endpoint after ``/v1``.
            body: A JSON body.
            timeout: Seconds of silence before giving up.

        Returns:
            The response (status 2xx), to be read to its end (or the
            connection forgotten).

        Raises:
            GatewayUnavailableError: No answer.
            DockermagicError: The gateway's error (the same class).
        """
        data = json.dumps(body).encode("utf-8") if body is not None else None
        headers = {"Authorization": f"token {self._token}"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        prefix = urllib.parse.urlsplit(self.url).path.rstrip("/")
        try:
            connection = self._connection()
            connection.request(method, f"{prefix}{API}{path}", body=data, headers=headers)
            if connection.sock is not None:
                connection.sock.settimeout(timeout)
            response = connection.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            self._forget_connection()
            raise GatewayUnavailableError(self.url, _reason(exc)) from exc
        if response.status >= 400:
            try:
                payload = json.loads(response.read(MAX_ERROR))
            except (OSError, http.client.HTTPException, ValueError):
                payload = None
                self._forget_connection()
            error = payload.get("error") if isinstance(payload, dict) else None
            if error is None:
                raise GatewayError(
                    f"The gateway at {self.url} answered {response.status}", url=self.url
                )
            if response.status == 404:
                raise NotFoundError(str(decode_error(error, url=self.url)), url=self.url)
            raise decode_error(error, url=self.url)
        return response

    def json(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """A request whose answer is one JSON value.

        Args:
            method: The HTTP method.
            path: The endpoint after ``/v1``.
            body: A JSON body.

        Returns:
            The parsed answer.
        """
        response = self.request(method, path, body)
        try:
            return json.loads(response.read())
        except (OSError, http.client.HTTPException) as exc:
            self._forget_connection()
            raise GatewayUnavailableError(self.url, _reason(exc)) from exc
        except ValueError as exc:
            raise GatewayError(f"The gateway at {self.url} answered with garbage") from exc

    def info(self) -> dict[str, Any]:
        """Who the gateway says we are, its images, ceiling and quotas (asked once).

        Returns:
            The gateway's answer.
        """
        if self._info is None:
            info = self.json("GET", "/info")
            if not isinstance(info, dict):
                raise GatewayError(f"The gateway at {self.url} answered with garbage")
            self._info = info
        return self._info

    # -- the Backend protocol ---------------------------------------------------------------

    def image(self, runner: AbstractDockerCodeRunner) -> str:
        """The image the gateway runs this runner's programs in (as far as it says)."""
        if runner.explicit_image:
            return runner.explicit_image
        listed = self.info().get("images", {}).get(runner.language)
        if isinstance(listed, list) and listed and isinstance(listed[0], str):
            return listed[0]
        return f"{runner.default_image} (the gateway's choice)"

    def execute(
        self,
        runner: AbstractDockerCodeRunner,
        job: Job,
        budget: CopyBudget,
        on_output: OutputCallback | None,
        on_display: DisplayCallback | None,
        cancel: threading.Event | None,
    ) -> RunResult:
        """Run a job on the gateway, streaming its output back.

        Returns:
            The result, as the gateway's runner made it.
        """
        body = {
            "language": runner.language,
            "image": runner.explicit_image,
            "requirements": list(runner.requirements),
            "limits": _policy_request(runner.policy, _limit(job)),
            "job": _job_body(job, budget),
        }
        result, _ = self.stream("/runs", body, job.limit, on_output, on_display, cancel)
        return result

    def session(self, name: str, runner: AbstractDockerCodeRunner) -> GatewaySession:
        """A session on the gateway (opened at its first use)."""
        return GatewaySession(self, name, runner)

    # -- streams ----------------------------------------------------------------------------

    def stream(
        self,
        path: str,
        body: Mapping[str, Any],
        limit: float,
        on_output: OutputCallback | None,
        on_display: DisplayCallback | None,
        cancel: threading.Event | None,
    ) -> tuple[RunResult, dict[str, Any]]:
        """Send a run or cell and follow its events to the result.

        Returns:
            The result and what the gateway said about the session.

        Raises:
            GatewayUnavailableError: The gateway went away.
            DockermagicError: The gateway's error for this run.
        """
        response = self.request("POST", path, body, timeout=limit + READ_SLACK)
        run_id: str | None = response.getheader(RUN_HEADER)
        if run_id is not None and not _RUN_ID.fullmatch(run_id):
            run_id = None  # it goes into a URL: only what the gateway makes
        finished = threading.Event()
        watcher: threading.Thread | None = None

        def watch() -> None:
            assert cancel is not None
            while not finished.is_set():
                if cancel.wait(0.05):
                    self._cancel(run_id)
                    return

        if cancel is not None and run_id:
            watcher = threading.Thread(target=watch, name="dockermagic-gateway-cancel", daemon=True)
            watcher.start()
        try:
            for event in self._events(response):
                kind = event.get("t")
                if kind == "out":
                    stream, text = event.get("s"), event.get("x")
                    if on_output is not None and stream in ("stdout", "stderr"):
                        on_output(str(stream), text if isinstance(text, str) else "")
                elif kind == "display":
                    data, metadata = event.get("data"), event.get("metadata")
                    if on_display is not None and isinstance(data, dict):
                        on_display(data, metadata if isinstance(metadata, dict) else {})
                elif kind == "result":
                    session = event.get("session")
                    found = (
                        decode_result(event.get("result")),
                        (session if isinstance(session, dict) else {}),
                    )
                    # Read to the stream's end: the connection then serves the
                    # next call (closed early, it would be thrown away).
                    for _ in self._events(response):
                        pass
                    return found
                elif kind == "error":
                    raise decode_error(event.get("error"), url=self.url)
            raise GatewayUnavailableError(self.url, "the gateway ended the run without a result")
        except (GatewayError, ValueError):
            raise  # the gateway's own answer, or garbage: the stream is over
        except BaseException:
            # Ctrl-C in the kernel, or a callback that raised: the program ends
            # there as it would here, and, as here, its container is gone
            # before the exception goes on (a bounded wait). The stream cannot
            # tell: an exception inside a read closes the connection.
            self._cancel(run_id, wait=INTERRUPT_WAIT)
            raise
        finally:
            finished.set()
            if not response.isclosed():
                # Left before its end: the connection cannot serve another request.
                self._forget_connection()

    def _events(self, response: http.client.HTTPResponse) -> Iterator[dict[str, Any]]:
        pending = b""
        try:
            while chunk := response.read1(READ_SIZE):
                pending += chunk
                if len(pending) > MAX_LINE:
                    raise GatewayError(f"The gateway at {self.url} sent an overlong line")
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    try:
                        event = json.loads(line)
                    except ValueError as exc:
                        raise GatewayError(
                            f"The gateway at {self.url} answered with garbage", url=self.url
                        ) from exc
                    if isinstance(event, dict):
                        yield event
        except (OSError, http.client.HTTPException) as exc:
            self._forget_connection()
            raise GatewayUnavailableError(self.url, _reason(exc)) from exc

    def _cancel(self, run_id: str | None, *, wait: float = 0.0) -> None:
        """Cancel a run; with ``wait``, until the gateway has ended it (or the time is up)."""
        if run_id is None:
            return
        # A connection of its own: this thread's is busy reading the stream.
        # A failure is no news: the stream's end says what happened.
        headers = {"Authorization": f"token {self._token}"}
        prefix = urllib.parse.urlsplit(self.url).path.rstrip("/")
        connection = self._open(10.0)
        try:
            connection.request("POST", f"{prefix}{API}/runs/{run_id}/cancel", headers=headers)
            connection.getresponse().read()
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                connection.request("GET", f"{prefix}{API}/runs", headers=headers)
                running = json.loads(connection.getresponse().read())
                if not any(isinstance(r, dict) and r.get("id") == run_id for r in running):
                    return
                time.sleep(0.05)
        except (OSError, http.client.HTTPException, ValueError, TypeError):
            pass
        finally:
            connection.close()


class GatewaySession:
    """A session on a gateway (a :class:`~dockermagic.runners.RemoteSession`).

    Args:
        backend: The gateway.
        name: The session's name.
        runner: Its language, image, limits and packages.
    """

    def __init__(self, backend: GatewayBackend, name: str, runner: AbstractDockerCodeRunner):
        self.backend = backend
        self.name = name
        self.runner = runner
        self.id: str | None = None
        self._restarts = 0
        self._runs = 0
        self._container = ""
        # The gateway's restart count when last seen: its increase is ours.
        self._restart_base = 0
        self._restart_reason = ""
        self._lock = threading.Lock()

    @property
    def restarts(self) -> int:
        """Interpreters replaced so far (seen by the gateway, or the gateway restarted)."""
        return self._restarts

    @property
    def runs(self) -> int:
        """Cells run."""
        return self._runs

    @property
    def restart_reason(self) -> str:
        """The gateway's words for the last restart ('' when it gave none)."""
        return self._restart_reason

    @property
    def container_name(self) -> str:
        """The container's name on the gateway's engine."""
        return self._container

    @property
    def alive(self) -> bool:
        """Whether the interpreter runs (asks the gateway)."""
        if self.id is None:
            return False
        try:
            view = self.backend.json("GET", f"/sessions/{self.id}")
        except GatewayError:
            return False
        return isinstance(view, dict) and view.get("alive") is True

    def _open(self) -> str:
        with self._lock:
            if self.id is None:
                view = self.backend.json(
                    "POST",
                    "/sessions",
                    {
                        "name": self.name,
                        "language": self.runner.language,
                        "image": self.runner.explicit_image,
                        "requirements": list(self.runner.requirements),
                        "limits": _policy_request(self.runner.policy, None),
                    },
                )
                if not isinstance(view, dict) or not isinstance(view.get("id"), str):
                    raise GatewayError("The gateway answered with garbage", url=self.backend.url)
                self.id = view["id"]
            return self.id

    def start(self) -> None:
        """Open the session on the gateway (its interpreter starts with the first cell)."""
        self._open()

    def reset(self) -> None:
        """Restart the interpreter."""
        self._call("POST", "reset")

    def stop(self) -> None:
        """End the session on the gateway; safe to call twice."""
        session_id, self.id = self.id, None
        if session_id is None:
            return
        # Gone already (the gateway restarted, or reaped it): stopped all the same.
        with contextlib.suppress(GatewayError):
            self.backend.json("DELETE", f"/sessions/{session_id}")

    def interrupt(self) -> bool:
        """Interrupt the running cell, if any.

        Returns:
            Whether the gateway had a cell of this session running.
        """
        if self.id is None:
            return False  # never opened, or stopped: nothing of it runs
        try:
            view = self.backend.json("POST", f"/sessions/{self.id}/interrupt")
        except NotFoundError:
            self.id = None  # the gateway lost it; the next cell opens it again
            return False
        return isinstance(view, dict) and view.get("interrupted") is True

    def _call(self, method: str, action: str) -> Any:
        session_id = self._open()
        try:
            return self.backend.json(method, f"/sessions/{session_id}/{action}")
        except NotFoundError:
            self.id = None
            return None

    def run(
        self,
        job: Job,
        budget: CopyBudget,
        on_output: OutputCallback | None,
        on_display: DisplayCallback | None,
        cancel: threading.Event | None,
    ) -> RunResult:
        """Run one cell on the gateway.

        Returns:
            The cell's result.
        """
        body = {
            "limits": _policy_request(self.runner.policy, _limit(job)),
            "job": _job_body(job, budget),
        }
        for attempt in (1, 2):
            session_id = self._open()
            try:
                result, view = self.backend.stream(
                    f"/sessions/{session_id}/run", body, job.limit, on_output, on_display, cancel
                )
            except NotFoundError:
                if attempt == 2:
                    raise
                # The gateway lost it (restarted, or the session sat idle too
                # long): a new interpreter, as after a crash.
                self.id = None
                self._restarts += 1
                self._restart_base = 0
                self._restart_reason = (
                    " was lost by the gateway (it restarted, or the session was idle)"
                )
                continue
            runs, restarts = view.get("runs"), view.get("restarts")
            if isinstance(runs, int):
                self._runs = runs
            if isinstance(restarts, int) and restarts > self._restart_base:
                self._restarts += restarts - self._restart_base
                reason = view.get("restart_reason")
                self._restart_reason = reason[:500] if isinstance(reason, str) else ""
            if isinstance(restarts, int):
                self._restart_base = restarts
            container = view.get("container")
            if isinstance(container, str):
                self._container = container
            return result
        raise AssertionError("unreachable")


def _job_body(job: Job, budget: CopyBudget) -> dict[str, Any]:
    work: dict[str, bytes] = {}
    for item in job.put:
        work.update(read_tree(item, budget=budget))
    return {
        "source": encode_bytes(job.source),
        "entry": job.entry,
        "code": {name: encode_bytes(data) for name, data in job.code.items()},
        "work": {name: encode_bytes(data) for name, data in work.items()},
        "stdin": encode_bytes(job.stdin) if job.stdin is not None else None,
        "inputs": dict(job.inputs) if job.inputs else None,
        "display_last": job.display_last,
        "get": list(job.get),
        "name": job.name,
        "first_line": job.first_line,
    }


def _close_all(
    connections: list[tuple[threading.Thread, http.client.HTTPConnection]], lock: threading.Lock
) -> None:
    with lock:
        for _, connection in connections:
            connection.close()
        connections.clear()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    if isinstance(exc, (ConnectionError, http.client.RemoteDisconnected)):
        return "connection refused or lost"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
