"""Issue 10: limits that hold without the parent, no host file through a link, a hostile channel.

Each test reproduces an attack or failure found by a hostile review of the
0.1 code and fails there; all run against the real engine. The frozen-engine
tests start an engine of their own (tests/engines.py) and freeze that one,
never the shared engine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from dockermagic import (
    EngineUnavailableError,
    InvalidArgumentError,
    JavaScriptDockerRunner,
    PythonDockerRunner,
    SandboxPolicy,
    Session,
    SessionRestartedWarning,
)
from dockermagic.cleanup import cleanup, list_containers
from dockermagic.transfer import UnsafeFileError
from tests.conftest import TAG
from tests.engines import extra_engine

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]


def _containers(client: docker.DockerClient) -> list[str]:
    return [c.name for c in list_containers(client, tag=TAG)]


def _wait_for(predicate: Any, seconds: float, step: float = 0.1) -> float:
    """Seconds until ``predicate()`` held; fails after ``seconds``."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > seconds:
            raise AssertionError(f"not within {seconds} s")
        time.sleep(step)
    return time.monotonic() - started


def _owner(code: str) -> subprocess.Popen[str]:
    """A separate Python process that owns containers (the test kills it)."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )


def _kill(owner: subprocess.Popen[str]) -> None:
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    if owner.stdout is not None:
        owner.stdout.close()


# -- 1. limits hold without the owning process ------------------------------------------


@pytest.mark.parametrize("program", ["sleep", "flood"])
def test_a_run_dies_at_its_deadline_when_its_owner_is_killed(
    docker_client: docker.DockerClient, program: str
) -> None:
    code = {
        "sleep": "import time\\nprint('started', flush=True)\\ntime.sleep(600)",
        "flood": "print('started', flush=True)\\nwhile True: print('x' * 1000)",
    }[program]
    owner = _owner(
        f"""
        from dockermagic import PythonDockerRunner
        PythonDockerRunner().run("{code}", timeout=4, on_output=lambda s, t: print(t, flush=True))
        """
    )
    assert owner.stdout is not None
    assert owner.stdout.readline().strip() == "started"
    (name,) = _containers(docker_client)
    details = docker_client.api.inspect_container(name)
    # Nothing of the output reaches the engine's disk, however long it runs.
    assert details["HostConfig"]["LogConfig"]["Type"] == "none"
    assert details["LogPath"] == ""
    killed = time.monotonic()
    _kill(owner)
    _wait_for(lambda: not _containers(docker_client), 4 + 5)
    assert time.monotonic() - killed < 4 + 5


def test_a_session_ends_with_its_owner(docker_client: docker.DockerClient) -> None:
    owner = _owner(
        """
        from dockermagic import PythonDockerRunner, Session
        session = Session("orphan", PythonDockerRunner())
        session.run("x = 1")
        print("ready", flush=True)
        session.run("while True: pass", timeout=600)
        """
    )
    assert owner.stdout is not None
    assert owner.stdout.readline().strip() == "ready"
    assert len(_containers(docker_client)) == 1
    time.sleep(0.5)  # the busy cell is running
    _kill(owner)
    # The attach hangs up, the engine closes the interpreter's stdin, the
    # interpreter ends itself (even inside a busy cell), the engine removes it.
    assert _wait_for(lambda: not _containers(docker_client), 10) < 10


def test_a_runaway_cell_ends_its_interpreter_at_the_cells_deadline() -> None:
    # The host is alive but does not watch (as if it hung): the server's own
    # deadline (timeout + grace + slack) ends it.
    session = Session("deadline", PythonDockerRunner())
    try:
        session.run("pass")
        box = session._box  # the test plays a hung host: reach past the API
        agent = session._agent
        assert box is not None
        assert agent is not None
        from dockermagic.protocol import run_request

        agent.send([run_request(99, b"while True: pass", "/code/x.py", deadline=1.0)], timeout=5)
        state = box.exit_state(timeout=15)
        assert state.exit_code == 137
    finally:
        session.stop()


# -- 2. no host file through a link or a special file ----------------------------------


def test_run_file_refuses_links_out_of_the_folder_and_special_files(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET")
    scripts = tmp_path / "scripts"
    data = scripts / "data"
    data.mkdir(parents=True)
    (scripts / "job.py").write_text("import os\nprint(sorted(os.listdir('/code/data')))\n")
    (data / "inside.txt").write_text("fine")
    (data / "alias.txt").symlink_to("inside.txt")
    runner = PythonDockerRunner()
    result = runner.run_file(scripts / "job.py", include=[data])
    assert result.stdout == "['alias.txt', 'inside.txt']\n"
    (data / "key.txt").symlink_to(secret)
    with pytest.raises(UnsafeFileError, match="outside"):
        runner.run_file(scripts / "job.py", include=[data])
    (data / "key.txt").unlink()
    (scripts / "shadow.py").symlink_to("/etc/shadow")
    with pytest.raises(UnsafeFileError, match="outside"):
        runner.run_file(scripts / "shadow.py")
    os.mkfifo(scripts / "fifo.py")
    started = time.monotonic()
    with pytest.raises(UnsafeFileError, match="FIFO"):
        runner.run_file(scripts / "fifo.py")
    assert time.monotonic() - started < 5


def test_what_is_copied_in_is_capped() -> None:
    runner = PythonDockerRunner(policy=SandboxPolicy.default().replace(copy_limit="1m"))
    with pytest.raises(InvalidArgumentError, match="copy limit of 1 MiB"):
        runner.run("print(1)", files={"big.bin": b"x" * (2 * 1024**2)})


def test_a_long_file_name_is_a_clear_error() -> None:
    with pytest.raises(InvalidArgumentError, match="255 bytes"):
        PythonDockerRunner().run("print(1)", files={"x" * 300: "a"})


# -- 3. cleanup never removes a live owner's container --------------------------------


def test_cleanup_spares_an_owner_in_another_pid_namespace(
    docker_client: docker.DockerClient,
) -> None:
    code = (
        "from dockermagic import PythonDockerRunner, Session\n"
        "import os, time\n"
        "s = Session('nsowner', PythonDockerRunner())\n"
        "s.run('x = 1')\n"
        "print(os.getpid(), s.container_name, flush=True)\n"
        "time.sleep(120)\n"
    )
    owner = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc", sys.executable, "-c", code],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None
        pid, name = owner.stdout.readline().split()
        # In its own namespace the owner is pid 1, and our pid 1 is alive but
        # is not it: the 0.1 cleanup removed this live session.
        assert pid == "1"
        assert name in _containers(docker_client)
        removed = cleanup(docker_client)
        assert name not in removed
        assert name in _containers(docker_client)
    finally:
        _kill(owner)
    # With its owner gone, the session's interpreter ends and the engine removes it.
    _wait_for(lambda: not _containers(docker_client), 10)


def test_cleanup_removes_a_dead_owners_containers(docker_client: docker.DockerClient) -> None:
    owner = _owner(
        """
        from dockermagic.engine import connect
        from dockermagic.labels import container_labels
        client = connect()
        c = client.api.create_container(
            "dockermagic/python:offline", command=["true"], labels=container_labels("python")
        )
        print(c["Id"], flush=True)
        """
    )
    assert owner.stdout is not None
    container_id = owner.stdout.readline().strip()
    _kill(owner)
    assert container_id in {c.id for c in list_containers(docker_client, tag=TAG)}
    cleanup(docker_client)
    assert container_id not in {c.id for c in list_containers(docker_client, tag=TAG)}


# -- 4. a hung engine does not hold a run far past its timeout ------------------------


@pytest.fixture(scope="module")
def frozen_engine() -> Iterator[Any]:
    with extra_engine(images=("dockermagic/python:offline",)) as engine:
        yield engine


def _in_thread(call: Any) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def target() -> None:
        started = time.monotonic()
        try:
            box["value"] = call()
        except BaseException as exc:
            box["error"] = exc
        box["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box


@pytest.mark.engines
def test_a_run_on_a_frozen_engine_ends_within_its_timeout_plus_5_s(frozen_engine: Any) -> None:
    client = frozen_engine.client(timeout=60)
    runner = PythonDockerRunner(client=client)
    assert runner.run("print(1)", timeout=10).stdout == "1\n"  # warm: image known
    # Frozen while the program runs.
    thread, box = _in_thread(
        lambda: runner.run("import time\nprint('up', flush=True)\ntime.sleep(100)", timeout=4)
    )
    time.sleep(1.5)
    frozen_engine.freeze()
    try:
        thread.join(4 + 5 + 1)
        assert "seconds" in box, "the run did not come back"
        assert box["seconds"] < 4 + 5
        if "value" in box:
            assert box["value"].timed_out
        else:
            assert isinstance(box["error"], EngineUnavailableError)
        # Frozen before the run starts.
        thread, box = _in_thread(lambda: runner.run("print(1)", timeout=3))
        thread.join(3 + 5 + 1)
        assert "seconds" in box
        assert box["seconds"] < 3 + 5
        assert isinstance(box.get("error"), EngineUnavailableError)
    finally:
        frozen_engine.thaw()
    assert runner.run("print(2)", timeout=10).stdout == "2\n"


@pytest.mark.engines
def test_a_session_cell_on_a_frozen_engine_ends_within_its_timeout_plus_5_s(
    frozen_engine: Any,
) -> None:
    client = frozen_engine.client(timeout=60)
    session = Session("frozen", PythonDockerRunner(client=client))
    try:
        session.run("x = 1", timeout=10)
        frozen_engine.freeze()
        try:
            thread, box = _in_thread(lambda: session.run("import time\ntime.sleep(100)", timeout=3))
            with pytest.warns(SessionRestartedWarning):
                thread.join(3 + 5 + 1)
            assert box.get("seconds", 99) < 3 + 5
            assert box["value"].timed_out
        finally:
            frozen_engine.thaw()
        assert session.run("print(2)", timeout=10).stdout == "2\n"
    finally:
        session.stop()


# -- 5. large session requests ----------------------------------------------------------


@pytest.mark.parametrize("language", ["python", "javascript"])
def test_large_session_requests_keep_the_session(language: str) -> None:
    runner = (
        PythonDockerRunner(policy=SandboxPolicy.default().replace(memory="1g"))
        if language == "python"
        else JavaScriptDockerRunner(policy=SandboxPolicy.default().replace(memory="1g"))
    )
    with Session("large", runner) as session:
        for size in (256 * 1024, 4 * 1024**2):
            filler = "#" if language == "python" else "//"
            code = f"{filler} {'x' * size}\n" + (
                "print(len(big))" if language == "python" else "console.log(big.length)"
            )
            result = session.run(code, inputs={"big": "y" * 1000}, timeout=30)
            assert result.stdout == "1000\n", result.stderr
        data = "z" * (50 * 1000**2)
        shown = "print(len(data))" if language == "python" else "console.log(data.length)"
        result = session.run(shown, inputs={"data": data}, timeout=60)
        assert result.stdout == f"{len(data)}\n", result.stderr
        assert session.restarts == 0


# -- 7. root however spelled ------------------------------------------------------------


@pytest.mark.parametrize("user", ["00", "0000:0", ":0", "", "0:65534", "65534:0", "ROOT", "root"])
def test_root_is_refused_however_it_is_spelled(user: str) -> None:
    with pytest.raises(InvalidArgumentError, match="user"):
        SandboxPolicy(user=user)


def test_a_lone_uid_gets_its_own_group_not_roots() -> None:
    result = PythonDockerRunner(policy=SandboxPolicy(user="1234")).run(
        "import os; print(os.getuid(), os.getgid())"
    )
    assert result.stdout == "1234 1234\n"


# -- 8. the session channel is hostile ---------------------------------------------------

# The server's protocol descriptor (a dup of its stdout): 4 in both servers.
_PY_WRITE = "import os\nos.write(4, {frame!r})\nimport time; time.sleep(1)\n"
_JS_WRITE = (
    "require('fs').writeSync(4, Buffer.from({frame!r}, 'latin1'))\n"
    "const t = Date.now(); while (Date.now() - t < 1000) {{}}\n"
)


def _frame(kind: bytes, payload: bytes) -> bytes:
    return kind + len(payload).to_bytes(4, "big") + payload


@pytest.mark.parametrize("language", ["python", "javascript"])
@pytest.mark.parametrize(
    "frame",
    [
        b"Zgarbage",
        b"O" + (2**31).to_bytes(4, "big"),
        _frame(b"D", b"[" * 100_000 + b"]" * 100_000),
        _frame(b"O", b"\x00"),
    ],
    ids=["unknown-kind", "giant", "deeply-nested", "short-output"],
)
def test_garbage_on_the_channel_restarts_the_session_cleanly(language: str, frame: bytes) -> None:
    runner = PythonDockerRunner() if language == "python" else JavaScriptDockerRunner()
    template = _PY_WRITE if language == "python" else _JS_WRITE
    text = frame.decode("latin1")
    with Session("garbage", runner) as session:
        session.run("1")
        with pytest.warns(SessionRestartedWarning, match="protocol"):
            result = session.run(template.format(frame=frame if language == "python" else text))
        assert not result.ok
        assert "protocol" in result.stderr
        after = session.run("print(6 * 7)" if language == "python" else "console.log(6 * 7)")
        assert after.stdout == "42\n"


def test_a_forged_done_frame_cannot_leak_into_the_next_cell() -> None:
    with Session("forger", PythonDockerRunner()) as session:
        session.run("x = 1")
        done = json.dumps({"id": 2, "exit_code": 0, "interrupted": False}).encode()
        forged = session.run(
            f"import os\nos.write(4, {_frame(b'D', done)!r})\nprint('ALL TESTS PASSED')\n1 / 0\n"
        )
        # One trust domain: the cell may lie about itself (README, protocol.py)...
        assert forged.exit_code == 0
        # ...but nothing of it shows up in the next cell.
        following = session.run("print('clean')")
        assert following.stdout == "clean\n"
        assert following.stderr == ""
        assert "ZeroDivisionError" not in following.stdout + following.stderr


def test_deeply_nested_inputs_are_a_clear_error() -> None:
    nested: Any = []
    for _ in range(100_000):
        nested = [nested]
    with pytest.raises(InvalidArgumentError, match="nested too deeply"):
        PythonDockerRunner().run("print(1)", inputs={"x": nested})


# -- 9. a cell that leaves processes behind ----------------------------------------------


def test_a_cell_that_leaves_threads_behind_restarts_the_session() -> None:
    with Session("leaky", PythonDockerRunner()) as session:
        code = (
            "import threading, time\n"
            "for _ in range(110):\n"
            "    threading.Thread(target=time.sleep, args=(600,), daemon=True).start()\n"
            "print('started')\n"
        )
        with pytest.warns(SessionRestartedWarning, match=r"left 1\d\d processes and threads"):
            result = session.run(code)
        assert result.stdout == "started\n"
        assert session.run("import threading; print(threading.active_count() < 10)").stdout == (
            "True\n"
        )


# -- 10. smaller -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["lab\n", "lab\nx", " lab", "-lab", "a" * 64])
def test_session_names_are_checked_whole(name: str) -> None:
    with pytest.raises(InvalidArgumentError, match="session name"):
        Session(name, PythonDockerRunner())


def test_dev_shm_is_limited_like_the_other_tmpfs() -> None:
    result = PythonDockerRunner().run(
        "import os\nst = os.statvfs('/dev/shm')\nprint(st.f_blocks * st.f_frsize)"
    )
    assert int(result.stdout) == 64 * 1024**2


@pytest.mark.engines
def test_a_removal_the_engine_cannot_do_now_is_one_warning_and_finishes_later(
    caplog: pytest.LogCaptureFixture, frozen_engine: Any
) -> None:
    from dockermagic.container import ContainerSpec, SandboxContainer

    client = frozen_engine.client(timeout=60)
    spec = ContainerSpec(
        image="dockermagic/python:offline",
        command=["sleep", "60"],
        environment={},
        labels={},
        policy=SandboxPolicy(),
    )
    box = SandboxContainer.create(client, spec)
    frozen_engine.freeze()
    try:
        with caplog.at_level("DEBUG", logger="dockermagic"):
            started = time.monotonic()
            box.remove(timeout=1)
            box.remove(timeout=1)  # a second call is a no-op
            assert time.monotonic() - started < 2
        logged = [r for r in caplog.records if r.levelname == "WARNING"]
        assert len(logged) == 1
        assert logged[0].exc_info is None
        assert "goes on in the background" in logged[0].getMessage()
    finally:
        frozen_engine.thaw()
    # The removal goes on once the engine answers again.
    _wait_for(lambda: not client.api.containers(all=True, filters={"id": box.id}), 30)
