"""Batch overhead on a Docker Swarm: tiny scripts as Swarm tasks versus the local process pool.

Usage::

    .venv/bin/python benchmarks/swarm.py                        # 24 and 100 scripts
    .venv/bin/python benchmarks/swarm.py --counts 24 --limits 4  # quicker
    .venv/bin/python benchmarks/swarm.py --gateway-only --counts 100 --limits 8

Needs root, ``dockerd`` and ``ip``: a throw-away two-node swarm is made on this
machine (tests/engines.py ``SwarmCluster``: a manager and a worker ``dockerd``,
each in a network namespace of its own, with ``--bridge=none
--no-new-privileges`` and ``DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1``; the image
copied from the main engine) and removed at the end.

Each row runs a folder of N ``print(1)`` scripts with :func:`run_scripts` in
parallel mode:

* ``local``: the main engine, the process pool (:func:`default_workers`
  workers), without and with a container pool of 2 (the CLI's default);
* ``swarm``: ``backend="swarm"`` through the manager, with several limits of
  tasks at once (the default limit is the CPUs of the ready nodes: 4 here).

With ``--gateway`` (or ``--gateway-only``), the same folders also go through
``dockermagic gateway serve`` subprocesses (tests/gateway.py), as a student's
batch does (``DOCKERMAGIC_GATEWAY``): a plain gateway holding the main engine
(with its warm pool of 2, a teacher's default, and without) and a gateway in
front of the swarm (``"swarm"`` in its configuration, ``DOCKER_HOST`` the
manager), each with ``runs_at_once`` and ``capacity`` the limit; and the
latency of a one-shot ``print(1)`` run through each, one after another
(``--runs`` of them, after 3 for warm-up).

Printed: wall time, jobs per second, and each job's latency (from its
``start`` event to its ``finish`` event, as the caller sees them: for a task,
config and service creation, scheduling, the container's start on a node, the
run, the log fetch and the removal) as median and p95. All nodes share this
machine's 2 cores with the main engine, so this measures the backend's
overhead, not a cluster's capacity.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dockermagic import BatchEvent, BatchReport, PythonDockerRunner, run_scripts
from dockermagic.engine import reset_default_client
from dockermagic.gateway.client import GatewayBackend
from tests.engines import SwarmCluster, missing_prerequisites
from tests.gateway import GatewayProcess

IMAGE = "dockermagic/python:offline"
TINY = "print(1)\n"


def make_folder(root: Path, count: int) -> Path:
    root.mkdir(parents=True)
    for i in range(count):
        (root / f"job_{i:03d}.py").write_text(TINY)
    return root


def timed_batch(folder: Path, **kwargs: Any) -> tuple[BatchReport, list[float]]:
    """Run the folder; its report and each job's start-to-finish latency in seconds."""
    started: dict[str, float] = {}
    latencies: list[float] = []

    def on_event(event: BatchEvent) -> None:
        if event.kind == "start":
            started[event.script] = time.perf_counter()
        elif event.kind == "finish" and event.script in started:
            latencies.append(time.perf_counter() - started[event.script])

    if not os.environ.get("DOCKERMAGIC_GATEWAY"):
        kwargs.setdefault("images", {"python": IMAGE})  # a gateway's ceiling names it
    report = run_scripts(folder, mode="parallel", timeout=60, on_event=on_event, **kwargs)
    assert report.ok, [(r.name, r.status, r.message) for r in report.results if r.status != "ok"]
    return report, latencies


def gateway_process(folder: Path, limit: int, manager: str | None, pool: int) -> GatewayProcess:
    """A gateway (not started): in front of the swarm when ``manager`` names its manager."""
    swarm: dict[str, Any] = {"swarm": True, "environment": {"DOCKER_HOST": manager}}
    return GatewayProcess(
        folder,
        ceiling={"timeout": 60, "images": {"python": [IMAGE]}},
        quotas={"runs_at_once": limit, "queued": 1000, "sessions": 2},
        capacity=limit,
        pool_size=pool,
        **(swarm if manager else {}),
    )


def one_shot_latencies(process: GatewayProcess, runs: int) -> list[float]:
    """Seconds of ``print(1)`` runs through the gateway, one after another."""
    runner = PythonDockerRunner(gateway=GatewayBackend(process.url, process.token("alice")))
    samples = []
    for index in range(runs + 3):
        started = time.perf_counter()
        result = runner.run("print(1)")
        assert result.ok, result
        if index >= 3:  # warm-up: connections, image metadata, the pool
            samples.append(time.perf_counter() - started)
    return samples


