"""Transports without an engine: the Channel over a real TLS socket, how a client is described.

The channel tests use a real TLS connection between two ends of a socket
pair (certificates made with ``openssl``), which is what a container's attach
stream is over a remote engine; no Docker Engine is needed.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.tls
import pytest

from dockermagic.container import Channel
from dockermagic.engine import Transport, connect, engine_transport
from dockermagic.tunnel import SSHTunnel


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl (make test installs it)")
    directory = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", "key.pem", "-out", "cert.pem", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost"],
        cwd=directory, check=True, capture_output=True,
    )  # fmt: skip
    return directory


@pytest.fixture
def tls_pair(certificates: Path) -> Iterator[tuple[ssl.SSLSocket, ssl.SSLSocket]]:
    """Two connected TLS sockets: (the engine's end, the client's end)."""
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(certificates / "cert.pem", certificates / "key.pem")
    client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_context.load_verify_locations(certificates / "cert.pem")
    a, b = socket.socketpair()
    box: dict[str, ssl.SSLSocket] = {}

    def accept() -> None:
        box["server"] = server_context.wrap_socket(a, server_side=True)

    thread = threading.Thread(target=accept)
    thread.start()
    client = client_context.wrap_socket(b, server_hostname="localhost")
    thread.join(10)
    server = box["server"]
    try:
        yield server, client
    finally:
        for end in (server, client):
            end.close()


def _echo(server: ssl.SSLSocket, total: int) -> threading.Thread:
    """The engine's side: send back everything it receives, then hang up."""

    def run() -> None:
        seen = 0
        while seen < total:
            data = server.recv(65536)
            if not data:
                break
            seen += len(data)
            server.sendall(data)
        server.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_reading_while_another_thread_writes_over_tls(
    tls_pair: tuple[ssl.SSLSocket, ssl.SSLSocket],
) -> None:
    # A run's request is written by a helper thread while the supervisor
    # reads; on one OpenSSL connection used by two threads at once, runs
    # ended early about once in ten. The echo proves every byte went both ways.
    server, client = tls_pair
    payload = os.urandom(4 * 2**20)
    echo = _echo(server, len(payload))
    channel = Channel(client)
    writer = threading.Thread(target=channel.send, args=(payload,), kwargs={"timeout": 30})
    writer.start()
    received = bytearray()
    deadline = time.monotonic() + 30
    while len(received) < len(payload) and time.monotonic() < deadline:
        data = channel.recv(0.1)
        if data:
            received += data
        elif data == b"":
            break
    writer.join(10)
    echo.join(10)
    assert bytes(received) == payload
    assert channel.recv(1.0) == b""  # the engine hung up: the stream ends
    assert not channel.connected()
    channel.close()
    channel.close()


def test_connected_reads_ahead_instead_of_peeking(
    tls_pair: tuple[ssl.SSLSocket, ssl.SSLSocket],
) -> None:
    # recv(1, MSG_PEEK) raises ValueError on an SSLSocket; connected() reads
    # ahead, and the next recv returns what it read.
    server, client = tls_pair
    channel = Channel(client)
    assert channel.connected()
    assert channel.recv(0.05) is None
    server.sendall(b"frame")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and channel.connected():
        if channel.recv(0.05) == b"frame":
            break
    else:
        pytest.fail("the frame did not arrive")
    server.sendall(b"more")
    time.sleep(0.1)
    assert channel.connected()
    assert channel.recv(0) == b"more"
    server.close()
    deadline = time.monotonic() + 5
    while channel.connected() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not channel.connected()
    channel.close()


def test_a_closed_channel_refuses_writes_and_reads_end(
    tls_pair: tuple[ssl.SSLSocket, ssl.SSLSocket],
) -> None:
    _server, client = tls_pair
    channel = Channel(client)
    channel.close()
    assert channel.recv(0.1) == b""
    with pytest.raises(BrokenPipeError, match="closed"):
        channel.send(b"x", timeout=1)


def test_a_write_nobody_reads_times_out(tls_pair: tuple[ssl.SSLSocket, ssl.SSLSocket]) -> None:
    _server, client = tls_pair
    channel = Channel(client)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        channel.send(b"x" * (64 * 2**20), timeout=0.5)
    assert time.monotonic() - started < 3
    channel.close()


