"""The gateway against real parts: a ``dockermagic gateway serve`` subprocess on
127.0.0.1 holding the main engine, and clients that never touch the Docker socket.

Who may do what (tokens, other students' sessions, the ceiling, quotas under
a burst), the audit log, hostile requests, idle reaping, and what a gateway
that stops, or is killed, leaves behind (nothing).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
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
import requests

from dockermagic.errors import (
    AccessDeniedError,
    GatewayUnavailableError,
    LimitExceededError,
    QuotaExceededError,
)
from dockermagic.gateway.audit import read_audit
from dockermagic.gateway.client import GatewayBackend, NotFoundError
from dockermagic.policy import SandboxPolicy
from dockermagic.runners import PythonDockerRunner
from dockermagic.sessions import Session, SessionRestartedWarning
from tests.engines import make_certificates
from tests.gateway import ROOT, GatewayProcess, gateway_containers, wait_for
from tests.support import started_in_thread

pytestmark = pytest.mark.gateway_server

AUDIT = (sys.executable, "-m", "dockermagic", "gateway", "audit", "--dir")
STATUS = (sys.executable, "-m", "dockermagic", "gateway", "status")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """A gateway with a tight ceiling and small quotas."""
    folder = tmp_path_factory.mktemp("gateway")
    with GatewayProcess(
        folder,
        ceiling={"timeout": 10, "memory": "512m", "cpus": 1, "copy_limit": "4m"},
        quotas={"runs_at_once": 2, "queued": 3, "sessions": 2},
        capacity=6,
    ) as process:
        yield process


def backend(gateway: GatewayProcess, user: str) -> GatewayBackend:
    return GatewayBackend(gateway.url, gateway.token(user))


def runner(gateway: GatewayProcess, user: str, **kwargs: Any) -> PythonDockerRunner:
    return PythonDockerRunner(gateway=backend(gateway, user), **kwargs)


def api(gateway: GatewayProcess, user: str | None, method: str, path: str, **kw: Any) -> Any:
    headers = {"Authorization": f"token {gateway.token(user)}"} if user else {}
    headers.update(kw.pop("headers", {}))
    with requests.Session() as http:
        http.trust_env = False
        return http.request(method, f"{gateway.url}/v1{path}", headers=headers, timeout=30, **kw)


# -- who may do what ----------------------------------------------------------------------


def test_a_missing_or_unknown_token_is_refused(gateway: GatewayProcess) -> None:
    assert api(gateway, None, "GET", "/info").status_code == 401
    bad = {"Authorization": "token not-a-token-of-anyone"}
    answer = api(gateway, None, "POST", "/runs", headers=bad, json={})
    assert answer.status_code == 401
    assert answer.json()["error"]["type"] == "AccessDeniedError"
    with pytest.raises(AccessDeniedError, match="does not know this token"):
        PythonDockerRunner(gateway=GatewayBackend(gateway.url, "x" * 20)).run("print(1)")


def test_a_student_cannot_see_interrupt_or_stop_another_students_session(
    gateway: GatewayProcess,
) -> None:
    session = Session("mine", runner(gateway, "alice"))
    try:
        assert session.run("secret = 42").ok
        session_id = session._remote.id  # type: ignore[union-attr]
        for method, path in (
            ("GET", f"/sessions/{session_id}"),
            ("POST", f"/sessions/{session_id}/interrupt"),
            ("POST", f"/sessions/{session_id}/reset"),
            ("POST", f"/sessions/{session_id}/run"),
            ("DELETE", f"/sessions/{session_id}"),
        ):
            answer = api(gateway, "bob", method, path, json={})
            assert answer.status_code == 404, (method, path, answer.text)
        assert api(gateway, "bob", "GET", "/sessions").json() == []
        mine = api(gateway, "alice", "GET", "/sessions").json()
        assert [s["name"] for s in mine] == ["mine"]
        # The teacher sees everyone's, and the status page.
        seen = api(gateway, "teacher", "GET", "/sessions").json()
        assert [(s["user"], s["name"]) for s in seen] == [("alice", "mine")]
        assert api(gateway, "bob", "GET", "/status").status_code == 403
        status = api(gateway, "teacher", "GET", "/status").json()
        assert status["users"]["alice"]["sessions"] == 1
        # Untouched by bob's attempts.
        assert session.run("print(secret)").stdout == "42\n"
    finally:
        session.stop()


def test_the_owner_interrupts_a_cell_and_the_session_stays(gateway: GatewayProcess) -> None:
    session = Session("stays", runner(gateway, "alice"))
    try:
        session.run("kept = 'yes'")
        session_id = session._remote.id  # type: ignore[union-attr]
        cell, results = started_in_thread(
            session.run, "import time\nprint('busy', flush=True)\ntime.sleep(30)"
        )
        answer = api(gateway, "alice", "POST", f"/sessions/{session_id}/interrupt")
        assert answer.json() == {"interrupted": True}
        cell.join(20)
        assert results[0].cancelled
        assert session.run("print(kept)").stdout == "yes\n"
    finally:
        session.stop()


def test_a_student_cannot_cancel_another_students_run(gateway: GatewayProcess) -> None:
    thread, result = started_in_thread(
        runner(gateway, "alice").run,
        "import time\nprint('go', flush=True)\ntime.sleep(2)\nprint('done')",
    )
    assert api(gateway, "bob", "GET", "/runs").json() == []
    runs = api(gateway, "alice", "GET", "/runs").json()
    assert len(runs) == 1
    assert api(gateway, "bob", "POST", f"/runs/{runs[0]['id']}/cancel").status_code == 404
    thread.join(30)
    assert result[0].ok
    assert result[0].stdout == "go\ndone\n"


@pytest.mark.parametrize(
    ("policy", "limit"),
    [
        ({"timeout": 11}, "timeout"),
        ({"memory": "1g"}, "memory"),
        ({"network": True}, "network"),
        ({"read_only": False}, "read_only"),
    ],
)
def test_a_request_over_the_ceiling_fails_naming_the_limit(
    gateway: GatewayProcess, policy: dict[str, Any], limit: str
) -> None:
    loose = PythonDockerRunner(
        gateway=backend(gateway, "alice"), policy=SandboxPolicy.default().replace(**policy)
    )
    with pytest.raises(LimitExceededError) as info:
        loose.run("print(1)")
    assert info.value.limit == limit
    assert f"limit on {limit}" in str(info.value)


def test_a_per_call_timeout_over_the_ceiling_and_a_foreign_image_are_refused(
    gateway: GatewayProcess,
) -> None:
    with pytest.raises(LimitExceededError, match="limit on timeout is 10 s"):
        runner(gateway, "alice").run("print(1)", timeout=30)
    with pytest.raises(LimitExceededError, match="limit on image") as info:
        runner(gateway, "alice", image="alpine:latest").run("print(1)")
    assert info.value.limit == "image"
    with pytest.raises(LimitExceededError, match="limit on packages"):
        runner(gateway, "alice", requirements=["numpy"]).run("print(1)")
    # Within the ceiling, a student may lower limits and run.
    tight = runner(gateway, "alice", policy=SandboxPolicy.default().replace(memory="64m"))
    assert tight.run("print('fine')", timeout=5).stdout == "fine\n"


def test_network_only_for_users_the_teacher_names(gateway: GatewayProcess) -> None:
    code = "import os\nprint(sorted(os.listdir('/sys/class/net')))"
    networked = runner(gateway, "carol", policy=SandboxPolicy.default().replace(network=True))
    assert networked.run(code).stdout != "['lo']\n"
    assert runner(gateway, "carol").run(code).stdout == "['lo']\n"


def test_quotas_hold_under_a_burst(
    gateway: GatewayProcess, docker_client: docker.DockerClient
) -> None:
    peak = 0
    stop = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, len(gateway_containers(docker_client, "alice")))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    code = "import time\ntime.sleep(1.5)\nprint('ok')"
    try:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(runner(gateway, "alice").run, code) for _ in range(8)]
            outcomes = []
            for future in futures:
                try:
                    outcomes.append(future.result(timeout=60).stdout)
                except QuotaExceededError as exc:
                    outcomes.append(exc.quota)
    finally:
        stop.set()
        watcher.join()
    # 2 at once, 3 waiting: of 8 sent together, 5 run and 3 are refused.
    assert sorted(outcomes) == ["ok\n"] * 5 + ["programs waiting"] * 3, outcomes
    assert 1 <= peak <= 2
    # Sessions: two at most.
    sessions = [Session(f"s{i}", runner(gateway, "alice")) for i in range(3)]
    try:
        sessions[0].start()
        sessions[1].start()
        with pytest.raises(QuotaExceededError, match="sessions is at most 2"):
            sessions[2].start()
    finally:
        for session in sessions:
            session.stop()


def test_one_students_flood_does_not_starve_another(gateway: GatewayProcess) -> None:
    # alice fills her 2 slots and her queue of 3; bob's single run is served
    # as soon as a slot is free, not after alice's queue.
    finished: dict[str, float] = {}
    code = "import time\ntime.sleep(1)"

    def run(user: str, key: str) -> None:
        runner(gateway, user).run(code)
        finished[key] = time.monotonic()

    threads = [threading.Thread(target=run, args=("alice", f"a{i}")) for i in range(5)]
    for thread in threads:
        thread.start()
        time.sleep(0.05)
    bob = threading.Thread(target=run, args=("bob", "b"))
    bob.start()
    for thread in [*threads, bob]:
        thread.join(60)
    alice_last = max(v for k, v in finished.items() if k.startswith("a"))
    assert finished["b"] < alice_last - 0.5, finished


def test_the_audit_log_has_one_record_per_run_with_its_user(gateway: GatewayProcess) -> None:
    before = {u: len(list(read_audit(gateway.audit_dir, user=u))) for u in ("bob", "carol")}
    runner(gateway, "bob").run("print('b1')")
    runner(gateway, "bob").run("import sys; sys.exit(3)")
    session = Session("audited", runner(gateway, "carol"))
    try:
        session.run("x = 1")
    finally:
        session.stop()
    bob = list(read_audit(gateway.audit_dir, user="bob"))[before["bob"] :]
    carol = list(read_audit(gateway.audit_dir, user="carol"))[before["carol"] :]
    assert [(r["kind"], r["status"], r["exit_code"]) for r in bob] == [
        ("run", "ok", 0),
        ("run", "failed", 3),
    ]
    assert [(r["kind"], r["session"], r["status"]) for r in carol] == [("cell", "audited", "ok")]
    record = bob[0]
    assert record["image_digest"].startswith("sha256:")
    assert len(record["code_sha256"]) == 64
    assert record["limits"]["timeout"] == 10
    assert record["cpu_seconds"] is not None
    assert record["peak_memory_bytes"] > 0
    # Append-only for the gateway's user; nobody else may write it.
    assert (gateway.audit_dir / "audit.jsonl").stat().st_mode & 0o777 == 0o640
    assert gateway.audit_dir.stat().st_mode & 0o777 == 0o750
    cli = subprocess.run(
        [*AUDIT, str(gateway.audit_dir), "--user", "bob", "--json"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    assert [json.loads(line)["user"] for line in cli.stdout.splitlines()] == ["bob"] * len(
        list(read_audit(gateway.audit_dir, user="bob"))
    )


def test_hostile_requests_are_refused_clearly(gateway: GatewayProcess) -> None:
    answer = api(gateway, "alice", "POST", "/runs", data=b"{not json")
    assert answer.status_code == 400
    job = {"source": "cHJpbnQoMSk=", "entry": "main.py", "code": {"../../etc/x": ""}}
    answer = api(gateway, "alice", "POST", "/runs", json={"language": "python", "job": job})
    assert answer.status_code == 400
    assert "relative path inside the sandbox" in answer.json()["error"]["message"]
    job = {"source": "not base64!", "entry": "main.py"}
    answer = api(gateway, "alice", "POST", "/runs", json={"language": "python", "job": job})
    assert answer.status_code == 400
    answer = api(gateway, "alice", "POST", "/runs", json={"language": "cobol", "job": {}})
    assert answer.status_code == 400
    answer = api(gateway, "alice", "POST", "/runs", data=b"[" * 100_000 + b"]" * 100_000)
    assert answer.status_code == 400
    # Bigger than the gateway reads at all.
    answer = api(gateway, "alice", "POST", "/runs", data=b"x" * (8 * 1024**2))
    assert answer.status_code == 413


def test_the_client_needs_no_docker_socket(gateway: GatewayProcess, tmp_path: Path) -> None:
    script = tmp_path / "client.py"
    script.write_text(
        "import docker, warnings\n"
        "from dockermagic import get_runner, cleanup\n"
        "from dockermagic.sessions import SessionManager\n"
        "try:\n"
        "    docker.from_env().ping()\n"
        "    print('socket reachable')\n"
        "except docker.errors.DockerException:\n"
        "    print('no socket')\n"
        "assert cleanup() == []\n"
        "print(get_runner('python').run('print(6*7)').stdout, end='')\n"
        "print(get_runner('js').run('console.log(6*7)').stdout, end='')\n"
        "with SessionManager() as sessions:\n"
        "    s = sessions.get('lab', 'python')\n"
        "    s.run('x = 20')\n"
        "    print(s.run('x + 1').displays[0]['text/plain'])\n"
    )
    env = {
        **os.environ,
        **gateway.env("bob"),
        "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock",
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["no socket", "42", "42", "21"]


def test_the_magics_go_through_the_gateway(gateway: GatewayProcess, tmp_path: Path) -> None:
    script = tmp_path / "kernel.py"
    script.write_text(
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "shell = InteractiveShell.instance()\n"
        f"shell.config.DockerMagics.log_dir = {str(tmp_path / 'logs')!r}\n"
        "shell.run_line_magic('load_ext', 'dockermagic')\n"
        "shell.run_cell_magic('docker_python', '--session lab', 'x = 6')\n"
        "shell.run_cell_magic('docker_python', '--session lab', 'print(x * 7)')\n"
        "shell.run_cell_magic('docker_js', '', 'console.log(\"js\")')\n"
        "shell.run_line_magic('docker_status', '')\n"
        "shell.run_line_magic('unload_ext', 'dockermagic')\n"
    )
    env = {
        **os.environ,
        **gateway.env("bob"),
        "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock",
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[:2] == ["42", "js"], done.stdout + done.stderr
    assert f"backend     gateway {gateway.url} (no Docker engine needed here)" in lines
    assert "user        bob" in lines
    assert any(line.startswith("sessions    1") for line in lines), lines
    assert "Warning" not in done.stderr, done.stderr


def test_doctor_names_the_gateway(gateway: GatewayProcess, tmp_path: Path) -> None:
    env = {
        **os.environ,
        **gateway.env("alice"),
        "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock",
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        [sys.executable, "-m", "dockermagic", "doctor", "--logs", str(tmp_path / "logs")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"backend     gateway {gateway.url}" in done.stdout
    assert "user        alice" in done.stdout


def test_cpu_time_per_hour_is_a_quota(tmp_path: Path) -> None:
    with GatewayProcess(tmp_path, quotas={"cpu_seconds_per_hour": 0.05}) as busy:
        spin = "import time\nend = time.process_time() + 0.2\nwhile time.process_time() < end: pass"
        assert runner(busy, "alice").run(spin).ok
        with pytest.raises(QuotaExceededError, match=r"CPU seconds per hour is at most 0\.05"):
            runner(busy, "alice").run("print(1)")
        # Another student's hour is their own.
        assert runner(busy, "bob").run("print(1)").ok


def test_the_teacher_sees_the_status_from_the_command_line(gateway: GatewayProcess) -> None:
    def status(user: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*STATUS, "--url", gateway.url, "--token", gateway.token(user)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )

    session = Session("shown", runner(gateway, "bob"))
    try:
        session.start()
        shown = status("teacher")
        assert shown.returncode == 0, shown.stderr
        assert f"gateway {gateway.url}:" in shown.stdout
        assert "session bob/shown (python)" in shown.stdout
        refused = status("alice")
        assert refused.returncode == 2
        assert "Only a teacher" in refused.stderr
    finally:
        session.stop()


def test_https_with_the_teachers_certificate(tmp_path: Path) -> None:
    make_certificates(tmp_path / "certs")
    tls = {
        "cert": str(tmp_path / "certs/server-cert.pem"),
        "key": str(tmp_path / "certs/server-key.pem"),
    }
    with GatewayProcess(tmp_path / "gateway", tls=tls) as secure:
        assert secure.url.startswith("https://127.0.0.1:")
        trusted = GatewayBackend(
            secure.url, secure.token("alice"), ca=str(tmp_path / "certs/ca.pem")
        )
        assert PythonDockerRunner(gateway=trusted).run("print('over TLS')").stdout == "over TLS\n"
        # A client that does not trust the certificate sends nothing (no token leaks).
        with pytest.raises(GatewayUnavailableError, match="CERTIFICATE_VERIFY_FAILED"):
            runner(secure, "alice").run("print(1)")
        plain = secure.url.replace("https://", "http://")
        with pytest.raises(GatewayUnavailableError):
            PythonDockerRunner(gateway=GatewayBackend(plain, secure.token("alice"))).run("1")


# -- a gateway's life ---------------------------------------------------------------------


def test_idle_sessions_are_reaped(tmp_path: Path, docker_client: docker.DockerClient) -> None:
    with GatewayProcess(tmp_path, idle_timeout=1) as quick:
        session = Session("idle", runner(quick, "alice"))
        assert session.run("x = 1").ok
        assert gateway_containers(docker_client, "alice")
        assert wait_for(lambda: not gateway_containers(docker_client, "alice"), 10)
        assert api(quick, "alice", "GET", "/sessions").json() == []
        # The next cell opens it again, as after a crash (state is gone).
        with pytest.warns(SessionRestartedWarning, match="lost by the gateway"):
            result = session.run("print('x' in globals())")
        assert result.stdout == "False\n"
        session.stop()


def test_a_stopped_gateway_ends_its_containers_and_clients_reconnect(
    tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    first = GatewayProcess(tmp_path / "one").start()
    port = int(first.url.rsplit(":", 1)[1])
    try:
        session = Session("kept", runner(first, "alice"))
        assert session.run("x = 1").ok
        busy = threading.Thread(
            target=lambda: _quietly(runner(first, "bob").run, "import time; time.sleep(30)")
        )
        busy.start()
        assert wait_for(lambda: len(gateway_containers(docker_client)) == 2, 20)
    finally:
        assert first.stop() == 0
    busy.join(30)
    assert gateway_containers(docker_client) == []
    with pytest.raises(GatewayUnavailableError, match="Cannot reach the dockermagic gateway"):
        session.run("x")
    with GatewayProcess(tmp_path / "two", port=port):
        # Same address, new gateway: the session is opened again, state gone.
        with pytest.warns(SessionRestartedWarning, match="lost by the gateway"):
            result = session.run("print('x' in globals())")
        assert result.stdout == "False\n"
        session.stop()


def test_a_killed_gateways_containers_go_at_the_next_start(
    tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    first = GatewayProcess(tmp_path / "one").start()
    session = Session("orphan", runner(first, "alice"))
    assert session.run("x = 1").ok
    assert gateway_containers(docker_client, "alice")
    first.kill()
    with GatewayProcess(tmp_path / "two"):
        assert wait_for(lambda: not gateway_containers(docker_client, "alice"), 20)


def _quietly(func: Any, *args: Any) -> None:
    with contextlib.suppress(GatewayUnavailableError, NotFoundError):
        func(*args)
