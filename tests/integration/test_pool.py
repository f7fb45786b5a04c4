"""Issue 14: pooled runs are fresh containers, only faster; and what each run cost.

The runner module (test_runners.py) runs every hostile case cold and pooled;
this module proves the isolation and the accounting.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from IPython.utils.capture import capture_output

from dockermagic import JavaScriptDockerRunner, PythonDockerRunner, Session
from dockermagic.cleanup import list_containers
from dockermagic.magics import stats_line
from dockermagic.pool import close_pools, idle_containers
from tests.conftest import TAG
from tests.support import loaded_shell, make_result

pytestmark = pytest.mark.docker

PROBE = """
import json, os, socket
procs = []
for pid in os.listdir('/proc'):
    if pid.isdigit():
        try:
            procs.append(open(f'/proc/{pid}/cmdline', 'rb').read().split(b'\\0')[0].decode())
        except OSError:
            pass
print(json.dumps({
    'host': socket.gethostname(),
    'work': sorted(os.listdir('.')),
    'tmp': sorted(os.listdir('/tmp')),
    'shm': sorted(os.listdir('/dev/shm')),
    'env': os.environ.get('LEFT_BEHIND'),
    'procs': sorted(p.rsplit('/', 1)[-1] for p in procs),
}))
"""

LEAVE_BEHIND = """
import os, subprocess
open('/work/note.txt', 'w').write('for the next run')
open('/tmp/note.txt', 'w').write('for the next run')
open('/dev/shm/note', 'w').write('for the next run')
os.environ['LEFT_BEHIND'] = '1'
subprocess.Popen(['sleep', '600'], start_new_session=True)
print('left', flush=True)
"""


def wait_ready(runner: PythonDockerRunner, count: int = 1) -> None:
    """Until the runner's pool has ``count`` idle containers (so a run is pooled)."""
    pool = runner.pool
    assert pool is not None
    pool.warm_up()
    deadline = time.monotonic() + 30
    while pool.ready < count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pool.ready >= count


@pytest.fixture
def pooled() -> Iterator[PythonDockerRunner]:
    runner = PythonDockerRunner(pool=2)
    wait_ready(runner, 2)
    try:
        yield runner
    finally:
        close_pools()


def test_each_pooled_run_gets_a_container_no_code_ran_in(pooled: PythonDockerRunner) -> None:
    pool = pooled.pool
    assert pool is not None
    first = pooled.run(LEAVE_BEHIND)
    assert first.stdout == "left\n"
    wait_ready(pooled)
    second = pooled.run(PROBE)
    assert second.ok, second.stderr
    seen = json.loads(second.stdout)
    assert first.container_name != second.container_name
    assert seen["work"] == []
    assert seen["tmp"] == []
    assert seen["shm"] == []
    assert seen["env"] is None
    assert "sleep" not in seen["procs"]
    wait_ready(pooled)
    idle = idle_containers()
    third = pooled.run(PROBE)
    assert json.loads(third.stdout)["host"] != seen["host"]
    assert pool.taken == 3  # they really came from the pool
    # The result names the warm container the program ran in.
    assert third.container_name in idle


def test_the_timeout_counts_from_the_programs_start(pooled: PythonDockerRunner) -> None:
    time.sleep(3)  # the idle containers have waited a while
    result = pooled.run("import time\ntime.sleep(1.5)\nprint('done')", timeout=2)
    assert result.ok, result.stderr
    assert result.stdout == "done\n"


def test_a_pool_leaves_nothing_when_closed(docker_client: docker.DockerClient) -> None:
    runner = PythonDockerRunner(pool=2)
    runner.run("print(1)")
    pool = runner.pool
    assert pool is not None
    deadline = time.monotonic() + 30
    while pool.ready < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(idle_containers()) == 2
    close_pools()
    deadline = time.monotonic() + 10
    while list_containers(docker_client, tag=TAG) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert list_containers(docker_client, tag=TAG) == []