# -- how a client reaches its engine -------------------------------------------------


def test_a_local_socket() -> None:
    client = docker.DockerClient(base_url="unix:///nonexistent/docker.sock", version="1.41")
    try:
        transport = engine_transport(client)
    finally:
        client.close()
    assert transport == Transport(address="unix:///nonexistent/docker.sock", kind="unix")
    assert transport.describe() == "local socket"


def test_plain_tcp_is_called_unencrypted() -> None:
    client = docker.DockerClient(base_url="tcp://127.0.0.1:2375", version="1.41")
    try:
        transport = engine_transport(client)
    finally:
        client.close()
    assert (transport.address, transport.kind, transport.tls) == (
        "tcp://127.0.0.1:2375",
        "tcp",
        False,
    )
    assert "NOT encrypted" in transport.describe()


def test_tls_verified_with_its_own_ca(certificates: Path) -> None:
    config = docker.tls.TLSConfig(
        client_cert=(str(certificates / "cert.pem"), str(certificates / "key.pem")),
        ca_cert=str(certificates / "cert.pem"),
        verify=True,
    )
    client = docker.DockerClient(base_url="tcp://127.0.0.1:2376", tls=config, version="1.41")
    try:
        transport = engine_transport(client)
    finally:
        client.close()
    assert transport.address == "tcp://127.0.0.1:2376"
    assert (transport.tls, transport.verified, transport.client_certificate) == (True, True, True)
    assert transport.ca == str(certificates / "cert.pem")
    assert transport.describe() == (
        f"TLS, engine certificate verified against {certificates / 'cert.pem'}, client certificate"
    )


def test_tls_without_verification_says_so(certificates: Path) -> None:
    environment = {"DOCKER_HOST": "tcp://127.0.0.1:1", "DOCKER_CERT_PATH": str(certificates)}
    (certificates / "ca.pem").write_bytes((certificates / "cert.pem").read_bytes())
    # connect() asks a TLS engine its API version: nothing answers here.
    with pytest.raises(Exception, match="Cannot reach"):
        connect(environment, timeout=2)
    client = docker.DockerClient.from_env(environment=environment, version="1.41")
    try:
        transport = engine_transport(client)
    finally:
        client.close()
    assert transport.tls
    assert not transport.verified
    assert "NOT verified" in transport.describe()


def test_a_tls_client_ignores_the_ca_bundle_variables(
    certificates: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # requests would take REQUESTS_CA_BUNDLE over the engine's CA (docker-py
    # #2433): the session dockermagic builds does not read the environment.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent/bundle.pem")
    (certificates / "ca.pem").write_bytes((certificates / "cert.pem").read_bytes())
    environment = {
        "DOCKER_HOST": "tcp://127.0.0.1:1",
        "DOCKER_TLS_VERIFY": "1",
        "DOCKER_CERT_PATH": str(certificates),
    }
    probe = docker.DockerClient.from_env(environment=environment, version="1.41")
    try:
        settings = probe.api.merge_environment_settings(
            "https://127.0.0.1:1/version", {}, None, None, None
        )
        assert settings["verify"] == "/nonexistent/bundle.pem"  # the bug, as docker-py has it
        probe.api.trust_env = False
        settings = probe.api.merge_environment_settings(
            "https://127.0.0.1:1/version", {}, None, None, None
        )
        assert settings["verify"] == str(certificates / "ca.pem")
    finally:
        probe.close()


def test_a_forked_child_leaves_the_parents_tunnel_alone(tmp_path: Path) -> None:
    # A pool worker forked from a process with an ssh:// client inherits its
    # tunnel (and exit hook); closing it there would cut the parent's engine.
    tunnel = SSHTunnel("ssh://someone@example.invalid:2222")
    stand_in = subprocess.Popen(["sleep", "30"], stderr=subprocess.PIPE)
    tunnel._master = stand_in  # the ssh process, stood in for by a sleeper
    tunnel._dir = tmp_path / "tunnel"
    tunnel._dir.mkdir()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        tunnel.close()
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert stand_in.poll() is None
    assert tunnel._dir.exists()
    tunnel.close()
    assert stand_in.poll() is not None
    assert not (tmp_path / "tunnel").exists()
    assert not tunnel.is_open
