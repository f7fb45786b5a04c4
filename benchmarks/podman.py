"""Per-run latency on Podman's Docker API against the main engine.

Usage: ``.venv/bin/python benchmarks/podman.py [--runs N]`` (root; needs podman
and catatonit, ``make system-test`` installs them, and the main engine with
the offline images).

A throw-away Podman service (tests/engines.py: its own socket, configuration
and storage, the images copied in from the main engine) beside the main
Docker engine, both reached over their unix socket. Each row runs
``print(1)`` (or ``console.log(1)``) through a runner made for that engine,
after one warm-up run:

* ``cold``: a fresh container per run (create, attach, start, the agent's
  boot, the program, removal), what a batch or a check pays;
* ``pooled``: a container started ahead (``pool=2``), what a notebook cell
  pays once the front end's pool is warm.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import docker

from dockermagic import JavaScriptDockerRunner, PythonDockerRunner
from dockermagic.engine import engine_version
from dockermagic.pool import close_pools
from dockermagic.runners import AbstractDockerCodeRunner
from tests.engines import PodmanService, missing_podman

IMAGES = {"python": "dockermagic/python:offline", "javascript": "dockermagic/node:offline"}
CODE = {"python": "print(1)", "javascript": "console.log(1)"}


def row(client: docker.DockerClient, label: str, language: str, runs: int, pool: int) -> None:
    cls: type[AbstractDockerCodeRunner] = (
        PythonDockerRunner if language == "python" else JavaScriptDockerRunner
    )
    runner = cls(client=client, image=IMAGES[language], pool=pool)
    assert runner.run(CODE[language]).stdout == "1\n"  # warm-up
    samples = []
    try:
        for _ in range(runs):
            if pool:
                time.sleep(1.0)  # let the pool start the next container, as between cells
            t0 = time.perf_counter()
            result = runner.run(CODE[language])
            samples.append(time.perf_counter() - t0)
            assert result.stdout == "1\n", result
    finally:
        close_pools(wait=10)
    samples.sort()
    # Nearest rank: with 20 runs, the 19th fastest.
    p95 = samples[max(0, math.ceil(len(samples) * 0.95) - 1)]
    print(f"{label:<40} {statistics.median(samples):>9.3f} s {p95:>9.3f} s {runs:>5}", flush=True)


def rows(client: docker.DockerClient, runs: int) -> None:
    version = engine_version(client)
    name = f"{version['name']} {version['version']}"
    for language, pool, what in (
        ("python", 0, "cold"),
        ("javascript", 0, "cold"),
        ("python", 2, "pooled"),
    ):
        row(client, f"{name}, {language} {what}", language, runs, pool)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    missing = missing_podman()
    if missing:
        sys.exit(f"this benchmark needs {', '.join(missing)} (make system-test installs them)")

    print(f"{'engine, run':<40} {'median':>11} {'p95':>11} {'runs':>5}")
    main_engine = docker.from_env(timeout=60)
    try:
        rows(main_engine, args.runs)
    finally:
        main_engine.close()
    with PodmanService(images=tuple(IMAGES.values())) as service:
        print(
            f"(podman service up in {service.timings['start']:.1f} s, "
            f"images copied in {service.timings['images']:.0f} s)",
            flush=True,
        )
        client = service.client()
        rows(client, args.runs)


if __name__ == "__main__":
    main()
