"""Batches of scripts through a real gateway: ``run_scripts`` and ``dockermagic run``
with ``DOCKERMAGIC_GATEWAY`` set, each script a one-shot run in the user's queue;
and packages the teacher allows, built on the gateway's host.

The same folder run locally and through the gateway gives the same statuses
and exit codes; a quota smaller than the batch's workers queues, it does not
fail; a cancelled batch leaves nothing running; the audit log has one record
per script with the user; the CLI works from a process without a Docker socket.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from dockermagic import BatchEvent, BatchReport, run_scripts
from dockermagic.cleanup import list_containers
from dockermagic.errors import InvalidArgumentError, LimitExceededError
from dockermagic.gateway.audit import read_audit
from dockermagic.labels import GATEWAY_USER
from dockermagic.panel import ScriptsPanel
from dockermagic.runners import JavaScriptDockerRunner, PythonDockerRunner
from dockermagic.sessions import Session
from tests.conftest import TAG
from tests.gateway import ROOT, GatewayProcess, wait_for

pytestmark = pytest.mark.gateway_server

#: Per-script timeout: room for a cold container on a busy 2-CPU machine,
#: short enough for the sleeping script.
TIMEOUT = 5.0

SCRIPTS = {
    "a_ok.py": "print('hello from python')\n",
    "b_data.py": (
        "from pathlib import Path\n"
        "print('data says', (Path(__file__).parent / 'data' / 'in.txt').read_text().strip())\n"
    ),
    "c_fail.py": "import sys\nprint('about to fail')\nsys.exit(3)\n",
    "d_slow.py": "import time\nprint('sleeping', flush=True)\ntime.sleep(60)\n",
    "e_flood.py": "import sys\nfor _ in range(100):\n    sys.stdout.write('y' * 100_000 + '\\n')\n",
    "f_hello.js": "console.log('hello from node');\n",
}

EXPECTED = {
    "a_ok.py": "ok",
    "b_data.py": "ok",
    "c_fail.py": "failed",
    "d_slow.py": "timed_out",
    "f_hello.js": "ok",
}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """A gateway where a student runs one program at once, a few more queued."""
    with GatewayProcess(
        tmp_path_factory.mktemp("gateway-batch"),
        # Packages: tabulate only (pure Python, small: pip on the gateway's
        # host fetches it, or finds it in its cache).
        ceiling={"timeout": 30, "memory": "512m", "cpus": 1, "packages": {"python": ["tabulate"]}},
        quotas={"runs_at_once": 1, "queued": 8, "sessions": 2},
        capacity=4,
    ) as process:
        yield process


@pytest.fixture
def as_alice(gateway: GatewayProcess, monkeypatch: pytest.MonkeyPatch) -> GatewayProcess:
    for key, value in gateway.env("alice").items():
        monkeypatch.setenv(key, value)
    return gateway


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gateway-scripts") / "scripts"
    root.mkdir()
    for name, code in SCRIPTS.items():
        (root / name).write_text(code)
    (root / "data").mkdir()
    (root / "data" / "in.txt").write_text("forty-two\n")
    return root


def outcome(report: BatchReport) -> list[tuple[str, str, str, int | None]]:
    return [(r.name, r.language, r.status, r.exit_code) for r in report.results]


def gateway_containers(client: docker.DockerClient) -> list[str]:
    return [c.name for c in list_containers(client, tag=TAG) if GATEWAY_USER in c.labels]


def test_a_batch_through_the_gateway_matches_a_local_one(
    folder: Path,
    gateway: GatewayProcess,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    docker_client: docker.DockerClient,
) -> None:
    local = run_scripts(folder, mode="parallel", workers=2, timeout=TIMEOUT)
    before = len(list(read_audit(gateway.audit_dir, user="alice")))
    for key, value in gateway.env("alice").items():
        monkeypatch.setenv(key, value)
    events: list[BatchEvent] = []
    # Three at once against a quota of one: two wait in the gateway's queue.
    remote = run_scripts(
        folder,
        mode="parallel",
        workers=3,
        timeout=TIMEOUT,
        on_event=events.append,
        log_dir=tmp_path / "logs",
    )
    assert remote.backend == "gateway"
    assert remote.workers == 3
    assert remote.pool == 0
    assert outcome(remote) == outcome(local)
    assert {r.name: r.status for r in remote.results if r.name in EXPECTED} == EXPECTED
    results = remote.by_name()
    assert "data says forty-two" in results["b_data.py"].output_tail
    assert "about to fail" in results["c_fail.py"].output_tail
    assert results["d_slow.py"].duration >= TIMEOUT
    # Events and the log mirror as locally.
    for name in SCRIPTS:
        kinds = [e.kind for e in events if e.script == name]
        assert kinds[0] == "start"
        assert kinds[-1] == "finish"
        assert kinds.count("finish") == 1
    hello = "".join(e.text for e in events if e.script == "a_ok.py" and e.kind == "output")
    assert hello == "hello from python\n"
    mirrored = Path(remote.log_dir) / "a_ok.py.log"
    assert "hello from python" in mirrored.read_text()
    assert json.loads(remote.to_json())["backend"] == "gateway"
    # One audit record per script, as alice.
    records = list(read_audit(gateway.audit_dir, user="alice"))[before:]
    assert sorted(r["language"] for r in records) == sorted(r.language for r in remote.results)
    assert {r["user"] for r in records} == {"alice"}
    assert {r["kind"] for r in records} == {"run"}
    assert wait_for(lambda: not gateway_containers(docker_client))


def test_a_cancelled_batch_stops_its_runs_on_the_gateway(
    as_alice: GatewayProcess, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    folder = tmp_path / "slow"
    folder.mkdir()
    for i in range(4):
        (folder / f"s{i}.py").write_text("import time\nprint('up', flush=True)\ntime.sleep(60)\n")
    cancel = threading.Event()

    def on_event(event: BatchEvent) -> None:
        if event.kind == "output":
            cancel.set()

    report = run_scripts(
        folder, mode="parallel", workers=2, timeout=30, cancel=cancel, on_event=on_event
    )
    assert report.cancelled
    assert {r.status for r in report.results} == {"cancelled"}
    assert report.wall_time < 20
    assert wait_for(lambda: not gateway_containers(docker_client))


def test_a_swarm_batch_is_refused_with_a_gateway_set(
    as_alice: GatewayProcess, folder: Path
) -> None:
    with pytest.raises(InvalidArgumentError, match="gateway"):
        run_scripts(folder, backend="swarm")


def test_the_cli_runs_a_folder_without_a_docker_socket(
    gateway: GatewayProcess, tmp_path: Path
) -> None:
    folder = tmp_path / "two"
    folder.mkdir()
    for name in ("a_ok.py", "c_fail.py"):
        (folder / name).write_text(SCRIPTS[name])
    env = {
        **os.environ,
        **gateway.env("bob"),
        "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock",
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "dockermagic",
            "run",
            str(folder),
            "--timeout",
            str(TIMEOUT),
            "--logs",
            str(tmp_path / "logs"),
            "--json",
            "-",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["backend"] == "gateway"
    assert {r["name"]: r["status"] for r in report["results"]} == {
        "a_ok.py": "ok",
        "c_fail.py": "failed",
    }
    assert [r["user"] for r in read_audit(gateway.audit_dir, user="bob")][-2:] == ["bob", "bob"]


def test_the_panel_runs_its_batch_through_the_gateway(
    as_alice: GatewayProcess, tmp_path: Path
) -> None:
    folder = tmp_path / "panel"
    folder.mkdir()
    for name in ("a_ok.py", "c_fail.py", "f_hello.js"):
        (folder / name).write_text(SCRIPTS[name])
    panel = ScriptsPanel(folder, log_dir=tmp_path / "logs", mode="parallel")
    assert not panel.swarm  # no Swarm toggle: the gateway holds the engine
    panel.run_button.click()
    report = panel.wait(60)
    assert report is not None
    assert report.backend == "gateway"
    assert {r.name: r.status for r in report.results} == {
        "a_ok.py": "ok",
        "c_fail.py": "failed",
        "f_hello.js": "ok",
    }
    panel.selected.value = "f_hello.js"
    assert "hello from node" in panel.stdout_view.value


def test_allowed_packages_run_others_are_refused_naming_the_package(
    as_alice: GatewayProcess, tmp_path: Path
) -> None:
    code = "import tabulate\nprint(tabulate.tabulate([[1, 2]]).splitlines()[1])\n"
    runner = PythonDockerRunner(requirements=["tabulate"])
    result = runner.run(code, timeout=30)
    assert result.ok, result.stderr
    assert result.stdout == "1  2\n"
    # A session of the same set, and a batch whose folder asks for it.
    with Session("deps", PythonDockerRunner(requirements=["Tabulate"])) as session:
        cell = session.run("import tabulate\nprint(tabulate.__name__)")
        assert cell.stdout == "tabulate\n", cell.stderr
    folder = tmp_path / "deps"
    folder.mkdir()
    (folder / "table.py").write_text(code)
    (folder / "requirements.txt").write_text("tabulate\n")
    report = run_scripts(folder, timeout=30)
    assert report.backend == "gateway"
    assert [(r.name, r.status) for r in report.results] == [("table.py", "ok")]
    assert "1  2" in report.results[0].output_tail
    # Anything else is refused before a container starts, naming the package.
    with pytest.raises(LimitExceededError, match="'requests'") as refused:
        PythonDockerRunner(requirements=["tabulate", "requests"]).run("print(1)")
    assert "only tabulate for python" in str(refused.value)
    with pytest.raises(LimitExceededError, match="'lodash'"):
        JavaScriptDockerRunner(requirements=["lodash"]).run("console.log(1)")
    (folder / "requirements.txt").write_text("requests\n")
    refused_batch = run_scripts(folder, timeout=30)
    assert refused_batch.results[0].status == "error"
    assert "'requests'" in refused_batch.results[0].message
