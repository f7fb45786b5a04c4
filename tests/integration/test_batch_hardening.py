"""Issue 10 in the batch runner, the CLI and the logs, against the real engine.

* item 1: ``dockermagic run`` stops in order on SIGTERM and SIGHUP, and its pool
  never outlives it (not even a SIGKILL);
* item 2: special files and links out of the folder are per-script errors, and
  discovery never blocks;
* item 6: no forged or torn log record, no escape sequence on the terminal,
  distinct log files for names that look alike;
* item 10: odd script names (newlines, not UTF-8, ``..\\evil`` data files).

Each test fails on the 0.1 code.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import docker
import pytest

from dockermagic import run_scripts
from dockermagic.cleanup import list_containers
from dockermagic.labels import POOL
from dockermagic.logs import safe_log_name

TAG = os.environ["DOCKERMAGIC_TAG"]
REPO = Path(__file__).resolve().parents[2]
SLEEPER = "import time\nprint('up', flush=True)\ntime.sleep(60)\n"
#: A record of a per-script log file (logs.OUTPUT_FORMAT).
OUTPUT_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} run=\w+ (stdout|stderr) \| ")
#: A record of the application log (logs.APP_FORMAT).
APP_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} \d+ [A-Z]+ [\w.]+: ")


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
    # Scripts' containers only: the CLI's idle pool containers run too. The
    # first script of each worker never finds its pool filled, so these
    # tests' running scripts carry no pool label.
    return sum(
        c.status == "running" and POOL not in c.labels for c in list_containers(client, tag=TAG)
    )


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


# -- item 2: files that must not be copied in --------------------------------------------


@pytest.mark.parametrize("mode", ["sequential", "parallel"])
def test_special_files_and_links_out_of_the_folder_are_per_script_errors(
    tmp_path: Path, mode: str
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET\n")
    folder = make_folder(tmp_path / "scripts", {"a_ok.py": "print('fine')\n"})
    os.mkfifo(folder / "b_fifo.py")
    (folder / "c_secret.py").symlink_to(secret)
    (folder / "d_zero.py").symlink_to("/dev/zero")
    (folder / "e_alias.py").symlink_to("a_ok.py")  # inside the folder: runs
    started = time.monotonic()
    report = run_scripts(folder, mode=mode, workers=2, log_dir=tmp_path / "logs")  # type: ignore[arg-type]
    assert time.monotonic() - started < 60  # never blocks on the FIFO
    results = report.by_name()
    assert {n: r.status for n, r in results.items()} == {
        "a_ok.py": "ok",
        "b_fifo.py": "error",
        "c_secret.py": "error",
        "d_zero.py": "error",
        "e_alias.py": "ok",
    }
    assert "b_fifo.py" in results["b_fifo.py"].message
    assert "FIFO" in results["b_fifo.py"].message
    assert "outside" in results["c_secret.py"].message
    assert "outside" in results["d_zero.py"].message
    for result in results.values():
        assert "\n" not in result.message
        assert "TOP SECRET" not in result.output_tail
    logs = "".join(p.read_text() for p in (tmp_path / "logs").iterdir())
    assert "TOP SECRET" not in logs


@pytest.mark.parametrize("problem", ["link-in-data", "fifo-in-data", "data-is-a-link"])
def test_a_data_folder_that_cannot_be_copied_is_an_error_naming_the_file(
    tmp_path: Path, problem: str
) -> None:
    outside = tmp_path / "home"
    outside.mkdir()
    (outside / "id_rsa").write_text("PRIVATE KEY\n")
    folder = make_folder(tmp_path / "scripts", {"a.py": "print(1)\n", "b.js": "console.log(2)\n"})
    if problem == "data-is-a-link":
        (folder / "data").symlink_to(outside)
        culprit = "data"
    else:
        (folder / "data").mkdir()
        (folder / "data" / "input.txt").write_text("fine\n")
        if problem == "link-in-data":
            (folder / "data" / "key.txt").symlink_to(outside / "id_rsa")
            culprit = "key.txt"
        else:
            os.mkfifo(folder / "data" / "pipe.txt")
            culprit = "pipe.txt"
    report = run_scripts(folder, mode="parallel", workers=2, log_dir=tmp_path / "logs")
    for result in report.results:
        assert result.status == "error", result
        assert culprit in result.message
        assert "\n" not in result.message
    logs = "".join(p.read_text() for p in (tmp_path / "logs").iterdir())
    assert "PRIVATE KEY" not in logs


def test_a_data_file_named_like_a_windows_path_is_copied_as_it_is(tmp_path: Path) -> None:
    folder = make_folder(
        tmp_path / "scripts",
        {
            "read.py": (
                "from pathlib import Path\n"
                "print((Path(__file__).parent / 'data' / '..\\\\evil').read_text().strip())\n"
            ),
            "other.js": "console.log('fine');\n",
        },
    )
    (folder / "data").mkdir()
    (folder / "data" / "..\\evil").write_text("just a name\n")
    report = run_scripts(folder, log_dir=tmp_path / "logs")
    results = report.by_name()
    assert results["read.py"].status == "ok", results["read.py"].message
    assert results["read.py"].output_tail == "just a name"
    assert results["other.js"].status == "ok"


# -- item 6: one record per line, escaped; distinct files --------------------------------

#: Output that tried to forge records or drive a terminal, one line each.
FORGERIES = [
    "carriage\r2026-01-01 00:00:00,000 run=forged stdout | fake record",
    "vertical\x0btab",
    "form\x0cfeed",
    "separators\x1c\x1d\x1e",
    "next\x85line",
    "line\u2028separator",
    "paragraph\u2029separator",
    "\x1b[32mALL TESTS PASSED\x1b[0m",
]


def test_output_that_forges_lines_is_one_escaped_record_per_line(tmp_path: Path) -> None:
    program = f"import sys\nfor line in {FORGERIES!r}:\n    sys.stdout.write(line + '\\n')\n"
    folder = make_folder(tmp_path / "scripts", {"forger.py": program})
    report = run_scripts(folder, log_dir=tmp_path / "logs")
    assert report.results[0].status == "ok"
    log = Path(report.results[0].log_file)
    with open(log, encoding="utf-8") as stream:
        by_iteration = list(stream)
    by_splitlines = log.read_text(encoding="utf-8").splitlines()
    assert len(by_iteration) == len(by_splitlines) == len(FORGERIES)
    for record in by_splitlines:
        assert OUTPUT_RECORD.match(record), record
        assert not any(ch in record for ch in "\r\x0b\x0c\x1b\x85\u2028")
    assert r"carriage\r2026-01-01 00:00:00,000 run=forged" in by_splitlines[0]
    assert by_splitlines[5].endswith(r"line\u2028separator")
    assert by_splitlines[7].endswith(r"\x1b[32mALL TESTS PASSED\x1b[0m")


def test_names_that_forge_or_collide_get_one_line_and_their_own_file(tmp_path: Path) -> None:
    long_a = "a" * 180 + "_first.py"
    long_b = "a" * 180 + "_second.py"
    scripts = {
        "h a.py": "print('with a space')\n",
        "h_a.py": "print('with an underscore')\n",
        "forged\n2026-01-01 00:00:00,000 1 INFO dockermagic.runs: x.py": "print('odd')\n",
        long_a: "print('first long')\n",
        long_b: "print('second long')\n",
        "trailing.py\n": "print('never: not a script')\n",
    }
    folder = make_folder(tmp_path / "scripts", scripts)
    bad = os.fsencode(folder) + b"/caf\xe9.py"  # not UTF-8
    with open(bad, "wb") as stream:
        stream.write(b"print('latin-1 name')\n")
    report = run_scripts(folder, log_dir=tmp_path / "logs")
    assert report.ignored == ("trailing.py\n",)
    results = report.by_name()
    files = [r.log_file for r in report.results]
    assert len(set(files)) == len(files)  # no two scripts share a log file
    for name in ("h a.py", "h_a.py", long_a, long_b):
        assert results[name].status == "ok"
        assert results[name].output_tail in Path(results[name].log_file).read_text()
    assert Path(results["h_a.py"].log_file).name == "h_a.py.log"
    assert Path(results["h a.py"].log_file).name == f"{safe_log_name('h a.py')}.log"
    app_log = tmp_path / "logs" / "dockermagic.log"
    with open(app_log, encoding="utf-8") as stream:
        records = list(stream)
    assert records == app_log.read_text(encoding="utf-8").splitlines(keepends=True)
    for record in records:
        assert APP_RECORD.match(record), record
    text = app_log.read_text(encoding="utf-8")
    # The name that is not UTF-8 keeps its record (escaped), as do the others.
    assert f"caf\\udce9.py run={report.run_id}" in text
    assert f"h a.py run={report.run_id}" in text
    assert r"forged\n2026-01-01 00:00:00,000 1 INFO dockermagic.runs: x.py" in text


def test_the_terminal_sees_no_escape_sequence_from_a_script(tmp_path: Path) -> None:
    folder = make_folder(
        tmp_path / "scripts",
        {
            "liar.py": (
                "print('\\x1b]0;title\\x07 bell')\n"
                "print('\\x1b[32mALL TESTS PASSED\\x1b[0m')\n"
                "raise SystemExit(1)\n"
            ),
            "\x1b[32mgreen\x1b[0m.py": "print('never runs: its name is refused')\n",
        },
    )
    for mode in ("--sequential", "--parallel"):
        proc = cli("run", str(folder), mode, "--logs", str(tmp_path / "logs"), cwd=tmp_path)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 1, err
        assert "\x1b" not in out + err
        assert "\x07" not in out + err
        assert r"\x1b[32mALL TESTS PASSED\x1b[0m" in out  # the summary's detail
        assert r"\x1b[32mgreen\x1b[0m.py" in out  # the script's name
