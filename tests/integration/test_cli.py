"""``dockermagic run`` and ``doctor`` against the real engine, in-process and as a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import docker
import pytest

from dockermagic.cleanup import list_containers
from dockermagic.cli import main
from dockermagic.engine import engine_profile

TAG = os.environ["DOCKERMAGIC_TAG"]


def make_folder(root: Path, scripts: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, code in scripts.items():
        (root / name).write_text(code)
    return root


def test_run_all_ok_exits_zero_with_json_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = make_folder(
        tmp_path / "scripts", {"a.py": "print('one')\n", "b.mjs": "console.log('two');\n"}
    )
    report_file = tmp_path / "report.json"
    logs = str(tmp_path / "logs")
    json_file = str(report_file)
    status = main(["run", str(folder), "--parallel", "2", "--logs", logs, "--json", json_file])
    out = capsys.readouterr().out
    assert status == 0
    assert "2 scripts: 2 ok" in out
    report = json.loads(report_file.read_text())
    assert report["ok"] is True
    assert report["mode"] == "parallel"
    assert report["workers"] == 2
    statuses = [(r["name"], r["status"]) for r in report["results"]]
    assert statuses == [("a.py", "ok"), ("b.mjs", "ok")]
    assert "one" in (tmp_path / "logs" / "a.py.log").read_text()


def test_run_with_a_failure_exits_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = make_folder(
        tmp_path / "scripts",
        {"a.py": "print('fine')\n", "b.py": "def broken(:\n", "c.js": "throw new Error('boom');\n"},
    )
    status = main(["run", str(folder), "--logs", str(tmp_path / "logs"), "--json", "-"])
    captured = capsys.readouterr()
    assert status == 1
    assert "SyntaxError" in captured.err
    assert "boom" in captured.err
    report = json.loads(captured.out)  # stdout holds the JSON report only
    assert report["totals"]["ok"] == 1
    assert report["totals"]["failed"] == 2


def test_run_timeout_and_fail_fast_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = make_folder(
        tmp_path / "scripts",
        {"a.py": "import time\ntime.sleep(30)\n", "b.py": "print('never runs')\n"},
    )
    report_file = tmp_path / "r.json"
    options = ["--sequential", "--timeout", "1.5", "--fail-fast", "--logs", str(tmp_path / "l")]
    status = main(["run", str(folder), *options, "--json", str(report_file)])
    capsys.readouterr()
    assert status == 1
    results = json.loads(report_file.read_text())["results"]
    assert [r["status"] for r in results] == ["timed_out", "cancelled"]


@pytest.mark.parametrize(
    ("setup", "argv", "message"),
    [
        (None, ["missing"], "no such folder"),
        ("empty", ["empty"], "holds no scripts"),
        ("unknown", ["unknown"], "holds no runnable script"),
        ("ok", ["ok", "--parallel", "0"], "worker count 0"),
        ("ok", ["ok", "--parallel", "-2"], "worker count -2"),
        ("ok", ["ok", "--timeout", "0"], "timeout"),
        ("ok", ["ok", "--logs", "ok/a.py/logs"], "Cannot write logs"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    setup: str | None,
    argv: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    if setup == "empty":
        (tmp_path / "empty").mkdir()
    elif setup == "unknown":
        make_folder(tmp_path / "unknown", {"notes.txt": "x", "run.sh": "echo"})
    elif setup == "ok":
        make_folder(tmp_path / "ok", {"a.py": "print(1)\n"})
    status = main(["run", *argv])
    captured = capsys.readouterr()
    assert status == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("dockermagic: error:")
    assert message in lines[0]
    assert not (tmp_path / "logs").exists() or setup == "ok"


def test_doctor_checks_the_log_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], docker_client: docker.DockerClient
) -> None:
    assert main(["doctor", "--logs", str(tmp_path / "new-logs")]) == 0
    assert (tmp_path / "new-logs").is_dir()
    out = capsys.readouterr().out
    assert "is writable" in out
    # It names the kind of engine (Docker or Podman), as the engine says.
    (engine_row,) = [line for line in out.splitlines() if line.startswith("engine")]
    assert engine_row.split()[1] == engine_profile(docker_client).name
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["doctor", "--logs", str(blocker / "logs")]) == 1
    assert "Cannot write logs" in capsys.readouterr().out


def _cli(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "dockermagic", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Its own process group, so the test can play the terminal's Ctrl-C,
        # which reaches every process of the group (parent and pool workers).
        start_new_session=True,
    )


def test_subprocess_run_with_json_on_stdout(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "scripts", {"a.py": "print('hi')\n", "b.txt": "ignored"})
    proc = _cli("run", str(folder), "--parallel", "--json", "-", cwd=tmp_path)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    report = json.loads(out)
    assert report["results"][0]["status"] == "ok"
    assert report["ignored"] == ["b.txt"]
    assert "ignored (no runner): b.txt" in err
    # The default log directory is ./logs.
    assert "hi" in (tmp_path / "logs" / "a.py.log").read_text()


@pytest.mark.parametrize("mode", ["--sequential", "--parallel"])
def test_ctrl_c_cancels_and_leaves_no_container(
    tmp_path: Path, mode: str, docker_client: docker.DockerClient
) -> None:
    folder = make_folder(
        tmp_path / "scripts",
        {f"s{i}.py": "import time\nprint('up', flush=True)\ntime.sleep(60)\n" for i in range(3)},
    )
    extra = ["2"] if mode == "--parallel" else []
    proc = _cli("run", str(folder), mode, *extra, cwd=tmp_path)
    deadline = time.monotonic() + 60
    while not any(c.status == "running" for c in list_containers(docker_client, tag=TAG)):
        assert time.monotonic() < deadline, "no container started"
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)
    started = time.monotonic()
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - started < 10
    assert proc.returncode == 130, err
    assert "cancelled" in out
    assert "Traceback" not in err
    assert list_containers(docker_client, tag=TAG) == []