def test_closing_while_a_container_starts_waits_for_it(
    docker_client: docker.DockerClient,
) -> None:
    runner = PythonDockerRunner(pool=1)
    pool = runner.pool
    assert pool is not None
    pool.warm_up()
    deadline = time.monotonic() + 10
    while not idle_containers() and time.monotonic() < deadline:
        time.sleep(0.005)  # until the first container is being created
    assert idle_containers(), "the pool should be starting a container now"
    pool.close(wait=30)
    # close(wait=...) returns once the container that was starting is up and
    # handed to removal: the pool holds nothing any more.
    assert idle_containers() == set()
    deadline = time.monotonic() + 10
    while list_containers(docker_client, tag=TAG) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert list_containers(docker_client, tag=TAG) == []
    # A closed pool leaves the registry: the next runner of that configuration gets a new one.
    assert PythonDockerRunner(pool=1).pool is not pool
    close_pools()


def test_pools_are_shared_per_configuration() -> None:
    try:
        a = PythonDockerRunner(pool=2).pool
        b = PythonDockerRunner(pool=2).pool
        c = PythonDockerRunner(pool=2, policy=PythonDockerRunner().policy.replace(memory="128m"))
        assert a is b
        assert c.pool is not a
        assert JavaScriptDockerRunner(pool=2).pool is not a
    finally:
        close_pools()


# -- accounting ----------------------------------------------------------------------------


@pytest.mark.parametrize("pool", [0, 2])
def test_runs_report_cpu_and_peak_memory(pool: int) -> None:
    try:
        runner = PythonDockerRunner(pool=pool)
        busy = runner.run(
            "import time\n"
            "data = bytearray(64 * 2**20)\n"  # 64 MiB resident
            "for i in range(len(data) // 4096):\n"
            "    data[i * 4096] = 1\n"
            "end = time.process_time() + 0.5\n"
            "while time.process_time() < end:\n"
            "    pass\n"
        )
        assert busy.ok, busy.stderr
        assert busy.cpu_seconds is not None
        assert 0.5 <= busy.cpu_seconds < 5
        assert busy.peak_memory_bytes is not None
        assert 64 * 2**20 < busy.peak_memory_bytes < 200 * 2**20
        # Children count too: two processes burning 0.3 s each.
        children = runner.run(
            "import multiprocessing, time\n"
            "def burn(_):\n"
            "    end = time.process_time() + 0.3\n"
            "    while time.process_time() < end:\n"
            "        pass\n"
            "if __name__ == '__main__':\n"
            "    with multiprocessing.Pool(2) as p:\n"
            "        p.map(burn, range(2))\n"
        )
        assert children.ok, children.stderr
        assert children.cpu_seconds is not None
        assert children.cpu_seconds >= 0.6
    finally:
        close_pools()


def test_session_cells_report_their_own_cpu() -> None:
    with Session("cpu", PythonDockerRunner()) as session:
        light = session.run("x = 1")
        heavy = session.run(
            "import time\nend = time.process_time() + 0.4\nwhile time.process_time() < end: pass"
        )
    assert light.cpu_seconds is not None
    assert heavy.cpu_seconds is not None
    assert light.cpu_seconds < 0.1
    assert 0.4 <= heavy.cpu_seconds < 3


def test_javascript_runs_report_cpu() -> None:
    # Burn 0.3 s of CPU (not of wall time: a loaded machine gives less).
    result = JavaScriptDockerRunner().run(
        "const start = process.cpuUsage().user; while (process.cpuUsage().user - start < 3e5) {}"
    )
    assert result.cpu_seconds is not None
    assert result.cpu_seconds >= 0.25
    assert result.peak_memory_bytes is not None


def test_stats_line_and_magic(tmp_path: Path) -> None:
    line = stats_line(make_result(duration=0.21, cpu_seconds=0.777, peak_memory_bytes=41 * 2**20))
    assert line == "0.21 s wall · 0.78 s CPU (3.7 cores) · 41 MiB peak"
    assert "CPU unknown" in stats_line(make_result())
    with loaded_shell(tmp_path / "logs") as shell, capture_output() as captured:
        shell.run_cell_magic("docker_python", "--stats", "print('hi')")
    assert "s wall" in captured.stderr
    assert "MiB peak" in captured.stderr
