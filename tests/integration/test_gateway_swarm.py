"""A gateway in front of the throw-away two-node swarm (tests/integration/conftest.py).

A real ``dockermagic gateway serve`` subprocess (tests/gateway.py) whose
``DOCKER_HOST`` is the swarm's manager and whose configuration says
``"swarm"``; clients reach it as students' kernels do (``DOCKERMAGIC_GATEWAY``
/ ``DOCKERMAGIC_TOKEN``, or a runner with the gateway backend), never the swarm.

A client's batch runs on both nodes and reports what a local batch of the
same scripts reports (tests/swarm.py ``MIXED_EXPECTED``, which
test_swarm.py checks against a local batch); the audit log has one record per
run with its user and node; the ceiling and what a task cannot have are
refused before anything runs; a cancel removes the run's service; a session
is a container on the manager; a gateway killed leaves its services to the
next gateway's start, and a gateway stopped leaves none. A gateway asked for
a swarm refuses an engine that is no manager. After every test, nothing of
dockermagic is left on the swarm (``on_swarm``).
"""

from __future__ import annotations

import collections
import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from dockermagic import run_scripts
from dockermagic.errors import DockermagicError, InvalidArgumentError, LimitExceededError
from dockermagic.gateway.audit import read_audit
from dockermagic.gateway.client import GatewayBackend
from dockermagic.labels import GATEWAY_USER, OWNER_PID
from dockermagic.policy import SandboxPolicy
from dockermagic.result import RunResult
from dockermagic.runners import PythonDockerRunner
from dockermagic.sessions import Session
from dockermagic.swarm import ServiceSummary, list_services
from tests.engines import SwarmCluster
from tests.gateway import ROOT, GatewayProcess, wait_for
from tests.swarm import IMAGES, MIXED, MIXED_EXPECTED, MIXED_TIMEOUT, write_folder

pytestmark = [pytest.mark.docker, pytest.mark.engines, pytest.mark.swarm]

CEILING: dict[str, Any] = {
    "timeout": 30,
    "memory": "512m",
    "cpus": 1,
    "images": {language: [image] for language, image in IMAGES.items()},
}
QUOTAS = {"runs_at_once": 12, "queued": 16, "sessions": 2}
SLEEPER = "import time\nprint('started', flush=True)\ntime.sleep(300)\n"


def swarm_gateway(folder: Path, cluster: SwarmCluster) -> GatewayProcess:
    """A gateway (not started) whose engine is the swarm's manager, its runs tasks."""
    return GatewayProcess(
        folder,
        ceiling=CEILING,
        quotas=QUOTAS,
        capacity=12,
        environment={"DOCKER_HOST": cluster.manager.base_url},
        swarm={"start_timeout": 60},
    )


