"""Issue 14 in the batch runner and the CLI: pooled containers, none left over; what runs cost.

Whether a script ran in a pooled container is read from the engine while it
runs: the script prints its hostname (its container's id) and waits a
moment; the caller looks that container up and reads its labels. Idle pool
containers carry :data:`dockermagic.labels.POOL`; so does one that took a
program from the pool. No timing is asserted.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import docker
import pytest

from dockermagic import BatchEvent, run_scripts
from dockermagic.cleanup import list_containers
from dockermagic.cli import main
from dockermagic.labels import BATCH, POOL
from tests.conftest import TAG

WHO_AM_I = "import socket, time\nprint(socket.gethostname(), flush=True)\ntime.sleep(1)\n"


def make_folder(root: Path, count: int, code: str = WHO_AM_I) -> Path:
    root.mkdir(parents=True)
    for i in range(count):
        (root / f"s{i}.py").write_text(code)
    return root


def batch_containers(client: docker.DockerClient) -> list[str]:
    """Containers of any batch (other tests' notebook pools may legitimately idle)."""
    return [c.name for c in list_containers(client, tag=TAG) if BATCH in c.labels]


class PoolWatch:
    """An ``on_event`` that notes, per script, whether its container came from a pool."""

    def __init__(self, client: docker.DockerClient) -> None:
        self.client = client
        self.pooled: dict[str, bool] = {}
        self.batches: set[str] = set()

    def __call__(self, event: BatchEvent) -> None:
        if event.kind != "output" or event.stream != "stdout" or event.script in self.pooled:
            return
        hostname = event.text.strip()
        for container in list_containers(self.client, tag=TAG):
            if container.id.startswith(hostname):
                self.pooled[event.script] = POOL in container.labels
                self.batches.add(container.labels.get(BATCH, ""))


@pytest.mark.parametrize("mode", ["sequential", "parallel"])
def test_batches_take_containers_from_the_pool_and_leave_none(
    tmp_path: Path, mode: str, docker_client: docker.DockerClient
) -> None:
    folder = make_folder(tmp_path / "scripts", 6)
    seen = {}
    for pool in (2, 0):
        watch = PoolWatch(docker_client)
        report = run_scripts(
            folder,
            mode=mode,  # type: ignore[arg-type]
            workers=2,
            timeout=30,
            pool=pool,
            on_event=watch,
        )
        assert report.ok, [(r.name, r.message) for r in report.results]
        assert report.pool == pool
        assert len(watch.pooled) == 6
        assert watch.batches == {report.run_id}
        seen[pool] = watch.pooled
        # Not a moment later: when run_scripts returns, nothing of the batch
        # is left, idle pool containers included.
        assert batch_containers(docker_client) == []
    # A worker's first script finds its pool still empty; the rest find it full.
    assert any(seen[2].values()), seen
    assert not all(seen[2].values()), seen
    assert not any(seen[0].values()), seen


def test_a_cancelled_pooled_batch_leaves_no_container(
    tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    folder = make_folder(tmp_path / "scripts", 4, WHO_AM_I.replace("sleep(1)", "sleep(60)"))
    cancel = threading.Event()

    def on_event(event: BatchEvent) -> None:
        if event.kind == "output":
            cancel.set()

    report = run_scripts(
        folder, mode="parallel", workers=2, pool=2, cancel=cancel, on_event=on_event, timeout=60
    )
    assert report.cancelled
    assert {r.status for r in report.results} == {"cancelled"}
    assert batch_containers(docker_client) == []


def test_the_cli_shows_and_reports_what_each_script_cost(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = make_folder(tmp_path / "scripts", 0)
    (folder / "busy.py").write_text(
        "data = bytearray(40 * 1024 * 1024)\n"
        "total = 0\nfor i in range(2_000_000):\n    total += i\nprint(total)\n"
    )
    (folder / "hello.js").write_text("console.log('hi');\n")
    report_file = tmp_path / "report.json"
    logs = tmp_path / "logs"
    monkeypatch.setenv("DOCKERMAGIC_POOL_SIZE", "1")  # the CLI's default comes from settings
    assert main(["run", str(folder), "--logs", str(logs), "--json", str(report_file)]) == 0
    text = capsys.readouterr().out
    header = next(line for line in text.splitlines() if line.startswith("script"))
    columns = header.split()
    assert columns[columns.index("CPU") + 1] == "peak"
    rows = {line.split()[0]: line for line in text.splitlines() if line.startswith(("busy", "hel"))}
    assert re.search(r"\d+\.\d\d s +\d+ MiB$", rows["busy.py"].rstrip()), rows
    report = json.loads(report_file.read_text())
    assert report["pool"] == 1
    busy = next(r for r in report["results"] if r["name"] == "busy.py")
    assert busy["cpu_seconds"] > 0.05
    assert busy["peak_memory_bytes"] > 40 * 1024 * 1024
    node = next(r for r in report["results"] if r["name"] == "hello.js")
    assert node["cpu_seconds"] > 0
    assert node["peak_memory_bytes"] > 0
    records = [
        line
        for line in (logs / "dockermagic.log").read_text().splitlines()
        if f"run={report['run_id']} " in line and "status=ok" in line
    ]
    assert len(records) == 2
    for record in records:
        assert re.search(r" cpu=\d+\.\d{3}s peak=\d+(\.\d)?[KMG]iB from=batch$", record), record
    # --pool 0 turns the pool off, whatever the settings say.
    assert main(["run", str(folder), "--pool", "0", "--logs", str(logs), "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["pool"] == 0
