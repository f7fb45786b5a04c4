"""One task's life: its configs and service made, its start awaited, its run watched, removed.

:class:`SwarmTask` makes a config per file and then the one-replica service
of :func:`~dockermagic.swarm.task.service_spec` (the manager schedules its
task at once), polls the task's state until its container runs, reads the
service's log (live, through :class:`LogStream`, or whole) and removes the
service (which kills a running task) and its configs. :class:`TaskProgram`
is the running task as :func:`~dockermagic.supervisor.supervise` sees it:
output from the live log, completed from the whole log when the task is
over, the wrapper's marker lines kept apart.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import docker
import docker.errors
from docker.types import CancellableStream

from dockermagic.container import CALL_TIMEOUT, engine_call
from dockermagic.errors import DockermagicError, InvalidArgumentError, SwarmError
from dockermagic.policy import size_text
from dockermagic.streams import STDERR, DemuxDecoder
from dockermagic.supervisor import Event, Exited, Output, StopReason, StreamEnded
from dockermagic.swarm.cluster import api_error, remove_configs, remove_services
from dockermagic.swarm.task import (
    CONFIG_LIMIT,
    MARKER,
    NOT_ISOLATED_EXIT,
    LogLine,
    TaskSpec,
    TaskState,
    service_spec,
)

__all__ = ["START_TIMEOUT", "SwarmTask", "TaskProgram"]

logger = logging.getLogger(__name__)

#: Seconds a task may take to start (scheduled, image found, container started).
START_TIMEOUT = 60.0
#: Seconds between looks at a task's state while it runs, at first and at most.
POLL_FIRST = 0.05
POLL_MAX = 0.25


# -- the task's log --------------------------------------------------------------------


class LogStream:
    """A task's log as it is written (a ``follow`` request read by a thread).

    The request never ends by itself (a service's log is followed across
    tasks), so :meth:`close` ends it from the outside.

    Args:
        client: A client of the manager.
        service_id: The service.
    """

    def __init__(self, client: docker.DockerClient, service_id: str) -> None:
        self.client = client
        self.service_id = service_id
        self.lines: queue.Queue[LogLine] = queue.Queue()
        self.error = ""
        self._stream: CancellableStream[bytes] | None = None
        self._response: Any = None
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._read, name="dockermagic-swarm-log", daemon=True
        )
        self._thread.start()

    def _read(self) -> None:
        try:
            response = _log_request(self.client, self.service_id, follow=True)
            with self._lock:
                self._response = response
                self._stream = CancellableStream(
                    response.raw.stream(65536, decode_content=False), response
                )
                if self._closed.is_set():
                    self._close_stream()
                    return
            decoder = DemuxDecoder()
            for chunk in self._stream:
                for stream, payload in decoder.feed(chunk):
                    self.lines.put(LogLine.parse(stream, payload))
        except Exception as exc:  # the final read completes what was missed
            if not self._closed.is_set():
                self.error = f"{type(exc).__name__}: {exc}"
                logger.debug("log stream of %s ended: %s", self.service_id, self.error)

    def get(self, timeout: float) -> list[LogLine]:
        """What arrived, waiting up to ``timeout`` seconds for the first line.

        Args:
            timeout: Seconds.

        Returns:
            The lines, in order (maybe none).
        """
        try:
            lines = [self.lines.get(timeout=max(timeout, 0.0))]
        except queue.Empty:
            return []
        with contextlib.suppress(queue.Empty):
            for _ in range(10000):
                lines.append(self.lines.get_nowait())
        return lines

    def close(self) -> None:
        """End the request (safe to call twice, from any thread)."""
        self._closed.set()
        with self._lock:
            self._close_stream()

    def _close_stream(self) -> None:
        if self._stream is None:
            return
        try:
            self._stream.close()
        except Exception:
            # Streams over docker-py's paramiko transport cannot be cancelled:
            # close the response instead (its thread ends with the connection).
            with contextlib.suppress(Exception):
                self._response.close()


def _log_request(client: docker.DockerClient, service_id: str, *, follow: bool) -> Any:
    """``GET /services/<id>/logs`` with both streams in one multiplexed response.

    docker-py's ``service_logs`` drops the stream of each frame, so two calls
    would be needed (and their order lost): the request is made with the
    client's own session instead.
    """
    api = client.api
    url = f"{api.base_url}/v{api.api_version}/services/{service_id}/logs"
    params = {"stdout": 1, "stderr": 1, "timestamps": 1, "follow": int(follow)}
    # Connect within the usual time; a followed log may be quiet for long.
    response = api.get(
        url, params=params, stream=True, timeout=(CALL_TIMEOUT, None if follow else 60)
    )
    if response.status_code == 404:
        raise docker.errors.NotFound(f"service {service_id} not found", response=response)
    response.raise_for_status()
    return response


# -- one task ------------------------------------------------------------------------


class SwarmTask:
    """One script as a one-off service: its configs, its service, its one task.

    Use :meth:`create`; :meth:`remove` always (also as a context manager).

    Args:
        client: A client of the manager.
        spec: What runs.
        service_id: The service's id.
        config_ids: Its configs' ids.
    """

    def __init__(
        self,
        client: docker.DockerClient,
        spec: TaskSpec,
        service_id: str,
        config_ids: Sequence[str],
    ) -> None:
        self.client = client
        self.spec = spec
        self.service_id = service_id
        self.config_ids = tuple(config_ids)
        self.removed = False
        self.last: TaskState | None = None

    @property
    def name(self) -> str:
        """The service's name."""
        return self.spec.name

    def __enter__(self) -> SwarmTask:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    @classmethod
    def create(cls, client: docker.DockerClient, spec: TaskSpec) -> SwarmTask:
        """Make the configs and the service; the manager schedules its task at once.

        Args:
            client: A client of the manager.
            spec: What runs.

        Returns:
            The task.

        Raises:
            InvalidArgumentError: A file is larger than
                :data:`~dockermagic.swarm.task.CONFIG_LIMIT`.
            SwarmError: The manager refused (nothing is left behind).
            EngineUnavailableError: No engine answers.
        """
        for rel, data in spec.files.items():
            if len(data) > CONFIG_LIMIT:
                raise InvalidArgumentError(
                    "file",
                    rel,
                    f"is {size_text(len(data))}: a Swarm config holds at most "
                    f"{size_text(CONFIG_LIMIT)} (put larger inputs into the image)",
                )
        config_ids: list[str] = []

        def create_config(name: str, data: bytes) -> str:
            made = client.api.create_config(name, data, labels=dict(spec.labels))
            return str(made["ID"])

        try:
            for index, rel in enumerate(sorted(spec.files)):
                name, data = f"{spec.name}-{index}", spec.files[rel]
                config_ids.append(
                    engine_call("create config", functools.partial(create_config, name, data))
                )
            kwargs = service_spec(spec, config_ids)
            made = engine_call(
                "create service",
                lambda: client.api.create_service(**kwargs),  # type: ignore[no-untyped-call]
            )
        except docker.errors.APIError as exc:
            remove_configs(client, config_ids)
            raise api_error("create a service", exc) from exc
        except BaseException:
            remove_configs(client, config_ids)
            raise
        logger.debug("service %s created for %s", spec.name, spec.command)
        return cls(client, spec, str(made["ID"]), config_ids)

    def state(self) -> TaskState:
        """The task's state now (``pending`` before the manager made it).

        Raises:
            SwarmError: The service is gone (removed by someone else).
            EngineUnavailableError: No engine answers.
        """
        try:
            tasks = engine_call(
                "list tasks",
                lambda: self.client.api.tasks(  # type: ignore[no-untyped-call]
                    filters={"service": self.service_id}
                ),
            )
        except docker.errors.NotFound as exc:
            raise SwarmError(f"the service {self.name} was removed while it ran") from exc
        except docker.errors.APIError as exc:
            raise api_error("list a service's tasks", exc) from exc
        if not tasks:
            return TaskState("pending")
        # One replica, restart none: one task (the newest, should there be more).
        task = max(tasks, key=lambda t: str(t.get("CreatedAt", "")))
        status = task.get("Status") or {}
        container = status.get("ContainerStatus") or {}
        state = TaskState(
            state=str(status.get("State", "")),
            node=str(task.get("NodeID") or ""),
            exit_code=container.get("ExitCode") if container.get("ContainerID") else None,
            error=str(status.get("Err") or ""),
            has_container=bool(container.get("ContainerID")),
        )
        self.last = state
        return state

    def wait_started(
        self, *, timeout: float = START_TIMEOUT, cancel: threading.Event | None = None
    ) -> TaskState | None:
        """Wait until the task's container runs, or the task is over.

        Args:
            timeout: Seconds to wait at most.
            cancel: Setting it stops the wait.

        Returns:
            The state; None when cancelled first.

        Raises:
            SwarmError: No node took the task within ``timeout``, or it was
                rejected before it ran (e.g. the node lacks the image).
        """
        deadline = time.monotonic() + timeout
        pause = POLL_FIRST
        while True:
            state = self.state()
            if state.started:
                return state
            if state.final:
                raise SwarmError(
                    f"node {state.node or '?'} did not run the task ({state.state}): "
                    f"{state.error or 'no reason given'}"
                    + (" (load the image on every node)" if "image" in state.error.lower() else ""),
                    node=state.node,
                )
            if time.monotonic() > deadline:
                where = f" (assigned to node {state.node})" if state.node else ""
                raise SwarmError(
                    f"no node started the task within {timeout:g} s: it is {state.state}{where}",
                    node=state.node,
                )
            if cancel is not None and cancel.wait(pause):
                return None
            if cancel is None:
                time.sleep(pause)
            pause = min(pause * 1.5, POLL_MAX)

    def follow(self) -> LogStream:
        """The task's log as it is written (close it when done)."""
        return LogStream(self.client, self.service_id)

    def logs(self) -> list[LogLine]:
        """The task's whole log so far (stdout and stderr, in the node's order).

        Raises:
            SwarmError: The service is gone.
        """

        def fetch() -> list[LogLine]:
            response = _log_request(self.client, self.service_id, follow=False)
            try:
                decoder = DemuxDecoder()
                lines = []
                for chunk in response.raw.stream(65536, decode_content=False):
                    lines += [LogLine.parse(s, p) for s, p in decoder.feed(chunk)]
                return lines
            finally:
                response.close()

        try:
            return engine_call("read a service's log", fetch, timeout=60)
        except docker.errors.NotFound as exc:
            raise SwarmError(f"the service {self.name} was removed while it ran") from exc
        except docker.errors.APIError as exc:
            raise api_error("read a service's log", exc) from exc

    def remove(self) -> None:
        """Remove the service (its task is killed) and its configs; safe twice, never raises."""
        if self.removed:
            return
        self.removed = True
        remove_services(self.client, [self.service_id])
        remove_configs(self.client, self.config_ids)