@pytest.fixture(scope="module")
def gateway(
    cluster: SwarmCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    with swarm_gateway(tmp_path_factory.mktemp("gateway-swarm"), cluster) as process:
        yield process


def runner(gateway: GatewayProcess, user: str, **kwargs: Any) -> PythonDockerRunner:
    return PythonDockerRunner(gateway=GatewayBackend(gateway.url, gateway.token(user)), **kwargs)


def services_of(manager: docker.DockerClient, user: str) -> list[ServiceSummary]:
    return list_services(manager, [f"{GATEWAY_USER}={user}"])


def test_a_batch_through_the_gateway_runs_on_both_nodes_as_a_local_batch_would(
    gateway: GatewayProcess,
    on_swarm: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hellos = {f"h{i}.py": "import time\nprint('hello')\ntime.sleep(1.5)\n" for i in range(4)}
    folder = write_folder(tmp_path / "scripts", {**MIXED, **hellos})
    for key, value in gateway.env("alice").items():
        monkeypatch.setenv(key, value)
    report = run_scripts(folder, mode="parallel", timeout=MIXED_TIMEOUT, log_dir=tmp_path / "logs")
    assert report.backend == "gateway"
    assert {r.name: (r.status, r.exit_code) for r in report.results} == {
        **MIXED_EXPECTED,
        **dict.fromkeys(hellos, ("ok", 0)),
    }, report
    by_name = report.by_name()
    assert sorted(by_name["a_ok.py"].output_tail.splitlines()) == [
        "data says forty-two",
        "to stderr",
    ]
    assert "ValueError: bad value" in by_name["b_fail.py"].output_tail
    assert by_name["d_slow.py"].output_tail == "sleeping"
    assert "printed more" in by_name["f_flood.py"].message
    assert by_name["g_hello.js"].output_tail == "hello from node"
    # Each script's node came back with its result; the batch used both.
    assert {on_swarm[r.node] for r in report.results} == {"manager", "worker"}
    # One audit record per run, under the student's name, with the node.
    records = [r for r in read_audit(gateway.audit_dir, user="alice") if r["kind"] == "run"]
    assert len(records) == len(report.results)
    # The flood's run is "truncated" (the batch says "failed", with the reason).
    expected = collections.Counter((r.status, r.exit_code) for r in report.results)
    expected.update({("failed", 137): -1, ("truncated", 137): 1})
    assert collections.Counter((r["status"], r["exit_code"]) for r in records) == +expected
    assert {r["node"] for r in records} == {r.node for r in report.results}
    assert all(r["node_name"] for r in records)
    assert all(r["container"].startswith("dockermagic-") for r in records)


def _cli(args: list[str], env: dict[str, str]) -> str:
    """What ``dockermagic ARGS`` prints, run as a client with ``env`` added."""
    return subprocess.run(
        [sys.executable, "-m", "dockermagic", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=ROOT,
    ).stdout


def test_the_ceiling_holds_and_what_a_task_cannot_have_is_refused(
    gateway: GatewayProcess, on_swarm: dict[str, str]
) -> None:
    info = GatewayBackend(gateway.url, gateway.token("teacher")).info()
    assert info["backend"] == "swarm"
    status = GatewayBackend(gateway.url, gateway.token("teacher")).json("GET", "/status")
    assert status["backend"] == "swarm"
    assert {n["id"] for n in status["nodes"] if n["ready"]} == set(on_swarm)
    shown = _cli(["gateway", "status"], gateway.env("teacher"))
    assert f"gateway {gateway.url} on a Swarm:" in shown
    assert "nodes: 2 of 2 ready" in shown
    # A student's doctor says where runs go (it asks the gateway, no engine here).
    doctor = _cli(
        ["doctor", "--logs", str(gateway.folder / "logs")],
        {**gateway.env("alice"), "DOCKER_HOST": "unix:///nonexistent.sock"},
    )
    assert "one-shot runs on a Swarm, sessions on its manager" in doctor
    loose = runner(gateway, "alice", policy=SandboxPolicy.default().replace(memory="2g"))
    with pytest.raises(LimitExceededError, match="limit on memory"):
        loose.run("print(1)")
    with pytest.raises(InvalidArgumentError, match=r"no standard input.*a session"):
        runner(gateway, "alice").run("print(input())", stdin="x\n")
    # carol may have a network on a gateway of containers; a task has none.
    networked = runner(gateway, "carol", policy=SandboxPolicy.default().replace(network=True))
    with pytest.raises(InvalidArgumentError, match="no network"):
        networked.run("print(1)")
    # Within the ceiling it runs, on a node.
    result = runner(gateway, "alice").run("print('within')")
    assert (result.status, result.stdout) == ("ok", "within\n")
    assert result.node in on_swarm


def test_cancel_removes_the_running_tasks_service(
    gateway: GatewayProcess, on_swarm: dict[str, str], manager: docker.DockerClient
) -> None:
    started, cancel = threading.Event(), threading.Event()
    results: list[RunResult] = []

    def on_output(stream: str, text: str) -> None:
        if "started" in text:
            started.set()

    thread = threading.Thread(
        target=lambda: results.append(
            runner(gateway, "bob").run(SLEEPER, on_output=on_output, cancel=cancel)
        )
    )
    thread.start()
    try:
        assert started.wait(60), "the task never printed"
        services = services_of(manager, "bob")
        # The gateway's own identity: its cleanup finds them should it die.
        assert [s.labels[OWNER_PID] for s in services] == [str(gateway.process.pid)]  # type: ignore[union-attr]
        t0 = time.monotonic()
        cancel.set()
        thread.join(30)
        assert not thread.is_alive()
        assert results[0].cancelled
        assert results[0].stdout == "started\n"
        assert wait_for(lambda: services_of(manager, "bob") == [], 10)
        print(f"cancel to no service: {time.monotonic() - t0:.2f} s")
    finally:
        cancel.set()
        thread.join(30)


def test_a_session_runs_on_the_managers_own_engine(
    gateway: GatewayProcess, on_swarm: dict[str, str], cluster: SwarmCluster
) -> None:
    session = Session("notes", runner(gateway, "carol"))
    try:
        assert session.run("x = 6 * 7").ok
        result = session.run("print(x)")
        assert (result.status, result.stdout, result.node) == ("ok", "42\n", "")
        for node, expected in ((cluster.manager, 1), (cluster.worker, 0)):
            client = node.client(timeout=10)
            try:
                found = client.containers.list(filters={"label": f"{GATEWAY_USER}=carol"})
            finally:
                client.close()
            assert len(found) == expected, node
    finally:
        session.stop()


def _start_sleeper(process: GatewayProcess, user: str) -> threading.Thread:
    """A run that sleeps, in a thread (its client fails when the gateway goes)."""

    def run() -> None:
        with contextlib.suppress(DockermagicError):
            runner(process, user).run(SLEEPER)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_killed_gateways_services_go_at_the_next_start_and_a_stopped_one_leaves_none(
    cluster: SwarmCluster,
    on_swarm: dict[str, str],
    manager: docker.DockerClient,
    tmp_path: Path,
) -> None:
    first = swarm_gateway(tmp_path / "first", cluster).start()
    try:
        client = _start_sleeper(first, "alice")
        assert wait_for(lambda: len(services_of(manager, "alice")) == 1, 60)
        first.kill()  # SIGKILL: no chance to remove anything
        client.join(30)
        assert len(services_of(manager, "alice")) == 1
    finally:
        first.kill()
    second = swarm_gateway(tmp_path / "second", cluster).start()
    try:
        # Its start removed the dead gateway's service (its owner is gone).
        assert services_of(manager, "alice") == []
        client = _start_sleeper(second, "bob")
        assert wait_for(lambda: len(services_of(manager, "bob")) == 1, 60)
        second.stop()  # SIGTERM: as a service manager stops it
        client.join(30)
        assert services_of(manager, "bob") == []
        assert not any("Traceback" in line for line in second.lines), second.lines
    finally:
        second.stop()


def test_a_gateway_asked_for_a_swarm_refuses_an_engine_that_is_no_manager(
    tmp_path: Path,
) -> None:
    # The main engine (DOCKER_HOST as the test process has it) is no manager.
    process = GatewayProcess(tmp_path, ceiling=CEILING, swarm=True)
    with pytest.raises(RuntimeError, match="is not a Swarm manager") as info:
        process.start()
    assert "point the gateway's DOCKER_HOST at a manager" in str(info.value)
    assert process.process is not None
    assert process.process.returncode == 2
