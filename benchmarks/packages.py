"""What packages cost: a first build, a cache hit, the size a layer adds.

Usage::

    .venv/bin/python benchmarks/packages.py [--runs 20]

* first build of ``numpy`` (Python) and ``lodash`` (JavaScript): the derived
  image of each is removed first, so the build is real (pip/npm caches on the
  host may still hold the files);
* the cost of a cache hit: a cold ``print(1)`` with the requirements against
  the same run without, and the in-process lookup alone;
* the bytes each derived image adds to its base.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import docker

from dockermagic import JavaScriptDockerRunner, PythonDockerRunner
from dockermagic.packages import derived_image, list_derived_images


def drop(client: docker.DockerClient, requirements: tuple[str, ...]) -> None:
    for image in list_derived_images(client):
        if image.requirements == requirements:
            client.images.remove(image.tag, force=True)


def median_ms(call: object, runs: int) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        call()  # type: ignore[operator]
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def measure_case(
    client: docker.DockerClient,
    language: str,
    base: str,
    specs: tuple[str, ...],
    cls: type[Any],
    code: str,
    runs: int,
) -> None:
    drop(client, specs)
    started = time.perf_counter()
    tag = derived_image(client, base, language, specs)
    build = time.perf_counter() - started
    added = client.images.get(tag).attrs["Size"] - client.images.get(base).attrs["Size"]
    lookup = median_ms(lambda: derived_image(client, base, language, specs), runs)
    with_reqs = cls(image=base, requirements=specs)
    without = cls(image=base)
    with_reqs.run(code)
    without.run(code)
    run_with = median_ms(lambda: with_reqs.run(code), runs)
    run_without = median_ms(lambda: without.run(code), runs)
    print(
        f"{language:<12} {build:13.1f} {added / 2**20:9.1f} {lookup:9.2f} "
        f"{run_with:8.1f} {run_without:15.1f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    client = docker.from_env()
    print(
        f"{'':<12} {'first build s':>13} {'layer MiB':>9} {'lookup ms':>9} "
        f"{'run ms':>8} {'run, no reqs ms':>15}"
    )
    measure_case(
        client,
        "python",
        "dockermagic/python:offline",
        ("numpy",),
        PythonDockerRunner,
        "print(1)",
        args.runs,
    )
    measure_case(
        client,
        "javascript",
        "dockermagic/node:offline",
        ("lodash",),
        JavaScriptDockerRunner,
        "1",
        args.runs,
    )


if __name__ == "__main__":
    main()
