"""Connecting to the Docker Engine.

One lazily created :class:`docker.DockerClient` per process: a client holds a
connection pool, which must not be shared across a fork (pitfall 8), so the
cache is keyed by process id. Connection failures anywhere become
:class:`~dockermagic.errors.EngineUnavailableError` with a hint.

The engine is the one ``DOCKER_HOST``, ``DOCKER_TLS_VERIFY`` and
``DOCKER_CERT_PATH`` name, as for the ``docker`` command (a local unix socket
when unset). A TLS engine's own CA and client certificate win over
``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``: requests would otherwise replace
the engine's CA with that bundle and fail with ``CERTIFICATE_VERIFY_FAILED``
(docker-py #2433, pitfall 24). :func:`engine_transport` says how a client
reaches its engine (address, TLS, verified), for ``doctor`` and
``%docker_status``; :func:`engine_profile` which kind of engine answers
(Docker or Podman, :mod:`dockermagic.profiles`), asked once per client.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import docker
import docker.constants
import docker.errors
import requests.exceptions

from dockermagic.errors import EngineUnavailableError
from dockermagic.profiles import EngineProfile, engine_name, profile_for
from dockermagic.tunnel import SSHTunnel, ssh_available

__all__ = [
    "Transport",
    "connect",
    "default_client",
    "engine_address",
    "engine_errors",
    "engine_profile",
    "engine_transport",
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
#: What each client's engine said at ``/version`` (asked once per client).
_versions: weakref.WeakKeyDictionary[docker.DockerClient, dict[str, Any]] = (
    weakref.WeakKeyDictionary()
)
_versions_lock = threading.Lock()


def _base_url() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def connect(
    environment: Mapping[str, str] | None = None,
    *,
    timeout: int = REQUEST_TIMEOUT,
    max_pool_size: int = MAX_POOL_SIZE,
    ssh: str = "tunnel",
) -> docker.DockerClient:
    """A new client for the engine the environment names (``DOCKER_HOST``...).

    Like :func:`docker.from_env`, except that a TLS engine is reached with its
    own CA and certificates whatever ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``
    say: the client's session does not take settings from the environment.
    The API version is asked for with such a session too, since
    :func:`docker.from_env` asks while it builds the client.

    An ``ssh://`` engine is reached through one OpenSSH connection that
    forwards a local unix socket (:class:`~dockermagic.tunnel.SSHTunnel`),
    which closes with the client; without the ``ssh`` command, docker-py's
    paramiko transport (``dockermagic[ssh]``) opens a channel per connection.

    Args:
        environment: The variables to read; ``os.environ`` when None.
        timeout: Seconds an API request may take.
        max_pool_size: Connections the client keeps.
        ssh: For ``ssh://``: ``"tunnel"`` (one connection), or ``"channels"``
            (docker-py's paramiko transport; for comparison).

    Returns:
        A client (the caller closes it).

    Raises:
        EngineUnavailableError: When no engine answers.
    """
    env = dict(os.environ if environment is None else environment)
    host = env.get("DOCKER_HOST", "")
    if host.startswith("ssh://") and ssh == "tunnel" and ssh_available():
        tunnel = SSHTunnel(host)
        local = tunnel.open()
        try:
            with engine_errors():
                return _TunnelledClient(
                    tunnel, base_url=local, timeout=timeout, max_pool_size=max_pool_size
                )
        except BaseException:
            tunnel.close()
            raise

    def from_env(version: str | None) -> docker.DockerClient:
        return docker.DockerClient.from_env(
            version=version,
            timeout=timeout,
            max_pool_size=max_pool_size,
            environment=env,
        )

    with engine_errors():
        # An explicit version: building this client asks the engine nothing.
        probe = from_env(docker.constants.MINIMUM_DOCKER_API_VERSION)
        if not _speaks_tls(probe):
            probe.close()
            return from_env(None)
        try:
            _ignore_environment(probe)
            version = str(probe.version(api_version=False)["ApiVersion"])
        finally:
            probe.close()
        client = from_env(version)
    _ignore_environment(client)
    return client


class _TunnelledClient(docker.DockerClient):
    """A client of an ``ssh://`` engine through a tunnel it owns: closing it closes both."""

    def __init__(self, tunnel: SSHTunnel, **kwargs: Any) -> None:
        self.tunnel = tunnel
        super().__init__(**kwargs)

    def close(self) -> None:
        """Close the client's connections, then the tunnel."""
        try:
            super().close()
        finally:
            self.tunnel.close()


def _speaks_tls(client: docker.DockerClient) -> bool:
    return str(client.api.base_url).startswith("https://")


def _ignore_environment(client: docker.DockerClient) -> None:
    """Make a TLS client use its own CA (docker-py #2433).

    requests' ``trust_env`` lets ``REQUESTS_CA_BUNDLE`` replace the CA that
    ``DOCKER_CERT_PATH`` gave (and turn verification on where
    ``DOCKER_TLS_VERIFY`` left it off). It also takes proxies and ``.netrc``
    from the environment, which the ``docker`` command's own TLS connection
    to an engine does not need either.
    """
    client.api.trust_env = False


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
            client = connect()
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
    if url.startswith("http+docker://"):
        # docker-py keeps a unix socket's path on its adapter; a client made
        # for another engine than DOCKER_HOST's is then named right too.
        path = getattr(getattr(client.api, "_custom_adapter", None), "socket_path", None)
        return f"unix://{path}" if isinstance(path, str) and path else _base_url()
    # docker-py turns tcp:// into http(s)://; say it as DOCKER_HOST does.
    for scheme in ("https://", "http://"):
        if url.startswith(scheme):
            return "tcp://" + url[len(scheme) :]
    return url


@dataclass(frozen=True)
class Transport:
    """How a client reaches its engine.

    Attributes:
        address: Where, as the user configured it (``DOCKER_HOST``).
        kind: ``"unix"``, ``"tcp"``, ``"ssh"`` or ``"npipe"``.
        tls: The connection is encrypted with TLS.
        verified: The engine's certificate is checked (against ``ca``, or the
            system's CAs when ``ca`` is None).
        ca: The CA file the engine's certificate must chain to, if any.
        client_certificate: The client proves itself with a certificate.
        detail: How an ``ssh://`` engine is reached ('' otherwise).
    """

    address: str
    kind: str
    tls: bool = False
    verified: bool = False
    ca: str | None = None
    client_certificate: bool = False
    detail: str = ""

    def describe(self) -> str:
        """One line for people, e.g. ``TLS, engine certificate verified (ca.pem)``.

        Returns:
            The description.
        """
        if self.kind == "ssh":
            how = self.detail or "docker-py's paramiko transport, a channel per connection"
            return f"SSH ({how}; host key checked as ssh's configuration says)"
        if not self.tls:
            return "local socket" if self.kind in ("unix", "npipe") else "plain TCP, NOT encrypted"
        if not self.verified:
            return "TLS, engine certificate NOT verified (DOCKER_TLS_VERIFY is off)"
        checked = f"against {self.ca}" if self.ca else "against the system's CAs"
        client = ", client certificate" if self.client_certificate else ""
        return f"TLS, engine certificate verified {checked}{client}"


def engine_transport(client: docker.DockerClient) -> Transport:
    """How a client reaches its engine: address, TLS, verification.

    Args:
        client: The client.

    Returns:
        The transport (from the client's settings; asks the engine nothing).
    """
    if isinstance(client, _TunnelledClient):
        tunnel = client.tunnel
        return Transport(
            address=tunnel.url,
            kind="ssh",
            detail=f"one OpenSSH connection forwarding {tunnel.remote_socket}",
        )
    api = client.api
    url = str(api.base_url)
    address = engine_address(client)
    if url.startswith("https://"):
        verify = api.verify
        return Transport(
            address=address,
            kind="tcp",
            tls=True,
            verified=verify is not False,
            ca=verify if isinstance(verify, str) else None,
            client_certificate=api.cert is not None,
        )
    scheme = address.split("://", 1)[0] if "://" in address else "unix"
    kind = {"http": "tcp", "fd": "unix"}.get(scheme, scheme)
    return Transport(address=address, kind=kind)


def _version_info(client: docker.DockerClient) -> dict[str, Any]:
    """The engine's ``/version`` answer, asked once per client (the engine stays the same)."""
    with _versions_lock:
        known = _versions.get(client)
    if known is not None:
        return known
    with engine_errors():
        info: dict[str, Any] = dict(client.version())
    with _versions_lock:
        _versions[client] = info
    return info


def engine_profile(client: docker.DockerClient | None = None) -> EngineProfile:
    """Which kind of engine a client talks to, and so how to ask it.

    Args:
        client: The client; the default client when None.

    Returns:
        The engine's profile (asked once per client, then remembered).

    Raises:
        EngineUnavailableError: When no engine answers.
    """
    return profile_for(_version_info(client or default_client()))


def engine_version(client: docker.DockerClient | None = None) -> dict[str, str]:
    """Ask the engine for its version.

    Args:
        client: The client to use; the default client when None.

    Returns:
        ``{"name": ..., "version": ..., "api_version": ..., "os": ..., "arch": ...}``,
        where ``name`` is ``"Docker"`` or ``"Podman"``.

    Raises:
        EngineUnavailableError: When no engine answers.
    """
    client = client or default_client()
    with engine_errors():
        info = client.version()
    # Asked afresh (doctor shows the engine as it is now); the profile reuses it.
    with _versions_lock:
        _versions[client] = dict(info)
    return {
        "name": engine_name(info),
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
