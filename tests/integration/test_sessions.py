"""Warm sessions against the real engine: the core API and the --session magic.

The warm interpreters themselves (state, streams, interrupts) are in test_interpreters.py.
"""

from __future__ import annotations

import _thread
import threading
import time
from collections.abc import Iterator

import docker
import pytest
from IPython.core.interactiveshell import InteractiveShell

from dockermagic.cleanup import list_containers
from dockermagic.engine import engine_profile
from dockermagic.labels import SESSION as LABEL_SESSION
from dockermagic.magics import CellFailedError, CellInterrupted
from dockermagic.sessions import SessionManager, SessionRestartedWarning
from tests.support import loaded_shell, started_in_thread


@pytest.fixture
def manager() -> Iterator[SessionManager]:
    sessions = SessionManager()
    yield sessions
    sessions.close()


def _programs(client: docker.DockerClient, container_id: str) -> list[str]:
    """Commands running in a container besides init and the warm interpreter."""
    if engine_profile(client).name == "Podman":
        # Podman 4.3's Docker-API top answers 200 with an empty body; its own
        # endpoint answers the same table.
        api = client.api
        url = f"{api.base_url}/v4.0.0/libpod/containers/{container_id}/top"
        response = api.get(url, params={"stream": "false"}, timeout=30)
        response.raise_for_status()
        processes = response.json()["Processes"]
    else:
        processes = client.api.top(container_id)["Processes"]
    server = ("docker-init", "podman-init", "catatonit", "<dockermagic-agent>")
    return [p[-1] for p in processes if not any(name in p[-1] for name in server)]


def test_files_persist_and_runs_are_faster_than_cold(
    manager: SessionManager, docker_client: docker.DockerClient
) -> None:
    session = manager.get("files", "python")
    first = session.run("open('data.txt', 'w').write('kept')\nprint('written')")
    assert first.ok, first.stderr
    started = time.monotonic()
    second = session.run("print(open('data.txt').read())")
    warm = time.monotonic() - started
    assert second.stdout == "kept\n"
    assert second.container_name == first.container_name
    labels = docker_client.api.inspect_container(session.container_id)["Config"]["Labels"]
    assert labels[LABEL_SESSION] == "files"
    assert warm < 1.0


def test_same_sandbox_policy(manager: SessionManager, docker_client: docker.DockerClient) -> None:
    session = manager.get("policy", "python")
    code = (
        "import os\n"
        "print(os.getuid())\n"
        "status = open('/proc/self/status').read()\n"
        "print([l for l in status.splitlines() if l.startswith(('CapEff', 'NoNewPrivs'))])\n"
        "print(sorted(os.listdir('/sys/class/net')))\n"
        "try:\n"
        "    open('/etc/x', 'w')\n"
        "except OSError as e:\n"
        "    print('ro', e.errno)\n"
    )
    result = session.run(code)
    assert result.stdout.splitlines() == [
        "65534",
        "['CapEff:\\t0000000000000000', 'NoNewPrivs:\\t1']",
        "['lo']",
        "ro 30",
    ]
    host = docker_client.api.inspect_container(session.container_id)["HostConfig"]
    assert host["Memory"] == host["MemorySwap"] == session.policy.memory
    assert host["ReadonlyRootfs"] is True


def test_timeout_interrupts_the_cell_not_the_session(
    manager: SessionManager, docker_client: docker.DockerClient
) -> None:
    session = manager.get("slow", "python")
    session.run("open('before', 'w').write('1')\nkept = 'variable'")
    code = (
        "import subprocess, time\n"
        "subprocess.Popen(['sleep', '300'])\n"
        "print('going', flush=True)\n"
        "time.sleep(60)\n"
    )
    result = session.run(code, timeout=1)
    assert result.timed_out
    assert result.stdout == "going\n"
    assert "KeyboardInterrupt" in result.stderr
    assert result.duration < 4
    after = session.run("import os; print(os.path.exists('before'), kept)")
    assert after.stdout == "True variable\n"
    assert after.container_name == result.container_name
    # The subprocess the interrupted cell started went with it.
    assert _programs(docker_client, session.container_id or "") == []


@pytest.mark.gateway
def test_interrupt_from_another_thread_keeps_the_session(manager: SessionManager) -> None:
    session = manager.get("interrupted", "python")
    assert not session.interrupt()  # nothing runs yet
    session.run("kept = 'yes'")
    cell, results = started_in_thread(
        session.run, "import time\nprint('busy', flush=True)\ntime.sleep(30)"
    )
    assert session.interrupt()
    cell.join(20)
    assert not cell.is_alive()
    assert results[0].cancelled
    assert results[0].duration < 15
    assert "busy" in results[0].stdout
    assert session.run("print(kept)").stdout == "yes\n", "the interpreter stays"
    assert not session.interrupt()


