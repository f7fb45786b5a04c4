"""Connecting to the Docker Engine.

One lazily created :class:`docker.DockerClient` per process: a client holds a
connection pool, which must not be shared across a fork (pitfall 8), so the
cache is keyed by process id. Connection failures anywhere become
:class:`~dockermagic.errors.EngineUnavailableError` with a hint.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator

import docker
import docker.errors
import requests.exceptions

from dockermagic.errors import EngineUnavailableError

__all__ = [
    "default_client",
    "engine_address",
    "engine_errors",
    "engine_version",
    "reset_default_client",
]

logger = logging.getLogger(__name__)

#: Seconds an ordinary API request may take before the engine counts as hung.
REQUEST_TIMEOUT = 60
#: Connections per client; the batch runner and watchdogs use several at once.
MAX_POOL_SIZE = 32

_lock = threading.Lock()
_clients: dict[int, docker.DockerClient] = {}


def _base_url() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def default_client() -> docker.DockerClient:
    """The process's shared client, created on first use.

    Returns:
        A connected client.

    Raises:
        EngineUnavailableError: When no engine answers.
    """
    pid = os.getpid()
    with _lock:
        client = _clients.get(pid)
        if client is None:
            # A client inherited through fork is dropped, never closed: closing
            # it would close sockets the parent still uses.
            _clients.clear()
            with engine_errors():
                client = docker.from_env(timeout=REQUEST_TIMEOUT, max_pool_size=MAX_POOL_SIZE)
            _clients[pid] = client
        return client


def reset_default_client() -> None:
    """Forget the cached client (e.g. after the engine was restarted)."""
    with _lock:
        client = _clients.pop(os.getpid(), None)
    if client is not None:
        client.close()


def engine_address(client: docker.DockerClient) -> str:
    """Where a client talks to its engine, e.g. ``unix:///var/run/docker.sock``.

    Args:
        client: The client.

    Returns:
        The address as the user configured it (``DOCKER_HOST``), else the client's.
    """
    url = str(client.api.base_url)
    return _base_url() if url.startswith("http+docker://") else url


def engine_version(client: docker.DockerClient | None = None) -> dict[str, str]:
    """Ask the engine for its version.

    Args:
        client: The client to use; the default client when None.

    Returns:
        ``{"version": ..., "api_version": ..., "os": ..., "arch": ...}``.

    Raises:
        EngineUnavailableError: When no engine answers.
    """
    with engine_errors():
        info = (client or default_client()).version()
    return {
        "version": str(info.get("Version", "?")),
        "api_version": str(info.get("ApiVersion", "?")),
        "os": str(info.get("Os", "?")),
        "arch": str(info.get("Arch", "?")),
    }


@contextlib.contextmanager
def engine_errors() -> Iterator[None]:
    """Translate "cannot connect" failures into :class:`EngineUnavailableError`.

    API errors (404, 409, 500) pass through unchanged: they mean the engine
    answered.

    Yields:
        Nothing; wraps a block of Docker calls.

    Raises:
        EngineUnavailableError: For connection refused, missing socket, timeouts.
    """
    try:
        yield
    except docker.errors.APIError:
        raise
    except docker.errors.DockerException as exc:
        # from_env() wraps connection failures in a bare DockerException.
        raise EngineUnavailableError(_short(exc), base_url=_base_url()) from exc
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
        raise EngineUnavailableError(_short(exc), base_url=_base_url()) from exc
    except (ConnectionError, FileNotFoundError) as exc:
        raise EngineUnavailableError(_short(exc), base_url=_base_url()) from exc


def _short(exc: BaseException) -> str:
    """The innermost, most telling reason of a connection failure."""
    reason: BaseException = exc
    seen = set()
    while True:
        nxt = reason.__cause__ or reason.__context__
        if nxt is None or id(nxt) in seen:
            break
        seen.add(id(nxt))
        reason = nxt
    text = str(reason) or type(reason).__name__
    for marker in ("No such file or directory", "Connection refused", "timed out"):
        if marker in str(exc) or marker in text:
            return marker.lower() if marker != "timed out" else "the engine did not answer in time"
    return text.splitlines()[0][:200]
