"""Pure logic of the Swarm backend: the service spec, the wrapper, the log, the threads.

The wrapper script runs for real with the host's ``sh`` (in a network
namespace of its own where one can be made); everything that talks to a
Swarm is in tests/integration/test_swarm.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import pytest

from dockermagic.batch.report import BatchEvent, ScriptResult
from dockermagic.batch.script import Task
from dockermagic.batch.stop import StopPolicy
from dockermagic.batch.threads import run_threaded
from dockermagic.cli import build_parser, cmd_run
from dockermagic.errors import InvalidArgumentError
from dockermagic.policy import SandboxPolicy
from dockermagic.result import RunResult
from dockermagic.supervisor import Exited, Output, StopReason, StreamEnded
from dockermagic.swarm import (
    MARKER,
    NOT_ISOLATED_EXIT,
    WORKDIR,
    WRAPPER,
    LogLine,
    SwarmTask,
    TaskProgram,
    TaskSpec,
    TaskState,
    service_spec,
)
from tests.support import make_result


def _spec(**changes: Any) -> TaskSpec:
    fields: dict[str, Any] = {
        "image": "img:1",
        "command": ["python3", "/code/main.py"],
        "environment": {"PYTHONUNBUFFERED": "1", "HOME": WORKDIR},
        "labels": {"dockermagic": "1", "dockermagic.batch": "b1"},
        "policy": SandboxPolicy.default(),
        "files": {"main.py": b"print(1)\n", "data/in.txt": b"x"},
        "deadline": 7.0,
        "name": "dockermagic-abc",
    }
    fields.update(changes)
    return TaskSpec(**fields)


def test_service_spec_is_as_locked_down_as_a_service_can_be() -> None:
    policy = SandboxPolicy.default().replace(memory="128m", cpus=0.5, pids_limit=64, nofile=256)
    spec = _spec(policy=policy)
    made = service_spec(spec, ["c0", "c1"])
    assert made["name"] == "dockermagic-abc"
    assert made["labels"] == dict(spec.labels)
    # Not a replicated-job (Moby #42789): one replica that is never restarted.
    assert made["mode"] == {"Replicated": {"Replicas": 1}}
    template = made["task_template"]
    assert template["RestartPolicy"]["Condition"] == "none"
    assert "Networks" not in template
    assert template["Resources"]["Limits"] == {
        "NanoCPUs": 500_000_000,
        "MemoryBytes": 128 * 2**20,
        "Pids": 64,
    }
    log = template["LogDriver"]
    assert log["Name"] == "json-file"
    assert int(log["Options"]["max-size"]) >= policy.output_limit
    assert log["Options"]["max-file"] == "1"
    container = template["ContainerSpec"]
    assert container["User"] == "65534:65534"
    assert container["ReadOnly"] is True
    assert container["CapabilityDrop"] == ["ALL"]
    assert container["Ulimits"] == [{"Name": "nofile", "Soft": 256, "Hard": 256}]
    assert container["Dir"] == WORKDIR == "/tmp"
    assert container["StopSignal"] == "SIGKILL"
    assert container["StopGracePeriod"] == 0
    assert sorted(container["Env"]) == ["HOME=/tmp", "PYTHONUNBUFFERED=1"]
    assert container["Labels"] == dict(spec.labels)
    mounts = {m["Target"]: m for m in container["Mounts"]}
    assert set(mounts) == {"/tmp", "/dev/shm"}
    assert mounts["/tmp"]["TmpfsOptions"] == {"SizeBytes": policy.tmp_size, "Mode": 0o1777}
    # Files in sorted order, root-owned and read-only, under /code.
    assert [
        (c["ConfigID"], c["File"]["Name"], c["File"]["Mode"]) for c in container["Configs"]
    ] == [
        ("c0", "/code/data/in.txt", 0o444),
        ("c1", "/code/main.py", 0o444),
    ]
    assert {c["File"]["UID"] for c in container["Configs"]} == {"0"}
    # The deadline keeper is PID 1; the wrapper runs the program.
    argv = container["Command"]
    assert argv[:5] == ["timeout", "--preserve-status", "-s", "KILL", "7.000s"]
    assert argv[5:9] == ["sh", "-c", WRAPPER, "dockermagic-swarm"]
    assert argv[9:] == ["python3", "/code/main.py"]


def test_log_lines_lose_their_time_stamp_and_keep_their_bytes() -> None:
    line = LogLine.parse("stdout", b"2026-11-26T09:54:30.178077414Z hello \xff\n")
    assert line == LogLine("stdout", "2026-11-26T09:54:30.178077414Z", b"hello \xff\n")
    # A part of a long line has no newline; text without a stamp is kept whole.
    assert LogLine.parse("stderr", b"2026-11-26T09:54:30Z abc").data == b"abc"
    assert LogLine.parse("stderr", b"no stamp here") == LogLine("stderr", "", b"no stamp here")


# -- the wrapper, with the host's own sh ---------------------------------------------------


def _wrapper(
    *program: str, isolated: bool, no_new_privs: bool = True
) -> subprocess.CompletedProcess[str]:
    argv = ["sh", "-c", WRAPPER, "dockermagic-swarm", *program]
    if no_new_privs:
        argv = ["setpriv", "--no-new-privs", *argv]
    if isolated:
        # A network namespace with lo only (its own /sys shows it), as a task
        # on a node set up with --bridge=none has.
        boot = 'mount -t sysfs sysfs /sys && exec "$@"'
        argv = ["unshare", "--net", "--mount", "sh", "-c", boot, "boot", *argv]
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)


def _marks(stderr: str) -> list[str]:
    return [line[len(MARKER) :].strip() for line in stderr.splitlines() if line.startswith(MARKER)]


def test_the_wrapper_refuses_a_node_with_a_network() -> None:
    if len(os.listdir("/sys/class/net")) < 2:
        pytest.skip("this machine has no network interface besides lo")
    done = _wrapper("sh", "-c", "echo RAN", isolated=False, no_new_privs=False)
    assert done.returncode == NOT_ISOLATED_EXIT
    assert "RAN" not in done.stdout
    assert _marks(done.stderr)[0].startswith("network ")


needs_namespaces = pytest.mark.skipif(
    os.geteuid() != 0 or not (shutil.which("unshare") and shutil.which("setpriv")),
    reason="needs root, unshare and setpriv (util-linux) for a network namespace",
)


@needs_namespaces
def test_the_wrapper_refuses_a_node_without_no_new_privileges() -> None:
    done = _wrapper("echo", "RAN", isolated=True, no_new_privs=False)
    assert done.returncode == NOT_ISOLATED_EXIT
    assert "RAN" not in done.stdout
    assert _marks(done.stderr) == ["privileges NoNewPrivs=0"]


@needs_namespaces
def test_the_wrapper_runs_the_program_and_says_what_it_used() -> None:
    done = _wrapper("sh", "-c", "echo out; echo err >&2; sleep 0.2; exit 3", isolated=True)
    assert done.returncode == 3
    assert done.stdout == "out\n"
    lines = done.stderr.splitlines()
    assert lines[0] == "err"
    (usage,) = _marks(done.stderr)
    fields = usage.split()
    assert fields[0] == "usage"
    assert 0.1 <= float(fields[2]) - float(fields[1]) < 5


@needs_namespaces
def test_the_wrapper_adds_no_words_of_its_own_when_the_program_is_killed() -> None:
    done = _wrapper("sh", "-c", "kill -9 $$", isolated=True)
    assert done.returncode == 137
    assert [line for line in done.stderr.splitlines() if not line.startswith(MARKER)] == []


# -- the log, as the supervisor sees it ---------------------------------------------------


class _FakeStream:
    def __init__(self, lines: Sequence[LogLine]) -> None:
        self.lines = list(lines)
        self.closed = False

    def get(self, timeout: float) -> list[LogLine]:
        lines, self.lines = self.lines, []
        return lines

    def close(self) -> None:
        self.closed = True


class _FakeTask:
    """What TaskProgram asks of a SwarmTask: follow, state, logs, remove."""

    name = "dockermagic-fake"

    def __init__(self, live: Sequence[LogLine], whole: Sequence[LogLine], states: list[TaskState]):
        self.stream = _FakeStream(live)
        self.whole = list(whole)
        self.states = states
        self.last: TaskState | None = None
        self.removed = 0

    def follow(self) -> _FakeStream:
        return self.stream

    def state(self) -> TaskState:
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        self.last = state
        return state

    def logs(self) -> list[LogLine]:
        return list(self.whole)

    def remove(self) -> None:
        self.removed += 1


def _line(stream: str, stamp: int, text: str) -> LogLine:
    return LogLine(stream, f"2026-11-26T10:00:00.{stamp:09d}Z", text.encode())


def _drain(program: TaskProgram) -> list[object]:
    events: list[object] = []
    for _ in range(100):
        try:
            got = program.receive(0.0)
        except StreamEnded:
            events.append("ended")
            break
        events += got
        if any(isinstance(e, Exited) for e in got):
            break
        time.sleep(0.06)  # past the first poll interval
    return events


def test_the_whole_log_completes_the_live_one_each_line_once() -> None:
    a, b, b_again, c = (
        _line("stdout", 1, "a\n"),
        _line("stderr", 2, "b\n"),
        _line("stderr", 3, "b\n"),  # the same text later is another line
        _line("stdout", 4, "c"),
    )
    usage = _line("stderr", 5, f"{MARKER} usage 10.00 10.25 50000000 4096\n")
    oom = _line("stderr", 6, f"{MARKER} oom 1\n")
    running = TaskState("running", node="n1", has_container=True)
    done = TaskState("failed", node="n1", exit_code=137, has_container=True)
    task = _FakeTask([a, b], [a, b, b_again, c, oom, usage], [running, done])
    program = TaskProgram(cast(SwarmTask, task))
    events = _drain(program)
    assert events == [
        Output("stdout", b"a\n"),
        Output("stderr", b"b\n"),
        Output("stderr", b"b\n"),
        Output("stdout", b"c"),
        Exited(137),
    ]
    assert task.stream.closed
    assert program.oom_killed
    assert program.usage == (0.25, 0.05, 4096)
    assert program.not_isolated == ""


def test_a_node_that_is_not_set_up_is_named_and_nothing_ran() -> None:
    mark = _line("stderr", 1, f"{MARKER} network eth0\n")
    done = TaskState("failed", node="n2", exit_code=NOT_ISOLATED_EXIT, has_container=True)
    task = _FakeTask([], [mark], [done])
    program = TaskProgram(cast(SwarmTask, task))
    assert _drain(program) == [Exited(NOT_ISOLATED_EXIT)]
    assert program.not_isolated == "network eth0"
    assert program.usage == (None, None, None)


def test_a_task_that_ends_without_an_exit_status_is_a_problem() -> None:
    gone = TaskState("orphaned", node="n3", error="node down")
    program = TaskProgram(cast(SwarmTask, _FakeTask([_line("stdout", 1, "x\n")], [], [gone])))
    assert _drain(program) == [Output("stdout", b"x\n"), "ended"]
    assert "orphaned: node down" in program.problem


def test_at_the_deadline_the_output_up_to_the_kill_is_kept() -> None:
    a, b = _line("stdout", 1, "a\n"), _line("stdout", 2, "b\n")
    running = TaskState("running", node="n1", has_container=True)
    task = _FakeTask([a], [a, b], [running])
    program = TaskProgram(cast(SwarmTask, task))
    assert program.receive(0.0) == [Output("stdout", b"a\n")]
    assert program.stop(StopReason.TIMEOUT) is True
    assert task.removed == 1
    assert program.receive(0.0) == [Output("stdout", b"b\n")]
    with pytest.raises(StreamEnded):
        program.receive(0.0)
    assert program.exit_code == 137


def test_a_cancel_or_a_flood_removes_the_service_and_stops_reading() -> None:
    running = TaskState("running", node="n1", has_container=True)
    task = _FakeTask([], [_line("stdout", 1, "late\n")], [running])
    program = TaskProgram(cast(SwarmTask, task))
    assert program.stop(StopReason.OUTPUT_LIMIT) is False
    assert task.removed == 1
    assert task.stream.closed
    program.force_stop()  # idempotent
    with pytest.raises(StreamEnded):
        program.receive(0.0)


# -- scripts in threads ------------------------------------------------------------------


class _FakeRunner:
    def __init__(self, backend: _FakeBackend) -> None:
        self.backend = backend

    def run_file(self, path: str | os.PathLike[str], **kwargs: Any) -> RunResult:
        backend = self.backend
        with backend.lock:
            backend.running += 1
            backend.most = max(backend.most, backend.running)
        try:
            cancel: threading.Event = kwargs["cancel"]
            name = Path(path).name
            kwargs["on_output"]("stdout", f"{name}\n")
            if cancel.wait(backend.seconds.get(name, 0.05)):
                return make_result(cancelled=True, exit_code=137)
            return make_result(exit_code=1 if name.startswith("fail") else 0, node="n1")
        finally:
            with backend.lock:
                backend.running -= 1


class _FakeBackend:
    def __init__(self, seconds: dict[str, float] | None = None) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0
        self.seconds = seconds or {}
        self.closed = False

    def runner_for(self, task: Task) -> _FakeRunner:
        return _FakeRunner(self)

    def close(self) -> None:
        self.closed = True


def _tasks(*names: str) -> list[Task]:
    return [
        Task(i, len(names), f"/s/{name}", name, "python", "img", "", (), None, "r1", "")
        for i, name in enumerate(names)
    ]


def test_threads_run_at_most_the_limit_at_once_and_report_in_order() -> None:
    backend = _FakeBackend()
    events: list[BatchEvent] = []
    caller = threading.current_thread()

    def emit(event: BatchEvent) -> None:
        assert threading.current_thread() is caller  # on_event's promise
        events.append(event)

    names = [f"s{i:02d}.py" for i in range(12)]
    stop = StopPolicy(threading.Event(), fail_fast=False)
    results = run_threaded(_tasks(*names), 3, backend, emit, stop)
    assert [r.name for r in results] == names
    assert {r.status for r in results} == {"ok"}
    assert {r.node for r in results} == {"n1"}
    assert backend.most == 3
    assert sorted(e.script for e in events if e.kind == "finish") == names
    assert {e.text for e in events if e.kind == "output"} == {f"{n}\n" for n in names}


def test_threads_cancel_running_scripts_and_start_no_more() -> None:
    backend = _FakeBackend({f"s{i}.py": 30.0 for i in range(6)})
    cancel = threading.Event()
    stop = StopPolicy(cancel, fail_fast=False)
    threading.Timer(0.3, cancel.set).start()
    started = time.monotonic()
    results = run_threaded(
        _tasks(*(f"s{i}.py" for i in range(6))), 2, backend, lambda e: None, stop
    )
    assert time.monotonic() - started < 5
    statuses = [r.status for r in results]
    assert statuses == ["cancelled"] * 6
    assert sum(r.message.startswith("not started") for r in results) == 4
    assert stop.cancelled


def test_threads_stop_after_the_first_failure_with_fail_fast() -> None:
    backend = _FakeBackend({"ok1.py": 0.05, "slow.py": 30.0})
    stop = StopPolicy(threading.Event(), fail_fast=True)
    results: list[ScriptResult] = run_threaded(
        _tasks("fail.py", "slow.py", "ok1.py", "ok2.py"), 2, backend, lambda e: None, stop
    )
    by_name = {r.name: r for r in results}
    assert by_name["fail.py"].status == "failed"
    assert by_name["slow.py"].status == "cancelled"
    assert by_name["ok2.py"].status == "cancelled"
    assert "fail.py failed (fail-fast)" in stop.reason


# -- the command line ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "argument"),
    [
        (["--swarm-limit", "2"], "--swarm-limit"),
        (["--swarm", "--parallel", "2"], "--parallel"),
        (["--swarm", "--pool", "1"], "--pool"),
        (["--swarm", "--swarm-limit", "0"], "--swarm-limit"),
    ],
)
def test_cli_swarm_options_are_checked_before_anything_runs(
    tmp_path: Path, argv: list[str], argument: str
) -> None:
    (tmp_path / "a.py").write_text("print(1)\n")
    args = build_parser().parse_args(["run", str(tmp_path), *argv])
    with pytest.raises(InvalidArgumentError) as caught:
        cmd_run(args)
    assert caught.value.argument == argument