@pytest.mark.gateway
def test_stdin_javascript_and_failures(manager: SessionManager) -> None:
    session = manager.get("js", "js")
    code = "let s = ''; process.stdin.on('data', d => s += d).on('end', () => console.log(s));"
    assert session.run(code, stdin="piped ✓").stdout == "piped ✓\n"
    failed = session.run("\n\nthrow new Error('x');")
    assert failed.exit_code == 1
    assert "/main.js:3" in failed.stderr
    assert session.run("console.log(typeof s)").stdout == "string\n", "state survives a failure"


@pytest.mark.gateway
def test_out_of_memory_is_reported(manager: SessionManager) -> None:
    session = manager.get("oom", "python", policy=None)
    with pytest.warns(SessionRestartedWarning, match="out of memory"):
        result = session.run("x = bytearray(1024 * 1024 * 1024)")
    assert result.oom_killed, result
    assert result.status == "oom"
    assert result.oom_certain is engine_profile().reports_oom  # inferred on Podman
    assert session.run("print('alive')").stdout == "alive\n"


def test_dead_session_is_recreated_with_a_warning(
    manager: SessionManager, docker_client: docker.DockerClient
) -> None:
    session = manager.get("dies", "python")
    session.run("open('f', 'w').write('x')")
    old = session.container_id
    assert old is not None
    docker_client.api.remove_container(old, force=True, v=True)
    assert not session.alive
    with pytest.warns(SessionRestartedWarning, match="files written by earlier runs are gone"):
        result = session.run("import os; print(os.listdir('.'), 'x' in globals())")
    assert result.stdout == "[] False\n"
    assert session.container_id != old


@pytest.mark.gateway
def test_manager_reuses_and_stops(
    manager: SessionManager, docker_client: docker.DockerClient
) -> None:
    a = manager.get("same", "python")
    assert manager.get("same", "py") is a
    b = manager.get("same", "javascript")
    a.run("pass")
    b.run("")
    assert {s.language for s in manager.stop("same")} == {"python", "javascript"}
    assert not a.alive
    assert not b.alive
    assert manager.sessions() == []


def test_interrupt_kills_the_program_and_keeps_the_session(
    manager: SessionManager, docker_client: docker.DockerClient
) -> None:
    session = manager.get("intr", "python")
    session.run("open('kept', 'w').write('1')\nvalue = 2")
    timer = threading.Timer(1.0, _thread.interrupt_main)
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        session.run("import subprocess, time\nsubprocess.Popen(['sleep', '300'])\ntime.sleep(60)")
    interrupted = time.monotonic()
    while _programs(docker_client, session.container_id or ""):
        assert time.monotonic() - interrupted < 2, "programs still running 2 s after Ctrl-C"
        time.sleep(0.05)
    assert session.run("print(open('kept').read(), value)").stdout == "1 2\n"


# -- through the magics ------------------------------------------------------------------


@pytest.fixture
def ip(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InteractiveShell]:
    with loaded_shell(tmp_path_factory.mktemp("logs")) as shell:
        yield shell


@pytest.mark.gateway
def test_session_magic_keeps_files_and_stops(
    ip: InteractiveShell,
    docker_client: docker.DockerClient,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ip.run_cell_magic("docker_python", "--session lab", "open('notes.txt', 'w').write('hi')")
    ip.run_cell_magic("docker_python", "--session lab --out o", "print(open('notes.txt').read())")
    assert ip.user_ns["o"] == "hi\n"
    ip.run_cell_magic("docker_js", "--session lab", "require('fs').writeFileSync('j', 'js')")
    ip.run_line_magic("docker_session", "")
    listing = capsys.readouterr().out
    assert "lab (python): running" in listing
    assert "lab (javascript): running" in listing
    with pytest.raises(CellFailedError, match="exited with status 1"):
        ip.run_cell_magic("docker_python", "--session lab", "\n1/0")
    # The editor's line numbers: line 1 is the %% line (issue 17).
    assert "line 3" in capsys.readouterr().err
    ip.run_line_magic("docker_session", "--stop lab")
    assert "stopped session 'lab' (python, javascript)" in capsys.readouterr().out
    assert [c for c in list_containers(docker_client) if c.labels.get(LABEL_SESSION) == "lab"] == []


@pytest.mark.gateway
def test_session_interrupt_and_unload(ip: InteractiveShell) -> None:
    ip.run_cell_magic("docker_python", "--session u", "open('x', 'w').write('1')")
    timer = threading.Timer(1.0, _thread.interrupt_main)
    timer.start()
    with pytest.raises(CellInterrupted, match="its session 'u' stays"):
        ip.run_cell_magic("docker_python", "--session u", "y = 5\nimport time; time.sleep(60)")
    ip.run_cell_magic("docker_python", "--session u --out o", "print(open('x').read(), y)")
    assert ip.user_ns["o"] == "1 5\n"
    # The fixture's unload stops the session; the leftover guard checks it.