# -- the task as the supervisor sees it ------------------------------------------------


class TaskProgram:
    """A running task as :func:`~dockermagic.supervisor.supervise` sees it (a ``Program``).

    Output comes from the live log; the task's state is looked at every
    :data:`POLL_FIRST` to :data:`POLL_MAX` seconds. When the task is over, the
    whole log is read once more and what the live stream had not delivered
    yet is added (each line once: a line is known by its stream, time stamp
    and bytes), then :class:`~dockermagic.supervisor.Exited`. The wrapper's
    marker lines are taken out of the output and kept in :attr:`marks`.

    Stopping removes the service, which kills the task. At the deadline the
    log is read first, so the output up to the kill is kept.

    Args:
        task: The started task.
    """

    def __init__(self, task: SwarmTask) -> None:
        self.task = task
        self.stream = task.follow()
        self.marks: list[str] = []
        self.exit_code: int | None = None
        self.state: TaskState | None = task.last
        self.problem = ""
        self._seen: Counter[tuple[str, str, bytes]] = Counter()
        self._pending: list[Event] = []
        self._ended = False
        self._pause = POLL_FIRST
        self._next_poll = time.monotonic()

    @property
    def oom_killed(self) -> bool:
        """The wrapper saw the kernel's OOM killer act in the task."""
        return any(mark.startswith("oom ") for mark in self.marks)

    @property
    def usage(self) -> tuple[float | None, float | None, int | None]:
        """What the wrapper measured: the program's seconds, the task's CPU seconds and peak memory.

        Returns:
            ``(duration, cpu_seconds, peak_memory_bytes)``; None for what it
            could not tell (a task killed before it could say).
        """
        for mark in self.marks:
            fields = mark.split()
            if fields[:1] != ["usage"] or len(fields) != 5:
                continue
            duration = cpu = peak = None
            with contextlib.suppress(ValueError):
                duration = max(float(fields[2]) - float(fields[1]), 0.0)
            with contextlib.suppress(ValueError):
                cpu = int(fields[3]) / 1e9
            with contextlib.suppress(ValueError):
                peak = int(fields[4])
            return duration, cpu, peak
        return None, None, None

    @property
    def not_isolated(self) -> str:
        """What the wrapper found wrong with the node ('' when nothing)."""
        if self.exit_code != NOT_ISOLATED_EXIT:
            return ""
        found = [m for m in self.marks if m.startswith(("network ", "privileges "))]
        return found[0] if found else ""

    def _events(self, lines: Iterable[LogLine], *, complete: bool = False) -> list[Event]:
        events: list[Event] = []
        for line in lines:
            key = (line.stream, line.timestamp, line.data)
            if complete:
                if self._seen[key] > 0:
                    self._seen[key] -= 1
                    continue
            else:
                self._seen[key] += 1
            if line.stream == STDERR and line.data.startswith(MARKER.encode()):
                self.marks.append(line.data[len(MARKER) :].decode("utf-8", "replace").strip())
                continue
            events.append(Output(line.stream, line.data))
        return events

    def _complete(self) -> list[Event]:
        """What the live stream missed, from the whole log."""
        self.stream.close()
        try:
            return self._events(self.task.logs(), complete=True)
        except DockermagicError as exc:
            logger.warning("%s: could not read its whole log: %s", self.task.name, exc)
            return []

    def receive(self, timeout: float) -> list[Event]:
        """Output that arrived within ``timeout``; the exit once the task is over.

        Raises:
            StreamEnded: The task was stopped and everything read.
        """
        if self._pending:
            events, self._pending = self._pending, []
            return events
        if self._ended:
            raise StreamEnded()
        wait = max(min(timeout, self._next_poll - time.monotonic()), 0.0)
        events = self._events(self.stream.get(wait))
        if time.monotonic() < self._next_poll:
            return events
        self._pause = min(self._pause * 1.5, POLL_MAX)
        self._next_poll = time.monotonic() + self._pause
        state = self.task.state()
        self.state = state
        if not state.final:
            return events
        self._ended = True
        events += self._complete()
        if state.has_container and state.exit_code is not None:
            self.exit_code = int(state.exit_code)
            events.append(Exited(self.exit_code))
            return events
        self.problem = (
            f"the task ended without an exit status ({state.state}"
            + (f": {state.error}" if state.error else "")
            + f") on node {state.node or '?'}"
        )
        if events:
            return events  # the next call says the stream ended
        raise StreamEnded()

    def stop(self, reason: StopReason) -> bool:
        """Remove the service; at the deadline, keep the output up to the kill.

        Returns:
            True when there is still output to hand over.
        """
        if self._ended:
            return False
        self._ended = True
        if reason is StopReason.TIMEOUT:
            self._pending += self._complete()
        else:
            self.stream.close()
        self.task.remove()
        self.exit_code = 137  # killed, as a local container at its deadline
        return bool(self._pending)

    def force_stop(self) -> None:
        """End it for good."""
        self._ended = True
        self.stream.close()
        self.task.remove()

    def close(self) -> None:
        """Stop reading the log (the task is removed by its owner)."""
        self.stream.close()
