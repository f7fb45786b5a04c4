"""The throw-away engine harness (tests/engines.py) against real engines.

Each test starts its own extra ``dockerd`` beside the main engine and checks
that the main engine is untouched and nothing is left behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import docker
import docker.tls
import pytest
import requests.exceptions

from dockermagic import PythonDockerRunner
from dockermagic.engine import connect, engine_transport
from tests.engines import EngineError, ExtraEngine, extra_engine

pytestmark = [pytest.mark.docker, pytest.mark.engines]

PYTHON_IMAGE = "dockermagic/python:offline"
SYSTEM_CA = Path("/etc/ssl/certs/ca-certificates.crt")


def _link_exists(name: str) -> bool:
    done = subprocess.run(["ip", "link", "show", name], capture_output=True, check=False)
    return done.returncode == 0


def _mounts_under(path: Path) -> list[str]:
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    return [line for line in lines if f" {path}/" in line or f" {path} " in line]


def _processes_in_cgroup(parent: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if f":{parent}/" in (entry / "cgroup").read_text():
                    pids.append(int(entry.name))
    return pids


def _assert_gone(engine: ExtraEngine, pid: int) -> None:
    assert not engine.running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not _link_exists(engine.bridge)
    assert not engine.dir.exists()
    assert _mounts_under(engine.dir) == []
    assert list(Path("/sys/fs/cgroup").glob(f"*{engine.cgroup_parent}")) == []
    assert _processes_in_cgroup(engine.cgroup_parent) == []


def test_runner_on_an_extra_engine_leaves_the_main_engine_intact(
    docker_client: docker.DockerClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tests.engines")
    assert _link_exists("docker0")
    main_images = {tag for image in docker_client.images.list() for tag in image.tags}
    assert PYTHON_IMAGE in main_images

    with extra_engine(images=(PYTHON_IMAGE,)) as engine:
        pid = engine.pid
        assert _link_exists(engine.bridge)
        client = engine.client()
        try:
            assert [tag for image in client.images.list() for tag in image.tags] == [PYTHON_IMAGE]
            result = PythonDockerRunner(client=client).run("print(6*7)", timeout=10)
            assert result.stdout == "42\n", result
            assert result.ok
            assert client.containers.list(all=True) == []
        finally:
            client.close()
        # A running container (with its network namespace and overlay mounts)
        # and a client the test does not clean up: stop() removes and closes them.
        sleeper = engine.client().containers.run(
            PYTHON_IMAGE, ["sleep", "60"], detach=True, network_mode="none"
        )
        assert _mounts_under(engine.dir / "data" / "overlay2")
        sleeper.reload()
        assert sleeper.status == "running"
    print(f"timings: {engine.timings}")

    _assert_gone(engine, pid)
    assert _link_exists("docker0")
    main = docker.from_env(timeout=30)  # a new connection to the main engine
    try:
        assert main.ping()
        assert {tag for image in main.images.list() for tag in image.tags} >= main_images
    finally:
        main.close()
    assert any("answered after" in r.getMessage() for r in caplog.records)
    assert any("copied dockermagic/python:offline" in r.getMessage() for r in caplog.records)


@pytest.mark.skipif(not SYSTEM_CA.exists(), reason=f"needs a CA bundle at {SYSTEM_CA}")
def test_tls_client_ignores_requests_ca_bundle(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Another CA bundle (one that did not sign the engine's certificate).
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(SYSTEM_CA))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(SYSTEM_CA))

    with extra_engine(tls=True) as engine:
        pid = engine.pid
        env = engine.tls_env()
        assert env["DOCKER_HOST"] == engine.tls_url
        assert env["DOCKER_HOST"].startswith("tcp://127.0.0.1:")
        assert env["DOCKER_TLS_VERIFY"] == "1"
        assert {"ca.pem", "cert.pem", "key.pem"} <= set(os.listdir(env["DOCKER_CERT_PATH"]))

        client = engine.client(timeout=10)
        try:
            assert client.api.base_url.startswith("https://127.0.0.1:")
            assert client.ping()
            assert client.version()["ApiVersion"]
        finally:
            client.close()

        # The same engine through the environment, as a user would configure it:
        # it fails while the session trusts the environment (pitfall 24) ...
        naive = docker.from_env(environment=env, version=client.api.api_version, timeout=10)
        try:
            with pytest.raises(requests.exceptions.SSLError):
                naive.ping()
            # ... and works once it does not.
            naive.api.trust_env = False
            assert naive.ping()
        finally:
            naive.close()

        # dockermagic's own client, from the same environment, with the bundle set.
        monkeypatch.setenv("DOCKER_HOST", env["DOCKER_HOST"])
        monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
        monkeypatch.setenv("DOCKER_CERT_PATH", env["DOCKER_CERT_PATH"])
        ours = connect(timeout=10)
        try:
            assert ours.ping()
            transport = engine_transport(ours)
            assert transport.address == env["DOCKER_HOST"]
            assert (transport.tls, transport.verified, transport.client_certificate) == (
                True,
                True,
                True,
            )
            assert transport.ca == env["DOCKER_CERT_PATH"] + "/ca.pem"
        finally:
            ours.close()
        doctor = subprocess.run(
            [sys.executable, "-m", "dockermagic", "doctor", "--logs", str(tmp_path / "logs")],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        rows = dict(line.split(None, 1) for line in doctor.stdout.splitlines() if line.strip())
        assert rows["engine"].startswith("Docker "), doctor.stdout + doctor.stderr
        assert rows["address"] == env["DOCKER_HOST"]
        assert rows["transport"] == (
            f"TLS, engine certificate verified against {env['DOCKER_CERT_PATH']}/ca.pem, "
            "client certificate"
        )

        # Without a client certificate the engine refuses the connection.
        anonymous = docker.DockerClient(
            base_url=engine.tls_url,
            tls=docker.tls.TLSConfig(ca_cert=env["DOCKER_CERT_PATH"] + "/ca.pem", verify=True),
            version=client.api.api_version,
            timeout=10,
        )
        anonymous.api.trust_env = False
        try:
            with pytest.raises(requests.exceptions.ConnectionError):
                anonymous.ping()
        finally:
            anonymous.close()
    _assert_gone(engine, pid)


def test_freeze_makes_the_engine_hang_and_thaw_revives_it() -> None:
    with extra_engine() as engine:
        pid = engine.pid
        client = engine.client(timeout=10)
        try:
            assert client.ping()
        finally:
            client.close()

        engine.freeze()
        frozen = engine.client(timeout=2)
        t0 = time.monotonic()
        try:
            with pytest.raises((requests.exceptions.Timeout, requests.exceptions.ConnectionError)):
                frozen.ping()
        finally:
            frozen.close()
        assert time.monotonic() - t0 < 3.5

        engine.thaw()
        revived = engine.client(timeout=10)
        try:
            assert revived.ping()
        finally:
            revived.close()

        # Left frozen on purpose: stop() must thaw it before stopping it.
        engine.freeze()
    _assert_gone(engine, pid)


def test_stop_cleans_up_after_a_killed_engine() -> None:
    # A dockerd killed with its container running leaves the container's shim,
    # processes and mounts behind: stop() finds them by the engine's directory
    # and cgroup and removes them.
    with extra_engine(images=(PYTHON_IMAGE,)) as engine:
        pid = engine.pid
        client = engine.client()
        client.containers.run(PYTHON_IMAGE, ["sleep", "60"], detach=True, network_mode="none")
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while engine.running and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not engine.running
        assert _mounts_under(engine.dir / "data" / "overlay2")
        assert _processes_in_cgroup(engine.cgroup_parent)
    _assert_gone(engine, pid)


def test_a_failed_start_leaves_nothing_behind() -> None:
    engine = extra_engine(extra_args=["--no-such-flag"])
    with pytest.raises(EngineError, match="no-such-flag") as excinfo, engine:
        pytest.fail("the engine started with an unknown flag")
    assert "exited with" in str(excinfo.value)
    assert not _link_exists(engine.bridge)
    assert not engine.dir.exists()


def test_bridge_none_is_refused() -> None:
    for args in (["--bridge=none"], ["--bridge", "none"], ["-b", "none"]):
        with pytest.raises(ValueError, match="docker0"):
            ExtraEngine(extra_args=args)
