"""A fresh container for every run at warm speed: :class:`ContainerPool`.

A pool keeps a few containers of one configuration (language, image, policy,
packages) created, started and with their agent booted, each waiting on its
stdin for exactly one program. A run takes one, sends its files and request,
and the container is killed and removed in the background after that one
program; the pool starts another. No container ever runs a second program,
so a pooled run is as isolated as a cold one: a new container id, hostname,
empty ``/work`` and ``/tmp``, no process of anyone before.

Limits hold as for a cold run, with one difference: an idle container's
in-container deadline (coreutils ``timeout`` as PID 1) is set when it starts,
to its idle lifetime plus the policy's timeout, so a pool replaces containers
older than :data:`IDLE_TTL` seconds and a run never gets one with less than its
timeout left. A run's own timeout still counts from when its program starts.
Without its owner an idle (or running) container ends at once: the attach
hangs up, the engine closes the agent's stdin, and the agent stops everything.

Pools are shared per process: :func:`pool_for` gives the same pool to every
runner of the same configuration. :func:`close_pools` (run at exit, by the
magics at unload) removes the idle containers; cleanup removes those of a
process that died.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import multiprocessing.util
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass

import docker

from dockermagic.agent import Agent
from dockermagic.container import ContainerSpec, SandboxContainer
from dockermagic.errors import DockermagicError
from dockermagic.interpreters import Interpreter
from dockermagic.supervisor import StreamEnded

__all__ = ["IDLE_TTL", "ContainerPool", "Warm", "close_pools", "idle_containers", "pool_for"]

logger = logging.getLogger(__name__)

#: Seconds a container may wait idle before the pool replaces it.
IDLE_TTL = 120.0
#: Seconds the filler waits after a failure before it tries again.
_BACKOFF = 2.0


@dataclass
class Warm:
    """A started container whose agent said hello and waits for one program.

    Attributes:
        box: The container.
        agent: Its agent (boot frame already sent).
        started: When it started (monotonic seconds).
        deadline: Seconds after its start at which it kills itself.
    """

    box: SandboxContainer
    agent: Agent
    started: float
    deadline: float

    def left(self, now: float) -> float:
        """Seconds before its in-container deadline."""
        return self.started + self.deadline - now


class ContainerPool:
    """Idle containers of one configuration, each for one program.

    Args:
        client: The Docker client.
        spec: Makes the spec of a new container (its deadline: idle + run).
        interpreter: The agent the containers run.
        size: Idle containers to keep.
        ttl: Seconds an idle container may wait before it is replaced.
    """

    def __init__(
        self,
        client: docker.DockerClient,
        spec: Callable[[], ContainerSpec],
        interpreter: Interpreter,
        *,
        size: int = 2,
        ttl: float = IDLE_TTL,
    ) -> None:
        self.client = client
        self.spec = spec
        self.interpreter = interpreter
        self.size = size
        self.ttl = ttl
        self._ready: deque[Warm] = deque()
        self._lock = threading.Condition()
        self._closed = False
        self._filler: threading.Thread | None = None
        self._starting: set[str] = set()  # names of containers being started
        #: How many containers the pool started, and handed out (for tests and benchmarks).
        self.started = 0
        self.taken = 0

    def __repr__(self) -> str:
        return f"ContainerPool(size={self.size}, ready={len(self._ready)})"

    @property
    def ready(self) -> int:
        """Idle containers ready now."""
        with self._lock:
            return len(self._ready)

    def warm_up(self) -> None:
        """Start filling in the background (the first :meth:`take` does too)."""
        with self._lock:
            if self._closed or (self._filler is not None and self._filler.is_alive()):
                self._lock.notify_all()
                return
            self._filler = threading.Thread(target=self._fill, name="dockermagic-pool", daemon=True)
            self._filler.start()

    def take(self, needs: float) -> Warm | None:
        """An idle container with at least ``needs`` seconds of life left, if one is ready.

        Never waits for one to start: a cold run is as fast as waiting.

        Args:
            needs: Seconds the run may take (its timeout and grace).

        Returns:
            The container (now the caller's), or None.
        """
        self.warm_up()
        now = time.monotonic()
        with self._lock:
            while self._ready:
                warm = self._ready.popleft()
                self._lock.notify_all()  # the filler starts a replacement
                if warm.left(now) >= needs and warm.agent.channel.connected():
                    self.taken += 1
                    return warm
                _discard(warm)
        return None

    def close(self, wait: float = 0.0) -> None:
        """Remove every idle container and stop filling (safe to call twice).

        Args:
            wait: Seconds to wait for a container that is being started right
                now (it is removed once it is up); 0 returns at once and
                leaves that one to remove itself.
        """
        with self._lock:
            self._closed = True
            idle = list(self._ready)
            self._ready.clear()
            self._lock.notify_all()
            filler = self._filler
        _forget(self)
        for warm in idle:
            _discard(warm)
        if wait > 0 and filler is not None and filler is not threading.current_thread():
            filler.join(wait)

    # -- filling ----------------------------------------------------------------------

    def _fill(self) -> None:
        while True:
            with self._lock:
                while not self._closed and len(self._ready) >= self.size and not self._stale():
                    self._lock.wait(timeout=5.0)
                if self._closed:
                    return
                stale = [w for w in self._ready if time.monotonic() - w.started > self.ttl]
                for warm in stale:
                    self._ready.remove(warm)
                missing = self.size - len(self._ready)
            for warm in stale:
                _discard(warm)
            if missing <= 0:
                continue
            try:
                warm = self._start_one()
            except Exception as exc:  # the engine is down or refuses: try later
                logger.debug("pool could not start a container: %s", exc)
                time.sleep(_BACKOFF)
                continue
            with self._lock:
                closed = self._closed
                if not closed:
                    self._ready.append(warm)
            if closed:
                _discard(warm)
                return

    def _stale(self) -> bool:
        now = time.monotonic()
        return any(now - warm.started > self.ttl for warm in self._ready)

    def _start_one(self) -> Warm:
        spec = self.spec()
        with self._lock:
            self._starting.add(spec.name)
        try:
            box = SandboxContainer.create(self.client, spec)
        except BaseException:
            with self._lock:
                self._starting.discard(spec.name)
            raise
        try:
            agent = Agent(box.attach(), self.interpreter)
            box.start()
            started = time.monotonic()
            agent.send(agent.frames_to_boot(), timeout=10)
            agent.await_hello(30, time.monotonic)
        except (DockermagicError, StreamEnded, OSError):
            box.remove(background=True)
            raise
        finally:
            with self._lock:
                self._starting.discard(spec.name)
        self.started += 1
        assert spec.deadline is not None
        return Warm(box=box, agent=agent, started=started, deadline=spec.deadline)


def _discard(warm: Warm) -> None:
    warm.agent.channel.close()
    warm.box.remove(background=True)


_pools: dict[Hashable, ContainerPool] = {}
_pools_lock = threading.Lock()


def _forget_after_fork() -> None:
    # A forked child must not use (nor close: shutdown() would cut the
    # parent's sockets) the parent's pools; it makes its own (pitfall 8).
    global _pools_lock
    _pools.clear()
    _pools_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)


def idle_containers() -> set[str]:
    """Names of the containers this process's pools hold: starting or waiting.

    Returns:
        Container names (not those running a program).
    """
    with _pools_lock:
        pools = list(_pools.values())
    ids: set[str] = set()
    for pool in pools:
        with pool._lock:
            ids.update(warm.box.name for warm in pool._ready)
            ids.update(pool._starting)
    return ids


def pool_for(key: Hashable, make: Callable[[], ContainerPool]) -> ContainerPool:
    """The process's pool for a configuration, made on first use.

    Args:
        key: What identifies the configuration (engine, language, image,
            policy, packages).
        make: Makes the pool.

    Returns:
        The pool.
    """
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None or pool._closed:
            pool = make()
            _pools[key] = pool
            _close_at_child_exit()
        return pool


#: Seconds a multiprocessing child's exit waits for a container being started.
CHILD_EXIT_WAIT = 15.0
_finalizer_pid: int | None = None


def _close_at_child_exit() -> None:
    """In a multiprocessing child, close the pools when it exits (once per process).

    Such a child ends with ``os._exit``, which skips :mod:`atexit`; it runs
    multiprocessing's own finalizers instead. Without this, a container its
    pool was creating at that moment stays created and never started (so
    never removed by the engine) until cleanup finds its owner gone; a slower
    engine (Podman) made that the rule rather than the exception.
    """
    global _finalizer_pid
    if _finalizer_pid == os.getpid() or multiprocessing.parent_process() is None:
        return
    _finalizer_pid = os.getpid()
    # Registered here, not at fork: a new multiprocessing child clears the
    # finalizers it inherited before it runs its target.
    multiprocessing.util.Finalize(
        None, close_pools, kwargs={"wait": CHILD_EXIT_WAIT}, exitpriority=10
    )


def _forget(pool: ContainerPool) -> None:
    # A closed pool leaves the registry: a long-lived kernel that runs many
    # batches (each with pools of its own) would otherwise keep them all.
    with _pools_lock:
        for key in [key for key, value in _pools.items() if value is pool]:
            del _pools[key]


def close_pools(wait: float = 0.0) -> int:
    """Remove every pool's idle containers (at exit, at unload).

    Args:
        wait: Seconds to wait for each container being started right now
            (see :meth:`ContainerPool.close`).

    Returns:
        How many pools there were.
    """
    with _pools_lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        pool.close(wait)
    return len(pools)


atexit.register(close_pools)
