"""An engine behind ``ssh://``: a throw-away engine and sshd on 127.0.0.1, real OpenSSH.

The engine's socket is not /var/run/docker.sock: the tunnel finds it through
the remote user's DOCKER_HOST, as ``docker system dial-stdio`` would. TLS
engines are covered by the whole integration suite (``--engine=tls``).
"""

from __future__ import annotations

import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockermagic import PythonDockerRunner
from dockermagic.engine import connect, default_client, engine_transport, reset_default_client
from dockermagic.sessions import SessionManager
from tests.engines import ExtraEngine, SSHServer, extra_engine, ssh_server

pytestmark = [pytest.mark.docker, pytest.mark.engines]

PYTHON_IMAGE = "dockermagic/python:offline"


@pytest.fixture(scope="module")
def remote() -> Iterator[tuple[ExtraEngine, SSHServer]]:
    with extra_engine(images=(PYTHON_IMAGE,)) as engine, ssh_server(engine) as server:
        yield engine, server


@pytest.fixture
def over_ssh(
    remote: tuple[ExtraEngine, SSHServer], monkeypatch: pytest.MonkeyPatch
) -> Iterator[SSHServer]:
    """The process's default client reaches the remote engine over ssh://."""
    _engine, server = remote
    for name in ("DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DOCKER_HOST", server.url)
    monkeypatch.setenv("DOCKERMAGIC_SSH_CONFIG", str(server.ssh_config))
    monkeypatch.setenv("DOCKERMAGIC_PYTHON_IMAGE", PYTHON_IMAGE)
    reset_default_client()
    try:
        yield server
    finally:
        reset_default_client()


def _tunnels() -> list[str]:
    """Command lines of running ssh master processes of dockermagic's tunnels."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv[0] == b"ssh" and any(b"dockermagic-ssh-" in arg for arg in argv):
                found.append(" ".join(a.decode() for a in argv))
    return found


def test_runs_and_sessions_over_one_ssh_connection(
    over_ssh: SSHServer, remote: tuple[ExtraEngine, SSHServer]
) -> None:
    engine, _server = remote
    client = default_client()
    transport = engine_transport(client)
    assert transport.kind == "ssh"
    assert transport.address == over_ssh.url
    assert str(engine.socket_path) in transport.describe()
    assert len(_tunnels()) == 1

    runner = PythonDockerRunner()
    result = runner.run("import sys; print(sys.stdin.read().upper())", stdin="over ssh")
    assert result.stdout == "OVER SSH\n", result
    flood = runner.run("print('x' * 2_000_000)", timeout=20)
    assert flood.output_truncated
    slow = runner.run("import time; print('before', flush=True); time.sleep(60)", timeout=2)
    assert slow.timed_out
    assert slow.stdout == "before\n"

    manager = SessionManager()
    try:
        session = manager.get("remote", "python", policy=None)
        assert session.run("x = 6 * 7").ok
        assert session.run("print(x)").stdout == "42\n"
    finally:
        manager.close()

    # Everything ran on the remote engine, nothing is left there.
    remote_client = engine.client()
    assert remote_client.containers.list(all=True) == []
    assert len(_tunnels()) == 1  # one connection for all of it


def test_doctor_names_the_ssh_engine(over_ssh: SSHServer, tmp_path: Path) -> None:
    doctor = subprocess.run(
        [sys.executable, "-m", "dockermagic", "doctor", "--logs", str(tmp_path / "logs")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    rows = dict(line.split(None, 1) for line in doctor.stdout.splitlines() if line.strip())
    assert rows["engine"].startswith("Docker "), doctor.stdout + doctor.stderr
    assert rows["address"] == over_ssh.url
    assert rows["transport"].startswith("SSH (one OpenSSH connection forwarding /tmp/dmk-")
    assert _tunnels() == []  # the command's tunnel ended with it


def test_the_tunnel_closes_with_its_client(over_ssh: SSHServer) -> None:
    client = connect()
    tunnel = client.tunnel  # type: ignore[attr-defined]
    assert tunnel.is_open
    socket_path = Path(tunnel.local_socket)
    assert socket_path.is_socket()
    assert oct(socket_path.parent.stat().st_mode & 0o777) == "0o700"
    assert client.ping()
    client.close()
    assert not tunnel.is_open
    assert not socket_path.parent.exists()


def test_a_host_key_that_does_not_match_is_refused(
    over_ssh: SSHServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "ssh_config"
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{over_ssh.port} ssh-ed25519 {'A' * 68}\n")
    text = over_ssh.ssh_config.read_text()
    config.write_text(text.replace(str(over_ssh.home / ".ssh" / "known_hosts"), str(known)))
    monkeypatch.setenv("DOCKERMAGIC_SSH_CONFIG", str(config))
    started = time.monotonic()
    with pytest.raises(Exception, match="Cannot reach the Docker Engine at ssh://"):
        connect()
    assert time.monotonic() - started < 30
    assert _tunnels() == []


def test_docker_pys_channel_per_connection_for_comparison(
    over_ssh: SSHServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("paramiko", reason="docker-py's ssh transport needs dockermagic[ssh]")
    monkeypatch.setenv("HOME", str(over_ssh.home))  # paramiko reads ~/.ssh
    with warnings.catch_warnings():
        # paramiko 5 on this cryptography warns about a cipher it still offers.
        warnings.simplefilter("ignore", DeprecationWarning)
        client = connect(ssh="channels")
        try:
            assert (
                engine_transport(client)
                .describe()
                .startswith("SSH (docker-py's paramiko transport")
            )
            result = PythonDockerRunner(client=client).run("print(6 * 7)", timeout=30)
            assert result.stdout == "42\n", result
        finally:
            client.close()
