"""Cold-run latency: dockermagic against the raw SDK floor and the chapter's CLI approach.

Usage: ``.venv/bin/python benchmarks/latency.py [--runs N]`` (``make bench``).

All contestants run ``print(1)`` in the same image (the one PythonDockerRunner
resolves). Rows:

* ``sdk floor``: create/start/wait/logs/remove with no hardening at all, the
  least any SDK-driven runner can do (default bridge network).
* ``sdk floor, no network``: the same with ``network_mode="none"``, since
  setting up a network namespace with a veth pair is most of the floor's cost.
* ``chapter CLI``: ``docker run -d ... sleep``, ``docker cp``, ``docker exec``,
  ``docker rm -f`` through subprocess, as the chapter's example does.
* ``PythonDockerRunner.run``: the full hardened lifecycle (volume, put_archive,
  attach, watchdog, inspect, remove).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable

import docker

from dockermagic import PythonDockerRunner
from dockermagic.labels import container_labels


def measure(fn: Callable[[], object], runs: int) -> list[float]:
    fn()  # warm-up: image metadata, connection pool
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()

    runner = PythonDockerRunner()
    image = runner.image
    client = docker.from_env()
    labels = container_labels("python")

    def sdk_floor(network: str | None = None) -> Callable[[], object]:
        def run() -> object:
            container = client.containers.create(
                image, ["python3", "-c", "print(1)"], labels=labels, network_mode=network
            )
            try:
                container.start()
                container.wait()
                return container.logs()
            finally:
                container.remove(force=True)

        return run

    docker_cli = shutil.which("docker")
    workdir = tempfile.mkdtemp()
    script = os.path.join(workdir, "app.py")
    with open(script, "w") as handle:
        handle.write("print(1)\n")

    def chapter_cli() -> object:
        assert docker_cli
        cid = subprocess.run(
            [docker_cli, "run", "-d", "--label", "dockermagic=1", image, "sleep", "300"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        try:
            subprocess.run(
                [docker_cli, "cp", script, f"{cid}:/tmp/app.py"], check=True, capture_output=True
            )
            return subprocess.run(
                [docker_cli, "exec", cid, "python3", "/tmp/app.py"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        finally:
            subprocess.run([docker_cli, "rm", "-f", cid], capture_output=True, check=True)

    def dockermagic_run() -> object:
        result = runner.run("print(1)")
        assert result.stdout == "1\n", result
        return result

    contestants: list[tuple[str, Callable[[], object]]] = [
        ("sdk floor", sdk_floor()),
        ("sdk floor, no network", sdk_floor("none")),
    ]
    if docker_cli:
        contestants.append(("chapter CLI (run/cp/exec/rm)", chapter_cli))
    contestants.append(("PythonDockerRunner.run", dockermagic_run))

    print(f"image {image}, {args.runs} runs each, print(1)\n")
    print(f"{'contestant':<30} {'min ms':>8} {'median ms':>10} {'x floor':>8}")
    floor = None
    for name, fn in contestants:
        samples = measure(fn, args.runs)
        median = statistics.median(samples)
        floor = floor or median
        print(f"{name:<30} {min(samples) * 1000:8.1f} {median * 1000:10.1f} {median / floor:8.2f}")
    shutil.rmtree(workdir)


if __name__ == "__main__":
    main()
