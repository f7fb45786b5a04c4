"""The gateway service: the run contract over HTTP, and nothing else.

``dockermagic gateway serve --config FILE`` holds the Docker engine; clients
(:mod:`dockermagic.gateway.client`) hold a token. Endpoints, all under
``/v1``, all needing ``Authorization: token <token>``:

=========================================  ===========================================
``GET  /info``                             who you are, languages and their images, the
                                           ceiling and quotas
``POST /runs``                             a one-shot run; the answer streams (JSON lines)
``GET  /runs``                             your running programs (a teacher's: all)
``POST /runs/{id}/cancel``                 cancel one
``POST /sessions``                         open (or find) a named session
``GET  /sessions``                         your sessions (a teacher's: all)
``GET  /sessions/{id}``                    one session
``POST /sessions/{id}/run``                a cell; the answer streams
``POST /sessions/{id}/interrupt|reset``    interrupt its cell; restart its interpreter
``DELETE /sessions/{id}``                  stop it
``GET  /status``                           teachers only: every user's programs,
                                           queue and sessions
=========================================  ===========================================

As a JupyterHub service that the Hub made its OAuth client, the gateway also
serves a page for browsers at the service's prefix (``/services/<name>/``,
through the Hub's proxy): the status as HTML (:mod:`dockermagic.gateway.page`),
a teacher's of everyone, a student's of their own, behind the Hub's login
(:mod:`dockermagic.gateway.oauth`; its callback beside it). Only ``/v1``
needs a token; the page needs the Hub's sign-in cookie instead.

A student's request for another student's run or session gets 404, as if it
did not exist. Requests are checked against the teacher's ceiling and the
user's quotas (:mod:`dockermagic.gateway.config`), wait their turn in the
fair queue (:mod:`dockermagic.gateway.scheduler`) and are recorded in the
audit log (:mod:`dockermagic.gateway.audit`). Unused sessions are stopped
after ``idle_timeout``; when the gateway stops, every run is cancelled and
every session's container removed (and a gateway that was killed has its
containers removed by :func:`~dockermagic.cleanup.cleanup` at its next start).

Runs execute in worker threads through the same runners and sessions as on
a laptop; the event loop only moves bytes. In front of a Docker Swarm
(``"swarm"`` in the configuration) one-shot runs are one-off tasks on the
cluster's nodes instead (:mod:`dockermagic.gateway.swarm`); sessions stay on
the manager's own engine.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import hashlib
import json
import logging
import os
import secrets
import signal
import ssl
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from dockermagic import __version__
from dockermagic.cleanup import cleanup
from dockermagic.engine import default_client
from dockermagic.errors import (
    AccessDeniedError,
    DockermagicError,
    GatewayError,
    InvalidArgumentError,
    LimitExceededError,
    QuotaExceededError,
)
from dockermagic.gateway.audit import AuditLog
from dockermagic.gateway.config import GatewayConfig, User
from dockermagic.gateway.hub import HubIdentity, HubUnavailableError
from dockermagic.gateway.oauth import BrowserLogin, oauth_missing
from dockermagic.gateway.page import PAGE_HEADERS, message_page, status_page
from dockermagic.gateway.scheduler import FairScheduler
from dockermagic.gateway.swarm import SwarmRuns
from dockermagic.gateway.wire import (
    API,
    RUN_HEADER,
    JobRequest,
    encode_error,
    encode_result,
    parse_job,
)
from dockermagic.images import image_digest
from dockermagic.labels import GATEWAY_USER
from dockermagic.memo import Memo
from dockermagic.policy import SandboxPolicy
from dockermagic.pool import close_pools
from dockermagic.result import RunResult
from dockermagic.runners import (
    AbstractDockerCodeRunner,
    get_runner,
    runner_class_for,
    runner_classes,
)
from dockermagic.sessions import Session

__all__ = ["GATEWAY_KEY", "LOGIN_KEY", "Gateway", "make_app", "serve"]

logger = logging.getLogger(__name__)

#: Seconds between "still queued" lines while a program waits for its turn.
HEARTBEAT = 5.0
#: Seconds of a quiet program between "still running" lines (and checks
#: that its client is still connected).
HANGUP_CHECK = 0.3
#: Runners kept (each may own a warm pool); the least recently used goes first.
MAX_RUNNERS = 32
#: Where the middleware leaves the request's user.
_USER = "dockermagic.user"


@dataclass
class _Program:
    """A run or a cell in progress (or waiting for its turn)."""

    id: str
    user: str
    language: str
    session: str | None
    started: float
    cancel: threading.Event = field(default_factory=threading.Event)
    running: bool = False
    #: What the final event adds about the session (a cell's), when anything.
    extra: Callable[[], dict[str, Any]] | None = None


@dataclass
class _SessionEntry:
    """A session the gateway keeps for one user."""

    id: str
    user: str
    name: str
    language: str
    session: Session
    policy: SandboxPolicy
    last_used: float
    #: Cells sent and not yet ended (they run one at a time, in order).
    cells: list[_Program] = field(default_factory=list)


class Gateway:
    """The gateway's state: users' programs, sessions, the queue, the audit log.

    Args:
        config: The teacher's configuration.
    """

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        quotas = config.quotas
        self.scheduler = FairScheduler(config.capacity, quotas.runs_at_once, quotas.queued)
        self.audit = AuditLog(config.audit_dir)
        # Programs run in threads; waiting ones wait in the event loop, not here.
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=config.capacity + 8, thread_name_prefix="gateway"
        )
        self.programs: dict[str, _Program] = {}
        self.sessions: dict[str, _SessionEntry] = {}
        self._session_ids: dict[tuple[str, str, str], str] = {}
        self._runners: Memo[tuple[Any, ...], AbstractDockerCodeRunner] = Memo(MAX_RUNNERS)
        self._cpu: dict[str, collections.deque[tuple[float, float]]] = {}
        self._reaper: asyncio.Task[None] | None = None
        self._images: dict[str, list[str]] | None = None
        self.stopping = False
        #: Asks the JupyterHub about tokens the configuration does not list.
        self.hub = HubIdentity(config.hub) if config.hub is not None else None
        #: One-shot runs as Swarm tasks (``"swarm"`` in the configuration), set at start.
        self.swarm: SwarmRuns | None = None

    @property
    def backend(self) -> str:
        """Where one-shot runs go: ``"swarm"`` or ``"local"`` (the gateway's engine)."""
        return "swarm" if self.config.swarm is not None else "local"

    # -- life -------------------------------------------------------------------------------

    async def start(self, app: web.Application) -> None:
        """Remove containers of gateways that died, start the idle-session reaper.

        Raises:
            InvalidArgumentError: The configuration asks for a Swarm and the
                engine is no Swarm manager.
        """
        if self.config.swarm is not None:
            self.swarm = await self._in_thread(
                SwarmRuns.open, self.config.swarm, self.config.capacity
            )
        # Also the Swarm services of gateways that died (their owner labels).
        removed = await self._in_thread(lambda: cleanup(default_client()))
        if removed:
            logger.info("removed %d containers of gone owners", len(removed))
        self._reaper = asyncio.create_task(self._reap_idle())

    async def stop(self, app: web.Application) -> None:
        """End everything: cancel every program, remove every session's container."""
        self.stopping = True
        if self._reaper is not None:
            self._reaper.cancel()
        for program in list(self.programs.values()):
            program.cancel.set()
        entries = list(self.sessions.values())
        self.sessions.clear()
        self._session_ids.clear()
        await asyncio.gather(
            *(self._in_thread(entry.session.stop) for entry in entries), return_exceptions=True
        )
        # Cancelled programs end within their grace; do not wait past it.
        deadline = time.monotonic() + 10
        while any(p.running for p in self.programs.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self.swarm is not None:
            await self._in_thread(self.swarm.close)
        await self._in_thread(close_pools)
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.audit.close()
        if self.hub is not None:
            await self.hub.close()

    async def user_for_token(self, token: str) -> User | None:
        """Who a token belongs to: a user the configuration lists, else the Hub's.

        Args:
            token: The token a request carried.

        Returns:
            The user, or None.

        Raises:
            HubUnavailableError: The Hub was asked and did not answer.
        """
        user = self.config.user_for_token(token)
        if user is None and self.hub is not None:
            user = await self.hub.user_for_token(token)
        return user

    async def _reap_idle(self) -> None:
        period = min(30.0, max(0.2, self.config.idle_timeout / 4))
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for entry in list(self.sessions.values()):
                if not entry.cells and now - entry.last_used > self.config.idle_timeout:
                    logger.info("stopping idle session %s of %s", entry.name, entry.user)
                    await self._drop_session(entry)

    def _in_thread(self, func: Callable[..., Any], *args: Any) -> Awaitable[Any]:
        return asyncio.get_running_loop().run_in_executor(self.executor, func, *args)

    # -- what a user may see ------------------------------------------------------------------

    def visible(self, user: User, owner: str) -> bool:
        """Whether ``user`` may see and control something of ``owner``'s."""
        return user.teacher or user.name == owner

    def runner(
        self,
        language: str,
        image: str | None,
        policy: SandboxPolicy,
        *,
        pooled: bool,
        packages: tuple[str, ...] = (),
    ) -> AbstractDockerCodeRunner:
        """A runner for these settings, kept for the next request like it.

        With ``packages`` (the teacher's allowed set), its image is derived
        from the base with them installed: built on the gateway's host at the
        first run that needs it (in that run's thread), looked up after.
        """
        return self._runners.get(
            (language, image, policy, pooled, packages),
            lambda: get_runner(
                language,
                image=image,
                policy=policy,
                pool=self.config.pool_size if pooled else 0,
                gateway=False,
                requirements=packages,
            ),
        )

    async def default_images(self) -> dict[str, list[str]]:
        """Per language, the images a request may name, the default first (asked once)."""
        if self._images is None:

            def resolve() -> dict[str, list[str]]:
                images: dict[str, list[str]] = {}
                for cls in runner_classes():
                    allowed = list(self.config.ceiling.images.get(cls.language, ()))
                    if not allowed:
                        with contextlib.suppress(DockermagicError):
                            allowed = [cls(gateway=False, pool=0).base_image]
                    images[cls.language] = allowed
                return images

            self._images = await self._in_thread(resolve)
        return self._images

    def check_cpu(self, user: User) -> None:
        """Refuse a program when the user's CPU seconds of the last hour are used up."""
        allowed = self.config.quotas.cpu_seconds_per_hour
        if allowed is None:
            return
        used = self._cpu_used(user.name)
        if used >= allowed:
            raise QuotaExceededError(
                "CPU seconds per hour", f"{allowed:g}", f"{used:.1f} used in the last hour"
            )

    def _cpu_used(self, name: str) -> float:
        history = self._cpu.get(name)
        if not history:
            return 0.0
        hour_ago = time.monotonic() - 3600
        while history and history[0][0] < hour_ago:
            history.popleft()
        return sum(seconds for _, seconds in history)

    def account(self, user: str, result: RunResult) -> None:
        """Count a finished program's CPU time against its user."""
        if result.cpu_seconds:
            self._cpu.setdefault(user, collections.deque()).append(
                (time.monotonic(), result.cpu_seconds)
            )

    def status(self) -> dict[str, Any]:
        """Every user's programs, queue and sessions (for teachers)."""
        # Listed users, and those the Hub named who used the gateway.
        names = {*self.config.users, *self._cpu}
        names.update(p.user for p in self.programs.values())
        names.update(e.user for e in self.sessions.values())
        users: dict[str, dict[str, Any]] = {
            name: {"running": 0, "waiting": 0, "sessions": 0, "cpu_seconds_last_hour": 0.0}
            for name in sorted(names)
        }
        for program in self.programs.values():
            users[program.user]["running" if program.running else "waiting"] += 1
        for entry in self.sessions.values():
            users[entry.user]["sessions"] += 1
        for name, row in users.items():
            row["cpu_seconds_last_hour"] = round(self._cpu_used(name), 3)
        return {
            "version": __version__,
            "backend": self.backend,
            "capacity": self.config.capacity,
            "running": self.scheduler.total,
            "waiting": self.scheduler.waiting(),
            "users": users,
            "programs": [_program_view(p) for p in self.programs.values()],
            "sessions": [_session_view(e) for e in self.sessions.values()],
        }

    # -- runs and cells ---------------------------------------------------------------------

    async def stream(
        self,
        request: web.Request,
        user: User,
        program: _Program,
        work: Callable[[Callable[[dict[str, Any]], None], threading.Event], RunResult],
        audit: Callable[[RunResult | None, str], None],
    ) -> web.StreamResponse:
        """Queue a program, run it in a thread and stream its events to the client.

        Args:
            request: The HTTP request.
            user: Who asked.
            program: The program's bookkeeping (its cancel event included).
            work: Runs the program in a worker thread: given a function that
                sends an event and the cancel event, returns the result.
            audit: Records the outcome (the result, or None and the error text).

        Returns:
            The streamed response.
        """
        if self.scheduler.waiting(user.name) >= self.config.quotas.queued and (
            self.scheduler.running[user.name] >= self.config.quotas.runs_at_once
        ):
            raise QuotaExceededError(
                "programs waiting",
                self.config.quotas.queued,
                f"{self.config.quotas.runs_at_once} of yours are running",
            )
        # The run's id travels in a header (a client can cancel at once); the
        # last event travels with the stream's end: a quick cell is two writes.
        response = web.StreamResponse(
            headers={"Content-Type": "application/x-ndjson", RUN_HEADER: program.id}
        )
        response.enable_chunked_encoding()
        await response.prepare(request)
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        gone = False
        tail = b""

        def last(event: dict[str, Any]) -> None:
            nonlocal tail
            tail = json.dumps(event).encode("utf-8") + b"\n"

        async def send(event: dict[str, Any]) -> None:
            nonlocal gone
            if gone:
                return
            try:
                await response.write(json.dumps(event).encode("utf-8") + b"\n")
            except (ConnectionError, RuntimeError):
                # The client went away: nobody wants the rest; end the program.
                gone = True
                program.cancel.set()

        self.programs[program.id] = program
        try:
            if self.scheduler.try_acquire(user.name):
                acquire: asyncio.Future[None] = loop.create_future()
                acquire.set_result(None)
            else:
                acquire = asyncio.ensure_future(self.scheduler.acquire(user.name))
            try:
                while True:
                    done, _ = await asyncio.wait({acquire}, timeout=HEARTBEAT)
                    if done:
                        acquire.result()
                        break
                    if program.cancel.is_set() or self.stopping:
                        acquire.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await acquire
                        break
                    await send({"t": "queued", "waiting": self.scheduler.waiting(user.name)})
            except QuotaExceededError as exc:
                last({"t": "error", "error": encode_error(exc)})
                return response
            if acquire.cancelled():
                error = GatewayError("The run was cancelled while it waited for its turn")
                last({"t": "error", "error": encode_error(error)})
                await self._in_thread(audit, None, "cancelled while queued")
                return response
            try:
                program.running = True

                def emit(event: dict[str, Any]) -> None:
                    loop.call_soon_threadsafe(events.put_nowait, event)

                def job() -> None:
                    # In the worker thread, to the end: the result goes out as
                    # soon as it is there; the audit record (the image's digest
                    # may take an engine call) is written while it travels, and
                    # before the stream ends, so a client that saw the end
                    # finds its record.
                    try:
                        result = work(emit, program.cancel)
                    except DockermagicError as exc:
                        emit({"t": "error", "error": encode_error(exc)})
                        audit(None, str(exc))
                    except Exception as exc:  # a bug must not leave the client hanging
                        logger.exception("run %s failed", program.id)
                        error = GatewayError(f"The gateway failed: {type(exc).__name__}")
                        emit({"t": "error", "error": encode_error(error)})
                        audit(None, f"internal error: {exc}")
                    else:
                        final: dict[str, Any] = {"t": "result", "result": encode_result(result)}
                        if program.extra is not None:
                            final["session"] = program.extra()
                        emit(final)
                        loop.call_soon_threadsafe(self.account, user.name, result)
                        audit(result, "")
                    finally:
                        emit_end()

                def emit_end() -> None:
                    loop.call_soon_threadsafe(events.put_nowait, None)

                future = loop.run_in_executor(self.executor, job)
                while True:
                    try:
                        event = await asyncio.wait_for(events.get(), HANGUP_CHECK)
                    except asyncio.TimeoutError:
                        # A quiet program: a line now and then tells a client
                        # blocked in a read that all is well (its Ctrl-C is
                        # then seen at once), and tells us whether it listens.
                        if request.transport is None or request.transport.is_closing():
                            gone = True
                            program.cancel.set()
                        await send({"t": "beat"})
                        continue
                    if event is None:
                        break
                    if event["t"] in ("result", "error"):
                        last(event)  # sent with the stream's end
                    else:
                        await send(event)
                await future
            finally:
                program.running = False
                self.scheduler.release(user.name)
        finally:
            self.programs.pop(program.id, None)
            with contextlib.suppress(ConnectionError, RuntimeError):
                await response.write_eof(tail)
        return response

    def record(
        self,
        user: User,
        *,
        kind: str,
        language: str,
        image: str,
        runner: AbstractDockerCodeRunner,
        source: bytes,
        policy: SandboxPolicy,
        result: RunResult | None,
        error: str,
        session: str | None = None,
    ) -> None:
        """Write one audit record."""
        record: dict[str, Any] = {
            "user": user.name,
            "kind": kind,
            "session": session,
            "language": language,
            "image": result.image if result is not None else image,
            "image_digest": "",
            "code_sha256": hashlib.sha256(source).hexdigest(),
            "limits": {
                "timeout": policy.timeout,
                "memory": policy.memory,
                "cpus": policy.cpus,
                "pids_limit": policy.pids_limit,
                "output_limit": policy.output_limit,
                "network": policy.network,
            },
        }
        if result is not None:
            with contextlib.suppress(DockermagicError):
                record["image_digest"] = image_digest(runner.client, result.image)
            record.update(
                status=str(result.status),
                exit_code=result.exit_code,
                duration=round(result.duration, 4),
                cpu_seconds=result.cpu_seconds,
                peak_memory_bytes=result.peak_memory_bytes,
                container=result.container_name,
            )
            if result.node:
                # The Swarm node that ran it (a run on the gateway's engine has none).
                record["node"] = result.node
                if self.swarm is not None:
                    record["node_name"] = self.swarm.node_name(result.node)
        else:
            record.update(status="error", error=error)
        self.audit.write(record)

    async def _drop_session(self, entry: _SessionEntry) -> None:
        self.sessions.pop(entry.id, None)
        self._session_ids.pop((entry.user, entry.name, entry.language), None)
        for cell in entry.cells:
            cell.cancel.set()
        await self._in_thread(entry.session.stop)


#: Where the application keeps its :class:`Gateway`.
GATEWAY_KEY = web.AppKey("gateway", Gateway)


def _program_view(program: _Program) -> dict[str, Any]:
    return {
        "id": program.id,
        "user": program.user,
        "language": program.language,
        "session": program.session,
        "state": "running" if program.running else "waiting",
        "seconds": round(time.monotonic() - program.started, 3),
    }


def _session_view(entry: _SessionEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "user": entry.user,
        "name": entry.name,
        "language": entry.language,
        "runs": entry.session.runs,
        "restarts": entry.session.restarts,
        "container": entry.session.container_name,
        "busy": bool(entry.cells),
        "idle_seconds": round(time.monotonic() - entry.last_used, 3),
    }


# -- HTTP ----------------------------------------------------------------------------------


def _error(status: int, exc: DockermagicError) -> web.Response:
    return web.json_response({"error": encode_error(exc)}, status=status)


def _status_for(exc: DockermagicError) -> int:
    if isinstance(exc, AccessDeniedError):
        return 403
    if isinstance(exc, LimitExceededError):
        return 403
    if isinstance(exc, QuotaExceededError):
        return 429
    if isinstance(exc, InvalidArgumentError):
        return 400
    return 500


@web.middleware
async def _guard(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Authenticate every API request; turn dockermagic's errors into JSON answers."""
    if not request.path.startswith(f"{API}/"):
        # The browser's pages: the Hub's sign-in cookie, checked by their handlers.
        return await handler(request)
    gateway = request.app[GATEWAY_KEY]
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    try:
        user = (
            await gateway.user_for_token(token.strip())
            if scheme.lower() in ("token", "bearer") and 0 < len(token) <= 512
            else None
        )
    except HubUnavailableError as exc:
        # Not the token's fault: the client may try again.
        return _error(503, exc)
    if user is None:
        return _error(401, AccessDeniedError("The gateway does not know this token"))
    request[_USER] = user
    try:
        return await handler(request)
    except DockermagicError as exc:
        return _error(_status_for(exc), exc)


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except (ValueError, RecursionError) as exc:  # RecursionError: nesting a mile deep
        raise InvalidArgumentError("request", "body", "expected a JSON object") from exc
    if not isinstance(data, dict):
        raise InvalidArgumentError("request", type(data).__name__, "expected a JSON object")
    return data


def _limits(data: Mapping[str, Any]) -> dict[str, Any]:
    limits = data.get("limits", {})
    if not isinstance(limits, dict) or len(limits) > 32:
        raise InvalidArgumentError("limits", "…", "expected an object of limits")
    return limits


def _image(data: Mapping[str, Any]) -> str | None:
    image = data.get("image")
    if image is not None and not (isinstance(image, str) and 0 < len(image) <= 256):
        raise InvalidArgumentError("image", "…", "expected an image name")
    return image


def _materialise(folder: str, work: Mapping[str, bytes]) -> list[str]:
    """Write a job's working-directory files under the gateway's temporary folder.

    Names were checked by :func:`~dockermagic.gateway.wire.parse_job` (relative,
    no ``..``); the folder is new and private, so nothing a client names
    reaches anything else on the host.

    Returns:
        The top-level entries, as ``put=`` takes them.
    """
    tops: set[str] = set()
    for rel, content in work.items():
        path = Path(folder, rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        tops.add(rel.split("/", 1)[0])
    return [os.path.join(folder, top) for top in sorted(tops)]


def _call(
    target: Any,
    job: JobRequest,
    emit: Callable[[dict[str, Any]], None],
    cancel: threading.Event,
    timeout: float | None,
    labels: Mapping[str, str] | None,
) -> RunResult:
    """Run a job on a runner or a session (in a worker thread)."""

    def on_output(stream: str, text: str) -> None:
        emit({"t": "out", "s": stream, "x": text})

    def on_display(data: dict[str, Any], metadata: dict[str, Any]) -> None:
        emit({"t": "display", "data": data, "metadata": metadata})

    with contextlib.ExitStack() as stack:
        # A folder only for files to put in the working directory (rarely).
        folder = (
            stack.enter_context(tempfile.TemporaryDirectory(prefix="dockermagic-gateway-"))
            if job.work
            else ""
        )
        kwargs: dict[str, Any] = {
            "timeout": timeout,
            "stdin": job.stdin,
            "on_output": on_output,
            "on_display": on_display,
            "files": {k: v for k, v in job.code.items() if k != job.entry},
            "filename": job.entry,
            "cancel": cancel,
            "inputs": job.inputs,
            "display_last": job.display_last,
            "put": _materialise(folder, job.work) if folder else [],
            "get": job.get,
            "name": job.name,
            "first_line": job.first_line,
        }
        if labels is not None:
            kwargs["labels"] = labels
        result: RunResult = target.run(job.source, **kwargs)
        return result


async def _info(request: web.Request) -> web.Response:
    gateway, user = request.app[GATEWAY_KEY], request[_USER]
    config = gateway.config
    images = await gateway.default_images()
    return web.json_response(
        {
            "version": __version__,
            "backend": gateway.backend,
            "user": user.name,
            "teacher": user.teacher,
            "network": user.network,
            "images": images,
            "packages": {lang: list(specs) for lang, specs in config.ceiling.packages.items()},
            "ceiling": dict(config.ceiling.limits),
            "quotas": {
                "runs_at_once": config.quotas.runs_at_once,
                "queued": config.quotas.queued,
                "sessions": config.quotas.sessions,
                "cpu_seconds_per_hour": config.quotas.cpu_seconds_per_hour,
            },
        }
    )


async def _run(request: web.Request) -> web.StreamResponse:
    gateway, user = request.app[GATEWAY_KEY], request[_USER]
    data = await _body(request)
    language_name = data.get("language")
    if not isinstance(language_name, str) or len(language_name) > 64:
        raise InvalidArgumentError("language", "…", "expected a language name")
    language = runner_class_for(language_name).language
    policy = gateway.config.policy_for(user, _limits(data))
    image = gateway.config.image_for(language, _image(data))
    packages = gateway.config.packages_for(language, data.get("requirements"))
    gateway.check_cpu(user)
    job = parse_job(data.get("job"), policy.copy_limit)
    swarm = gateway.swarm
    if swarm is not None:
        swarm.check_job(job, policy, packages)
        runner = swarm.runner(language, image, policy)
    else:
        pooled = not _limits(data) and not job.work
        runner = gateway.runner(language, image, policy, pooled=pooled, packages=packages)
    program = _Program(
        id=secrets.token_hex(8),
        user=user.name,
        language=language,
        session=None,
        started=time.monotonic(),
    )

    def work(emit: Callable[[dict[str, Any]], None], cancel: threading.Event) -> RunResult:
        if swarm is not None:

            def on_output(stream: str, text: str) -> None:
                emit({"t": "out", "s": stream, "x": text})

            return swarm.run(runner, job, on_output, cancel, user.name)
        return _call(runner, job, emit, cancel, None, {GATEWAY_USER: user.name})

    def audit(result: RunResult | None, error: str) -> None:
        gateway.record(
            user,
            kind="run",
            language=language,
            image=image or "",
            runner=runner,
            source=job.source,
            policy=policy,
            result=result,
            error=error,
        )

    return await gateway.stream(request, user, program, work, audit)


async def _runs(request: web.Request) -> web.Response:
    gateway, user = request.app[GATEWAY_KEY], request[_USER]
    return web.json_response(
        [_program_view(p) for p in gateway.programs.values() if gateway.visible(user, p.user)]
    )


async def _cancel(request: web.Request) -> web.Response:
    gateway, user = request.app[GATEWAY_KEY], request[_USER]
    program = gateway.programs.get(request.match_info["id"])
    if program is None or not gateway.visible(user, program.user):
        return _not_found("run")
    program.cancel.set()
    return web.json_response({"cancelled": program.id})


def _not_found(what: str) -> web.Response:
    # The same answer whether it does not exist or is someone else's.
    return _error(404, GatewayError(f"No such {what} (or it is not yours)"))


async def _open_session(request: web.Request) -> web.Response:
    gateway, user = request.app[GATEWAY_KEY], request[_USER]
    data = await _body(request)
    name, language_name = data.get("name"), data.get("language")
    if not isinstance(language_name, str) or len(language_name) > 64:
        raise InvalidArgumentError("language", "…", "expected a language name")
    if not isinstance(name, str) or len(name) > 63:
        raise InvalidArgumentError("session name", "…", "expected a short name")
    language = runner_class_for(language_name).language
    policy = gateway.config.policy_for(user, _limits(data))
    image = gateway.config.image_for(language, _image(data))
    packages = gateway.config.packages_for(language, data.get("requirements"))
    key = (user.name, name, language)
    existing = gateway._session_ids.get(key)
    if existing is not None and existing in gateway.sessions:
        entry = gateway.sessions[existing]
        entry.last_used = time.monotonic()
        return web.json_response(_session_view(entry))
    own = sum(1 for e in gateway.sessions.values() if e.user == user.name)
    if own >= gateway.config.quotas.sessions:
        raise QuotaExceededError("sessions", gateway.config.quotas.sessions, f"{own} open")
    runner = get_runner(
        language,
        image=image,
        policy=policy,
        labels={GATEWAY_USER: user.name},
        pool=0,
        gateway=False,
        requirements=packages,
    )
    entry = _SessionEntry(
        id=secrets.token_hex(8),
        user=user.name,
        name=name,
        language=language,
        session=Session(name, runner),
        policy=policy,
        last_used=time.monotonic(),
    )
    gateway.sessions[entry.id] = entry
    gateway._session_ids[key] = entry.id
    return web.json_response(_session_view(entry), status=201)


def _entry(request: web.Request) -> _SessionEntry | None:
    gateway, user = request.app[GATEWAY_KEY], request[_USER]
    entry = gateway.sessions.get(request.match_info["id"])
    if entry is None or not gateway.visible(user, entry.user):
        return None
    return entry


async def _sessions(request: web.Request) -> web.Response:
    gateway, user = request.app[GATEWAY_KEY], request[_USER]
    return web.json_response(
        [_session_view(e) for e in gateway.sessions.values() if gateway.visible(user, e.user)]
    )


async def _session(request: web.Request) -> web.Response:
    entry = _entry(request)
    if entry is None:
        return _not_found("session")
    gateway = request.app[GATEWAY_KEY]
    view = _session_view(entry)
    view["alive"] = await gateway._in_thread(lambda: entry.session.alive)
    return web.json_response(view)


async def _cell(request: web.Request) -> web.StreamResponse:
    gateway, user = request.app[GATEWAY_KEY], request[_USER]
    entry = _entry(request)
    if entry is None:
        return _not_found("session")
    data = await _body(request)
    # Per cell only the timeout may change; the container's limits are fixed.
    policy = gateway.config.policy_for(user, _limits(data))
    gateway.check_cpu(user)
    job = parse_job(data.get("job"), entry.policy.copy_limit)
    program = _Program(
        id=secrets.token_hex(8),
        user=entry.user,
        language=entry.language,
        session=entry.name,
        started=time.monotonic(),
    )
    program.extra = lambda: {
        "runs": entry.session.runs,
        "restarts": entry.session.restarts,
        "restart_reason": entry.session.restart_reason,
        "container": entry.session.container_name,
    }
    session = entry.session

    def work(emit: Callable[[dict[str, Any]], None], cancel: threading.Event) -> RunResult:
        return _call(session, job, emit, cancel, policy.timeout, None)

    def audit(result: RunResult | None, error: str) -> None:
        gateway.record(
            user,
            kind="cell",
            session=entry.name,
            language=entry.language,
            image="",
            runner=session.runner,
            source=job.source,
            policy=entry.policy.replace(timeout=policy.timeout),
            result=result,
            error=error,
        )

    entry.cells.append(program)
    entry.last_used = time.monotonic()
    try:
        return await gateway.stream(request, user, program, work, audit)
    finally:
        entry.cells.remove(program)
        entry.last_used = time.monotonic()


async def _interrupt(request: web.Request) -> web.Response:
    entry = _entry(request)
    if entry is None:
        return _not_found("session")
    # The oldest cell is the one running (cells run in the order they came).
    if entry.cells:
        entry.cells[0].cancel.set()
    return web.json_response({"interrupted": bool(entry.cells)})


async def _reset(request: web.Request) -> web.Response:
    entry = _entry(request)
    if entry is None:
        return _not_found("session")
    gateway = request.app[GATEWAY_KEY]
    for cell in entry.cells:
        cell.cancel.set()
    await gateway._in_thread(entry.session.reset)
    entry.last_used = time.monotonic()
    return web.json_response(_session_view(entry))


async def _stop_session(request: web.Request) -> web.Response:
    entry = _entry(request)
    if entry is None:
        return _not_found("session")
    await request.app[GATEWAY_KEY]._drop_session(entry)
    return web.json_response({"stopped": entry.id})


async def _status(request: web.Request) -> web.Response:
    gateway, user = request.app[GATEWAY_KEY], request[_USER]
    if not user.teacher:
        raise AccessDeniedError("Only a teacher sees the gateway's status")
    return web.json_response(await _status_view(gateway))


async def _status_view(gateway: Gateway) -> dict[str, Any]:
    """The whole status (the API's and the page's), with a Swarm's nodes when there is one."""
    view = gateway.status()
    if gateway.swarm is not None:
        with contextlib.suppress(DockermagicError):
            view["nodes"] = await gateway._in_thread(gateway.swarm.nodes)
    return view


#: Where the application keeps its :class:`~dockermagic.gateway.oauth.BrowserLogin`.
LOGIN_KEY = web.AppKey("login", BrowserLogin)


async def _page(request: web.Request) -> web.Response:
    """The status page of the browser's Hub user (a sign-in through the Hub first)."""
    gateway, login = request.app[GATEWAY_KEY], request.app[LOGIN_KEY]
    try:
        user = await login.user(request)
    except HubUnavailableError as exc:
        return web.Response(
            text=message_page("The Hub does not answer", str(exc), login.prefix),
            status=503,
            content_type="text/html",
            headers=PAGE_HEADERS,
        )
    if user is None:
        return login.sign_in(request)
    return web.Response(
        text=status_page(await _status_view(gateway), user),
        content_type="text/html",
        headers=PAGE_HEADERS,
    )


async def _to_prefix(request: web.Request) -> web.Response:
    return web.Response(status=302, headers={"Location": request.app[LOGIN_KEY].prefix})


def _add_browser_login(app: web.Application, environ: Mapping[str, str]) -> None:
    """The status page behind the Hub's login, when the Hub made the gateway its OAuth client."""
    hub = app[GATEWAY_KEY].hub
    if hub is None:
        return
    missing = oauth_missing(environ)
    if missing:
        if environ.get("JUPYTERHUB_CLIENT_ID"):
            logger.warning("no status page for browsers: %s", missing)
        return
    login = BrowserLogin(hub, environ)
    app[LOGIN_KEY] = login
    app.on_cleanup.append(lambda _: login.close())
    app.router.add_get(login.prefix, _page)
    if login.prefix.rstrip("/"):
        # The Hub's proxy forwards the prefix without its slash here too.
        app.router.add_get(login.prefix.rstrip("/"), _to_prefix)
    app.router.add_get(login.callback_path, login.callback)
    logger.info("status page for the Hub's users at %s", login.prefix)


def make_app(config: GatewayConfig, environ: Mapping[str, str] | None = None) -> web.Application:
    """The gateway as an aiohttp application.

    Args:
        config: The teacher's configuration.
        environ: Where the ``JUPYTERHUB_*`` variables of a Hub service are
            read (default: the process's environment).

    Returns:
        The application (its start-up removes dead gateways' containers; its
        shutdown ends every program and session).
    """
    gateway = Gateway(config)
    app = web.Application(middlewares=[_guard], client_max_size=config.max_request_bytes)
    app[GATEWAY_KEY] = gateway
    app.on_startup.append(gateway.start)
    app.on_shutdown.append(gateway.stop)
    app.router.add_get(f"{API}/info", _info)
    app.router.add_post(f"{API}/runs", _run)
    app.router.add_get(f"{API}/runs", _runs)
    app.router.add_post(f"{API}/runs/{{id}}/cancel", _cancel)
    app.router.add_post(f"{API}/sessions", _open_session)
    app.router.add_get(f"{API}/sessions", _sessions)
    app.router.add_get(f"{API}/sessions/{{id}}", _session)
    app.router.add_post(f"{API}/sessions/{{id}}/run", _cell)
    app.router.add_post(f"{API}/sessions/{{id}}/interrupt", _interrupt)
    app.router.add_post(f"{API}/sessions/{{id}}/reset", _reset)
    app.router.add_delete(f"{API}/sessions/{{id}}", _stop_session)
    app.router.add_get(f"{API}/status", _status)
    _add_browser_login(app, os.environ if environ is None else environ)
    return app


def serve(config: GatewayConfig, *, on_ready: Callable[[str], None] | None = None) -> None:
    """Run the gateway until SIGINT or SIGTERM (then end every container).

    Args:
        config: The teacher's configuration.
        on_ready: Called with the URL once the gateway listens (the port is
            chosen by the system when the configuration says 0).
    """
    app = make_app(config)
    runner = web.AppRunner(app, handle_signals=False)

    async def main() -> None:
        await runner.setup()
        context = None
        if config.tls_cert:
            # Tokens must not cross a classroom's network in the clear.
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(config.tls_cert, config.tls_key)
        site = web.TCPSite(runner, config.host, config.port, ssl_context=context)
        await site.start()
        if on_ready is not None:
            host, port = runner.addresses[0][:2]
            on_ready(f"{'https' if context else 'http'}://{host}:{port}")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            # Shutdown hooks end every program and session before the loop goes.
            await runner.cleanup()

    asyncio.run(main())