def gateway_rows(
    tmp: str, cluster: SwarmCluster, folders: dict[int, Path], limits: list[int], runs: int
) -> None:
    """Batches and one-shot runs through a plain gateway and a gateway in front of the swarm."""
    latency_rows = []
    for limit in limits:
        for label, manager, pool in (
            ("gateway, main engine, pool=2", None, 2),
            ("gateway, main engine, pool=0", None, 0),
            ("gateway, swarm", cluster.manager.base_url, 0),
        ):
            folder = Path(tmp, f"gateway-{limit}-{'swarm' if manager else 'local'}-{pool}")
            with gateway_process(folder, limit, manager, pool) as process:
                saved = {k: os.environ.get(k) for k in ("DOCKERMAGIC_GATEWAY", "DOCKERMAGIC_TOKEN")}
                os.environ.update(process.env("alice"))
                try:
                    for count, scripts in folders.items():
                        report, latencies = timed_batch(scripts)
                        row(label, count, report, latencies)
                    if limit == limits[0]:
                        latency_rows.append((label, one_shot_latencies(process, runs)))
                finally:
                    for key, value in saved.items():
                        if value is None:
                            os.environ.pop(key, None)
                        else:
                            os.environ[key] = value
    print()
    print("| one-shot print(1) through | runs | median s | p95 s |")
    print("| --- | ---: | ---: | ---: |")
    for label, samples in latency_rows:
        print(
            f"| {label} | {len(samples)} | {statistics.median(samples):.2f} | {p95(samples):.2f} |"
        )


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def row(label: str, count: int, report: BatchReport, latencies: list[float]) -> None:
    nodes = len({r.node for r in report.results if r.node})
    where = f"{nodes} node(s)" if nodes else "main engine"
    print(
        f"| {count} | {label} | {report.workers} | {report.wall_time:.2f} | "
        f"{count / report.wall_time:.2f} | {statistics.median(latencies):.2f} | "
        f"{p95(latencies):.2f} | {where} |",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[24, 100])
    parser.add_argument(
        "--limits",
        type=int,
        nargs="+",
        default=[0, 8],
        help="swarm tasks at once (0: the backend's default, the CPUs of the ready nodes)",
    )
    parser.add_argument("--pools", type=int, nargs="+", default=[0, 2])
    parser.add_argument(
        "--gateway", action="store_true", help="also through a plain and a swarm gateway"
    )
    parser.add_argument("--gateway-only", action="store_true", help="only the gateway rows")
    parser.add_argument("--runs", type=int, default=20, help="one-shot runs through a gateway")
    args = parser.parse_args()
    missing = missing_prerequisites()
    if missing:
        sys.exit(f"a throw-away Swarm needs {', '.join(missing)}")
    load = os.getloadavg()[0]
    print(f"load average before: {load:.2f}; {os.cpu_count()} CPUs", flush=True)
    t0 = time.perf_counter()
    with SwarmCluster(images=(IMAGE,)) as cluster, tempfile.TemporaryDirectory() as tmp:
        print(f"swarm up in {time.perf_counter() - t0:.1f} s: {cluster.timings}", flush=True)
        print()
        print(
            "| scripts | backend | at once | wall s | jobs/s | latency median s | p95 s | ran on |"
        )
        print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |")
        folders = {count: make_folder(Path(tmp, f"n{count}"), count) for count in args.counts}
        for count, folder in folders.items():
            if args.gateway_only:
                break
            os.environ.pop("DOCKER_HOST", None)
            reset_default_client()
            for pool in args.pools:
                report, latencies = timed_batch(folder, pool=pool)
                row(f"local, pool={pool}", count, report, latencies)
            os.environ["DOCKER_HOST"] = cluster.manager.base_url
            reset_default_client()
            try:
                for limit in args.limits:
                    report, latencies = timed_batch(folder, backend="swarm", workers=limit or None)
                    row("swarm", count, report, latencies)
            finally:
                os.environ.pop("DOCKER_HOST", None)
                reset_default_client()
        if args.gateway or args.gateway_only:
            limits = [limit or 4 for limit in args.limits]
            gateway_rows(tmp, cluster, folders, limits, args.runs)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
