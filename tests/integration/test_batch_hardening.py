"""Issue 10 in the batch runner, the CLI and the logs, against the real engine.

* item 1: ``dockermagic run`` stops in order on SIGTERM and SIGHUP, and its pool
  never outlives it (not even a SIGKILL).

Each test fails on the 0.1 code.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import docker
import pytest

from dockermagic.cleanup import list_containers

TAG = os.environ["DOCKERMAGIC_TAG"]
REPO = Path(__file__).resolve().parents[2]
SLEEPER = "import time\nprint('up', flush=True)\ntime.sleep(60)\n"


def make_folder(root: Path, scripts: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, code in scripts.items():
        (root / name).write_text(code)
    return root


def wait_for(condition: Callable[[], bool], seconds: float) -> float:
    """Poll until ``condition()``; the seconds it took (fails after ``seconds``)."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < seconds, "condition not reached in time"
        time.sleep(0.1)
    return time.monotonic() - started


# -- processes, from /proc ---------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stream:
            text = stream.read()
    except OSError:
        return None
    # Fields after the command name, which may hold spaces and parentheses.
    return text.rsplit(")", 1)[1].split()


def descendants(pid: int) -> set[tuple[int, str]]:
    """Every process below ``pid``, as (pid, start time) so a reused pid is not mistaken."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(int(entry))) is not None:
            parents.setdefault(int(fields[1]), []).append(int(entry))
    found: set[tuple[int, str]] = set()
    todo = list(parents.get(pid, []))
    while todo:
        child = todo.pop()
        fields = _stat(child)
        if fields is not None:
            found.add((child, fields[19]))
            todo += parents.get(child, [])
    return found


def alive(processes: set[tuple[int, str]]) -> set[tuple[int, str]]:
    """Those still running (a zombie waiting for its reaper counts as gone)."""
    left = set()
    for pid, started in processes:
        fields = _stat(pid)
        if fields is not None and fields[19] == started and fields[0] != "Z":
            left.add((pid, started))
    return left


def cli(*args: str, cwd: Path) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        # This checkout's package, whatever the venv's editable install points at.
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        # A wide table, so that no line of it is folded.
        "COLUMNS": "250",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "dockermagic", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def running_containers(client: docker.DockerClient) -> int:
    return sum(c.status == "running" for c in list_containers(client, tag=TAG))


# -- item 1: stopping the CLI ------------------------------------------------------------


@pytest.mark.parametrize(
    ("signum", "whole_group"),
    [(signal.SIGTERM, False), (signal.SIGHUP, True)],
    ids=["SIGTERM-to-the-cli", "SIGHUP-to-the-group"],
)
def test_a_termination_signal_stops_a_parallel_run_in_order(
    tmp_path: Path, docker_client: docker.DockerClient, signum: int, whole_group: bool
) -> None:
    folder = make_folder(tmp_path / "scripts", {f"s{i}.py": SLEEPER for i in range(3)})
    report_file = tmp_path / "report.json"
    proc = cli("run", str(folder), "--parallel", "2", "--json", str(report_file), cwd=tmp_path)
    wait_for(lambda: running_containers(docker_client) == 2 or proc.poll() is not None, 60)
    assert proc.poll() is None, proc.communicate()
    family = descendants(proc.pid)
    assert len(family) >= 3  # the fork server and two workers (and a resource tracker)
    if whole_group:  # a terminal that closes hangs up on the whole job
        os.killpg(proc.pid, signum)
    else:  # `kill`, systemd, a CI runner cancelling a job
        os.kill(proc.pid, signum)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signum, err
    assert "Traceback" not in err
    report = json.loads(report_file.read_text())
    assert report["cancelled"] is True
    assert [r["status"] for r in report["results"]] == ["cancelled"] * 3
    name = signal.Signals(signum).name
    assert report["results"][2]["message"] == f"not started: interrupted ({name})"
    assert "3 cancelled" in out
    # Containers killed and removed before the CLI exited; no process left.
    assert list_containers(docker_client, tag=TAG) == []
    wait_for(lambda: not alive(family), 10)
    # Every record reached the log files before the exit.
    app_log = (tmp_path / "logs" / "dockermagic.log").read_text()
    assert app_log.count(f"run={report['run_id']} python") == 2  # the two that ran
    assert "finished in" in app_log


def test_a_killed_cli_leaves_no_worker_and_no_container(
    tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    timeout = 20
    folder = make_folder(tmp_path / "scripts", {f"s{i}.py": SLEEPER for i in range(3)})
    proc = cli("run", str(folder), "--parallel", "2", "--timeout", str(timeout), cwd=tmp_path)
    wait_for(lambda: running_containers(docker_client) == 2 or proc.poll() is not None, 60)
    assert proc.poll() is None, proc.communicate()
    family = descendants(proc.pid)
    assert len(family) >= 3
    os.kill(proc.pid, signal.SIGKILL)
    # Not reaped yet, as by a parent that never waits: a zombie is gone too.
    # The workers notice within a second, kill their containers and exit; the
    # fork server and the resource tracker follow once no worker holds them.
    wait_for(lambda: not alive(family), 10)
    wait_for(lambda: not list_containers(docker_client, tag=TAG), timeout + 5)
    proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL
