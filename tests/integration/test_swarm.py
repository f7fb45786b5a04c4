"""Batches on a real two-node Docker Swarm made on this machine (tests/engines.py).

The fixture ``cluster`` (tests/integration/conftest.py, one per pytest run)
starts a manager and a worker, each a ``dockerd`` in a network namespace of
its own (joined by a veth pair and a bridge), with its
own data root, ``--bridge=none --no-new-privileges`` and
``DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1`` (the README's node set-up), copies
the offline images into both with the SDK, forms the swarm, and removes all
of it at the end. The tests reach the manager as a user would: through
``DOCKER_HOST``.

After every test, no service, config or task of dockermagic is left on the
manager, and no container on any node.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import docker
import pytest

from dockermagic import BatchEvent, run_scripts
from dockermagic.cleanup import cleanup
from dockermagic.engine import reset_default_client
from dockermagic.errors import InvalidArgumentError
from dockermagic.labels import BATCH, container_labels
from dockermagic.panel import ScriptsPanel
from dockermagic.policy import SandboxPolicy
from dockermagic.swarm import CONFIG_LIMIT, NODE_SETUP, SwarmTask, TaskSpec, list_services
from tests.engines import (
    BASE_DIR,
    SWARM_RECORD_PREFIX,
    NetnsEngine,
    SwarmCluster,
    missing_prerequisites,
    reclaim_stale_clusters,
)
from tests.swarm import (
    IMAGES,
    MIXED,
    MIXED_EXPECTED,
    MIXED_TIMEOUT,
    NODE_IMAGE,
    PYTHON_IMAGE,
    write_folder,
)

pytestmark = [pytest.mark.docker, pytest.mark.engines, pytest.mark.swarm]

REPO = Path(__file__).resolve().parents[2]


# -- spreading, and the same report as a local batch -------------------------------------


def test_a_batch_spreads_over_both_nodes_with_the_same_report(
    on_swarm: dict[str, str], tmp_path: Path
) -> None:
    names = [f"s{i}.py" for i in range(8)]
    folder = write_folder(
        tmp_path / "scripts",
        {name: f"import time\nprint('hello from {name}')\ntime.sleep(1.5)\n" for name in names},
    )
    report_path, logs = tmp_path / "report.json", tmp_path / "logs"
    done = subprocess.run(
        [
            *(sys.executable, "-m", "dockermagic", "run", str(folder), "--swarm"),
            *("--swarm-limit", "8", "--json", str(report_path), "--logs", str(logs)),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
        cwd=REPO,
        env={**os.environ, "COLUMNS": "160"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "8 scripts: 8 ok" in done.stdout
    assert "on the swarm, 8 at once" in done.stdout
    report = json.loads(report_path.read_text())
    assert report["backend"] == "swarm"
    assert report["mode"] == "parallel"
    assert report["workers"] == 8
    assert report["ok"] is True
    results = {r["name"]: r for r in report["results"]}
    assert set(results) == set(names)
    for name, result in results.items():
        assert result["status"] == "ok"
        assert result["exit_code"] == 0
        assert result["output_tail"] == f"hello from {name}"
        assert 1.4 < result["duration"] < 60
        assert result["cpu_seconds"] is not None
        # The node of each script, and both nodes took some.
        assert result["node"] in on_swarm
        log = Path(result["log_file"]).read_text()
        assert f"hello from {name}" in log
    assert {on_swarm[r["node"]] for r in results.values()} == {"manager", "worker"}
    # Each node's id is in the summary table too (12 characters, as docker shows them).
    assert all(node[:12] in done.stdout for node in {r["node"] for r in results.values()})


def test_statuses_exit_codes_and_output_match_a_local_batch(
    on_swarm: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = write_folder(tmp_path / "scripts", MIXED)
    timeout = MIXED_TIMEOUT
    swarm = run_scripts(
        folder,
        mode="parallel",
        backend="swarm",
        timeout=timeout,
        images=IMAGES,
        log_dir=tmp_path / "swarm-logs",
    )
    # The same folder on the main engine, as a local batch.
    monkeypatch.delenv("DOCKER_HOST")
    reset_default_client()
    local = run_scripts(
        folder,
        mode="parallel",
        workers=4,
        timeout=timeout,
        images=IMAGES,
        log_dir=tmp_path / "logs",
    )
    assert swarm.backend == "swarm"
    assert local.backend == "local"
    for report in (swarm, local):
        assert {r.name: (r.status, r.exit_code) for r in report.results} == MIXED_EXPECTED, report
    by_name, local_by_name = swarm.by_name(), local.by_name()
    for name in ("a_ok.py", "b_fail.py", "c_exit.py", "d_slow.py", "g_hello.js"):
        # Between stdout and stderr, a task's order is the node's reading order.
        tail, local_tail = by_name[name].output_tail, local_by_name[name].output_tail
        assert sorted(tail.splitlines()) == sorted(local_tail.splitlines()), name
        assert by_name[name].message.split()[:2] == local_by_name[name].message.split()[:2]
    assert sorted(by_name["a_ok.py"].output_tail.splitlines()) == [
        "data says forty-two",
        "to stderr",
    ]
    assert "ValueError: bad value" in by_name["b_fail.py"].output_tail
    assert by_name["d_slow.py"].duration < 4 + 15
    assert by_name["f_flood.py"].message == local_by_name["f_flood.py"].message
    assert "printed more" in by_name["f_flood.py"].message
    assert {r.node for r in swarm.results} <= set(on_swarm)
    assert {r.node for r in local.results} == {""}
    # The same log mirror: every line of a script, stamped, in its own file.
    log = Path(by_name["a_ok.py"].log_file).read_text()
    assert "data says forty-two" in log
    assert "to stderr" in log
    runs = (tmp_path / "swarm-logs" / "dockermagic.log").read_text()
    assert "e_hog.py" in runs
    assert "status=oom" in runs
    assert "node=" in runs
    # The JSON has the same keys, plus the node where it ran.
    assert set(swarm.to_dict()) == set(local.to_dict())
    assert set(swarm.to_dict()["results"][0]) == set(local.to_dict()["results"][0])


def test_a_file_too_large_for_a_config_is_an_error_and_the_rest_run(
    on_swarm: dict[str, str], tmp_path: Path
) -> None:
    folder = write_folder(
        tmp_path / "scripts",
        {"a.py": "print('small')\n", "b.py": "x = 1\n#" + "x" * CONFIG_LIMIT + "\n"},
    )
    report = run_scripts(folder, mode="parallel", backend="swarm", images=IMAGES)
    by_name = report.by_name()
    assert by_name["a.py"].status == "ok"
    assert by_name["b.py"].status == "error"
    assert "a Swarm config holds at most 500 KiB" in by_name["b.py"].message


def test_sequential_with_fail_fast_starts_nothing_more(
    on_swarm: dict[str, str], tmp_path: Path
) -> None:
    folder = write_folder(
        tmp_path / "scripts",
        {"a.py": "print('a')\n", "b.py": "raise SystemExit(4)\n", "c.py": "print('c')\n"},
    )
    report = run_scripts(folder, mode="sequential", backend="swarm", fail_fast=True, images=IMAGES)
    assert [(r.name, r.status) for r in report.results] == [
        ("a.py", "ok"),
        ("b.py", "failed"),
        ("c.py", "cancelled"),
    ]
    assert report.by_name()["c.py"].message == "not started: b.py failed (fail-fast)"
    assert report.workers == 1


def test_the_panel_offers_the_swarm_on_a_manager_and_runs_there(
    on_swarm: dict[str, str], tmp_path: Path
) -> None:
    folder = write_folder(
        tmp_path / "scripts",
        {"a_ok.py": "print('alpha')\n", "b_fail.js": "console.error('bad'); process.exit(2);\n"},
    )
    panel = ScriptsPanel(folder, log_dir=tmp_path / "logs", mode="parallel", workers=2)
    # The engine is a manager: the toggle is shown; "this engine" stays the default.
    assert panel.swarm
    assert panel.backend.layout.display == ""
    assert panel.backend.value == "local"
    panel.backend.value = "swarm"
    panel.run_button.click()
    report = panel.wait(120)
    assert report is not None
    assert report.backend == "swarm"
    assert {r.name: r.status for r in report.results} == {"a_ok.py": "ok", "b_fail.js": "failed"}
    assert all(r.node in on_swarm for r in report.results)
    assert "dockermagic-status-ok" in panel._status_cells["a_ok.py"].value
    assert "dockermagic-status-failed" in panel._status_cells["b_fail.js"].value
    panel.selected.value = "b_fail.js"
    assert "bad" in panel.stderr_view.value
    assert "alpha" in (tmp_path / "logs" / "a_ok.py.log").read_text()


# -- hardening, read back from inside the tasks --------------------------------------------

PROBE = """\
import json, os, resource
from pathlib import Path

def read(path):
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        return type(exc).__name__

def writable(path):
    try:
        with open(path, "a"):
            return True
    except OSError:
        return False

status = dict(line.split(":\\t", 1) for line in read("/proc/self/status").splitlines())
mounts = {line.split()[1]: line.split()[3] for line in read("/proc/mounts").splitlines()}
print(json.dumps({
    "ids": [os.getuid(), os.getgid(), os.getgroups()],
    "no_new_privs": status["NoNewPrivs"],
    "cap_eff": status["CapEff"], "cap_bnd": status["CapBnd"],
    "seccomp": status["Seccomp"],
    "interfaces": sorted(os.listdir("/sys/class/net")),
    "root_writable": writable("/usr/lib/dockermagic-probe"),
    "code_writable": writable(__file__),
    "code_owner": os.stat(__file__).st_uid,
    "cwd": os.getcwd(), "cwd_writable": writable("probe.txt"),
    "home": os.environ.get("HOME"),
    "env": sorted(os.environ),
    "memory": read("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
    "pids": read("/sys/fs/cgroup/pids/pids.max"),
    "cpu": [read(f"/sys/fs/cgroup/cpu/cpu.cfs_{k}_us") for k in ("quota", "period")],
    "nofile": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
    "tmp": mounts.get("/tmp", ""), "shm": mounts.get("/dev/shm", ""),
}))
"""


def test_the_hardening_read_back_from_inside_tasks_on_both_nodes(
    on_swarm: dict[str, str], tmp_path: Path
) -> None:
    folder = write_folder(tmp_path / "scripts", {f"probe{i}.py": PROBE for i in range(6)})
    report = run_scripts(
        folder, mode="parallel", workers=6, backend="swarm", images=IMAGES, timeout=20
    )
    assert report.ok, [r.message for r in report.results]
    assert {on_swarm[r.node] for r in report.results} == {"manager", "worker"}
    policy = SandboxPolicy.default()
    for result in report.results:
        seen = json.loads(result.output_tail)
        uid, gid, groups = seen["ids"]
        assert (uid, gid) == (65534, 65534), result.node
        assert set(groups) <= {65534}
        # From the node's --no-new-privileges: a service spec cannot ask for it.
        assert seen["no_new_privs"] == "1"
        assert seen["cap_eff"] == seen["cap_bnd"] == "0000000000000000"
        assert seen["seccomp"] == "2"
        # From the node's --bridge=none: services have no "network none".
        assert seen["interfaces"] == ["lo"]
        assert seen["root_writable"] is False
        assert seen["code_writable"] is False
        assert seen["code_owner"] == 0
        assert seen["cwd"] == seen["home"] == "/tmp"
        assert seen["cwd_writable"] is True
        # Nothing of the client's environment: the image's LANG, the wrapper's PWD.
        assert set(seen["env"]) <= {"HOME", "PATH", "HOSTNAME", "PYTHONUNBUFFERED"} | {
            "PYTHONDONTWRITEBYTECODE",
            "PYTHONUTF8",
            "LANG",
            "PWD",
        }
        assert seen["memory"] == str(policy.memory)
        assert seen["pids"] == str(policy.pids_limit)
        assert seen["cpu"] == ["100000", "100000"]
        assert seen["nofile"] == [policy.nofile, policy.nofile]
        # Service tmpfs mounts are always noexec (engine 20.10).
        assert "noexec" in seen["tmp"]
        assert f"size={policy.tmp_size // 1024}k" in seen["tmp"]
        assert "noexec" in seen["shm"]


def test_a_node_that_is_not_set_up_runs_nothing(
    cluster: SwarmCluster, on_swarm: dict[str, str], manager: docker.DockerClient, tmp_path: Path
) -> None:
    # A third node with the engine's defaults: a bridge (in its own namespace,
    # so the host's docker0 is safe) and no --no-new-privileges; and it has
    # the Node image only.
    bad: NetnsEngine = cluster.add_worker(images=(NODE_IMAGE,), extra_args=(), bridge_none=False)
    bad_id = cluster.node_id(bad)
    good = [node for node in manager.nodes.list() if node.id != bad_id]
    try:
        for node in good:  # the bad node is the only one that takes tasks
            spec = node.attrs["Spec"]
            node.update({**spec, "Availability": "drain"})
        folder = write_folder(
            tmp_path / "scripts",
            {"leak.js": "console.log('RAN');\n", "missing.py": "print('RAN')\n"},
        )
        report = run_scripts(folder, backend="swarm", images=IMAGES, timeout=10)
    finally:
        for node in good:
            node.reload()
            node.update({**node.attrs["Spec"], "Availability": "active"})
        cluster.remove_worker(bad)
    result, missing = report.by_name()["leak.js"], report.by_name()["missing.py"]
    assert result.status == "error"
    assert result.node == bad_id
    assert f"node {bad_id} is not isolated (network eth0)" in result.message
    assert NODE_SETUP in result.message
    assert "RAN" not in result.output_tail
    # A node without the image rejects the task: an error naming the node.
    assert missing.status == "error"
    assert missing.node == bad_id
    assert f"node {bad_id} did not run the task (rejected)" in missing.message
    assert "load the image on every node" in missing.message
    assert "RAN" not in missing.output_tail


# -- stopping ----------------------------------------------------------------------------------


def test_cancel_removes_the_running_tasks(on_swarm: dict[str, str], tmp_path: Path) -> None:
    folder = write_folder(
        tmp_path / "scripts",
        {
            f"s{i}.py": "import time\nprint('started', flush=True)\ntime.sleep(60)\n"
            for i in range(6)
        },
    )
    cancel = threading.Event()
    started: set[str] = set()
    events: list[BatchEvent] = []

    def on_event(event: BatchEvent) -> None:
        events.append(event)
        if event.kind == "output":
            started.add(event.script)
            if len(started) == 4:
                cancel.set()

    t0 = time.monotonic()
    report = run_scripts(
        folder,
        mode="parallel",
        workers=4,
        backend="swarm",
        images=IMAGES,
        timeout=60,
        cancel=cancel,
        on_event=on_event,
    )
    assert time.monotonic() - t0 < 45
    assert report.cancelled
    assert [r.status for r in report.results] == ["cancelled"] * 6
    running = [r for r in report.results if r.name in started]
    assert len(running) == 4
    assert all(r.message == "was cancelled" for r in running)
    assert sum(r.message.startswith("not started") for r in report.results) == 2
    assert [e.kind for e in events].count("finish") == 6


def test_a_task_whose_owner_is_killed_ends_at_its_deadline_and_cleanup_removes_it(
    cluster: SwarmCluster, on_swarm: dict[str, str], manager: docker.DockerClient, tmp_path: Path
) -> None:
    folder = write_folder(tmp_path / "scripts", {"forever.py": "import time\ntime.sleep(3600)\n"})
    code = (
        "from dockermagic import run_scripts\n"
        f"run_scripts({str(folder)!r}, backend='swarm', timeout=3, images={IMAGES!r})\n"
    )
    owner = subprocess.Popen([sys.executable, "-c", code], cwd=REPO)
    try:
        deadline = time.monotonic() + 60
        while not _running_tasks(manager):
            assert owner.poll() is None
            assert time.monotonic() < deadline, "the task never ran"
            time.sleep(0.1)
        owner.send_signal(signal.SIGKILL)
        owner.wait(10)
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait(10)
    services = list_services(manager)
    assert len(services) == 1
    # Nobody removes it: the task kills itself at its deadline (timeout -s KILL).
    killed_at = time.monotonic()
    while _task_states(manager) != ["failed"]:
        assert time.monotonic() - killed_at < 3 + 2 + 10, _task_states(manager)
        time.sleep(0.2)
    # Its owner is gone: cleanup (as any front end runs it) removes service and configs.
    # (The task's container, if it ran on the manager, goes too: its owner is gone.)
    assert services[0].name in cleanup(manager)
    assert list_services(manager) == []


def _running_tasks(manager: docker.DockerClient) -> list[str]:
    return [s for s in _task_states(manager) if s == "running"]


def _task_states(manager: docker.DockerClient) -> list[str]:
    return [str(t["Status"]["State"]) for t in manager.api.tasks()]


def test_cleanup_keeps_a_live_owners_services(
    on_swarm: dict[str, str], manager: docker.DockerClient
) -> None:
    spec = TaskSpec(
        image=PYTHON_IMAGE,
        command=["python3", "-c", "import time; time.sleep(60)"],
        environment={},
        labels=container_labels("python", **{BATCH: "live-owner"}),
        policy=SandboxPolicy.default(),
        files={"main.py": b"pass\n"},
        deadline=60,
    )
    with SwarmTask.create(manager, spec) as task:
        assert cleanup(manager) == []
        assert [s.id for s in list_services(manager)] == [task.service_id]


def test_a_swarm_batch_needs_a_manager(tmp_path: Path) -> None:
    # The main engine is no Swarm manager: refused before anything runs.
    (tmp_path / "a.py").write_text("print(1)\n")
    with pytest.raises(InvalidArgumentError, match="not a Swarm manager"):
        run_scripts(tmp_path, backend="swarm")


# -- the harness itself ----------------------------------------------------------------------

OWNER = """\
import sys, time
from tests.engines import SwarmCluster
cluster = SwarmCluster().start()
print(cluster.token, *(node.dir for node in cluster.nodes), flush=True)
time.sleep(600)
"""


def test_a_cluster_whose_owner_was_killed_is_reclaimed_by_the_next_one() -> None:
    missing = missing_prerequisites()
    if missing:
        pytest.skip(f"a throw-away Swarm needs {', '.join(missing)}")
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert owner.stdout is not None
        token, *dirs = owner.stdout.readline().split()
        # SIGKILL: no atexit, no finally; the engines (sessions of their own) keep running.
        owner.send_signal(signal.SIGKILL)
        owner.wait(10)
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait(10)
        if owner.stdout is not None:
            owner.stdout.close()
    namespaces = [f"dmk-{token}-0", f"dmk-{token}-1"]
    record = BASE_DIR / f"{SWARM_RECORD_PREFIX}{token}.json"
    assert record.exists()
    assert all(Path("/run/netns", name).exists() for name in namespaces)
    assert all(_daemons(directory) for directory in dirs)
    assert token in reclaim_stale_clusters()
    assert not record.exists()
    for directory in dirs:
        assert not Path(directory).exists()
        assert _daemons(directory) == []
    assert not any(Path("/run/netns", name).exists() for name in namespaces)
    assert (
        token
        not in subprocess.run(["ip", "link"], capture_output=True, text=True, check=True).stdout
    )
    assert token not in Path("/proc/self/mountinfo").read_text()


def _daemons(directory: str) -> list[int]:
    """dockerd and containerd processes of the engine in ``directory``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if f"{directory}/" in argv and argv.split("\0")[0].endswith(("dockerd", "containerd")):
                pids.append(int(entry.name))
    return pids
