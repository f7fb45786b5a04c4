"""A fresh container per run at warm speed: the pool against everything else.

Usage::

    .venv/bin/python benchmarks/pool.py [--runs 30] [--section all|latency|burst|batch|memory]

Sections (one run each, same image, print it in the closing note):

* latency: one-shot ``print(1)`` pooled (pool warm) vs unpooled vs the raw SDK
  floor (no network) vs epicbox vs llm-sandbox (with the ``bench`` extra).
* burst: 50 runs back to back from one thread, and from 8 threads at once,
  pool size 2: throughput and p95; and the engine's own ceiling of fresh
  containers per second (raw create/start/wait/remove from 1, 2, 4, 8 threads).
* batch: 100 tiny scripts, sequential and parallel, pool on and off, against
  that ceiling.
* memory: what an idle pool container costs, host and engine side.
* accounting: what the agent's CPU and memory figures cost per run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker

from dockermagic import PythonDockerRunner, run_scripts
from dockermagic.labels import container_labels
from dockermagic.pool import close_pools


def samples_ms(call: Callable[[], object], runs: int, pause: float = 0.0) -> list[float]:
    call()
    out = []
    for _ in range(runs):
        if pause:
            time.sleep(pause)  # lets the pool refill between runs, as between cells
        started = time.perf_counter()
        call()
        out.append((time.perf_counter() - started) * 1000)
    return out


def stats(samples: list[float]) -> str:
    samples = sorted(samples)
    p95 = samples[min(len(samples) - 1, int(len(samples) * 0.95))]
    return f"{min(samples):8.1f} {statistics.median(samples):9.1f} {p95:8.1f}"


def latency(image: str, runs: int) -> None:
    print("\n## latency: one-shot print(1)")
    print(f"{'contestant':<40} {'min ms':>8} {'median ms':>9} {'p95 ms':>8}")
    pooled = PythonDockerRunner(image=image, pool=2)
    pool = pooled.pool
    assert pool is not None
    pool.warm_up()
    while pool.ready < 2:
        time.sleep(0.05)
    medians: dict[str, float] = {}
    rows = [
        ("dockermagic pooled (pool warm)", lambda: pooled.run("print(1)"), 0.5),
        ("dockermagic unpooled", lambda: PythonDockerRunner(image=image).run("print(1)"), 0.0),
    ]
    client = docker.from_env()
    labels = container_labels("python")

    def floor() -> object:
        container = client.containers.create(
            image, ["python3", "-c", "print(1)"], labels=labels, network_mode="none"
        )
        try:
            container.start()
            container.wait()
            return container.logs()
        finally:
            container.remove(force=True)

    rows.append(("raw SDK floor, no network", floor, 0.0))
    rows += _others(image)
    for name, call, pause in rows:
        found = samples_ms(call, runs, pause)
        medians[name] = statistics.median(found)
        print(f"{name:<40} {stats(found)}", flush=True)
    close_pools()
    ratio = medians["dockermagic unpooled"] / medians["dockermagic pooled (pool warm)"]
    print(f"pooled is {ratio:.1f}x faster than unpooled")


def _others(image: str) -> list[tuple[str, Callable[[], object], float]]:
    rows: list[tuple[str, Callable[[], object], float]] = []
    try:
        import epicbox
        import epicbox.utils
        from urllib3.util.retry import Retry
    except ImportError:
        print("(epicbox not installed: pip install -e '.[bench]')")
    else:

        class _Retry(Retry):  # type: ignore[misc]
            def __init__(self, *a: Any, method_whitelist: Any = None, **k: Any) -> None:
                if method_whitelist is not None:
                    k["allowed_methods"] = method_whitelist
                super().__init__(*a, **k)

        epicbox.utils.Retry = _Retry
        epicbox.configure(profiles=[epicbox.Profile("python", image, user="65534")])
        files = [{"name": "main.py", "content": b"print(1)"}]
        rows.append(
            (
                "epicbox 1.1 run",
                lambda: epicbox.run(
                    "python", "python3 main.py", files=files, limits={"cputime": 5}
                ),
                0.0,
            )
        )
    try:
        from llm_sandbox import SandboxSession
    except ImportError:
        print("(llm-sandbox not installed: pip install -e '.[bench]')")
    else:

        def llm() -> object:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with SandboxSession(
                    lang="python", image=image, skip_environment_setup=True, verbose=False
                ) as sandbox:
                    return sandbox.run("print(1)")

        rows.append(("llm-sandbox, a new session per run", llm, 0.0))
    return rows


def ceiling(image: str, seconds: float = 8.0) -> dict[int, float]:
    """Fresh containers per second the engine manages (raw SDK, no hardening beyond none-net)."""
    client = docker.from_env(max_pool_size=32)
    labels = container_labels("python")
    result = {}
    for threads in (1, 2, 4, 8):
        result[threads] = _fresh_per_second(client, image, labels, threads, seconds)
    return result


def _fresh_per_second(
    client: docker.DockerClient, image: str, labels: dict[str, str], threads: int, seconds: float
) -> float:
    done = [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def work() -> None:
        while time.monotonic() < stop:
            container = client.containers.create(
                image, ["true"], labels=labels, network_mode="none"
            )
            container.start()
            container.wait()
            container.remove(force=True)
            with lock:
                done[0] += 1

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return done[0] / seconds


def burst(image: str) -> None:
    print("\n## burst: pool size 2")
    limits = ceiling(image)
    print(
        "engine ceiling, fresh containers/s: "
        + ", ".join(f"{t} thread(s) {r:.1f}" for t, r in limits.items())
    )
    runner = PythonDockerRunner(image=image, pool=2)
    pool = runner.pool
    assert pool is not None
    pool.warm_up()
    while pool.ready < 2:
        time.sleep(0.05)
    for threads in (1, 8):
        latencies, wall = _burst(runner, threads, 50)
        print(
            f"{threads} thread(s), {len(latencies)} runs: {len(latencies) / wall:.1f} runs/s, "
            f"median {statistics.median(latencies):.1f} ms, "
            f"p95 {sorted(latencies)[int(len(latencies) * 0.95)]:.1f} ms, "
            f"pool started {pool.started} and handed out {pool.taken}"
        )
    close_pools()


def _burst(runner: PythonDockerRunner, threads: int, runs: int) -> tuple[list[float], float]:
    latencies: list[float] = []
    lock = threading.Lock()
    per_thread = max(1, runs // threads)

    def work() -> None:
        for _ in range(per_thread):
            started = time.perf_counter()
            result = runner.run("print(1)")
            assert result.stdout == "1\n", result
            with lock:
                latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return latencies, time.perf_counter() - started


def batch(image: str) -> None:
    print("\n## batch: 100 tiny scripts")
    limits = ceiling(image, seconds=5)
    best = max(limits.values())
    folder = Path(tempfile.mkdtemp(prefix="dockermagic-bench-"))
    for i in range(100):
        (folder / f"s{i:03d}.py").write_text(f"print({i})\n")
    print(f"engine ceiling (best of 1-8 threads): {best:.1f} containers/s")
    for mode in ("sequential", "parallel"):
        for pool in (0, 2):
            started = time.perf_counter()
            report = run_scripts(folder, mode=mode, pool=pool, images={"python": image})
            wall = time.perf_counter() - started
            assert report.ok, report.totals
            rate = 100 / wall
            print(
                f"{mode:<10} pool {pool}: {wall:6.2f} s, {rate:5.1f} scripts/s, "
                f"{rate / best:4.0%} of the ceiling",
                flush=True,
            )


def memory(image: str) -> None:
    print("\n## memory of an idle pool")
    client = docker.from_env()

    def rss(pid: int) -> int:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    dockerd = next(
        int(p) for p in os.listdir("/proc") if p.isdigit() and _cmd(int(p)).startswith("dockerd")
    )
    host_before, engine_before = rss(os.getpid()), rss(dockerd)
    runner = PythonDockerRunner(image=image, pool=8)
    pool = runner.pool
    assert pool is not None
    pool.warm_up()
    while pool.ready < 8:
        time.sleep(0.1)
    time.sleep(2)
    host_after, engine_after = rss(os.getpid()), rss(dockerd)
    usage = []
    for container in client.containers.list(filters={"label": "dockermagic.pool"}):
        stats_now = container.stats(stream=False)
        usage.append(stats_now["memory_stats"].get("usage", 0))
    per = statistics.median(usage) if usage else 0
    print(
        f"per idle container: {per / 2**20:.1f} MiB in its cgroup; "
        f"host process {(host_after - host_before) / 8 / 2**20:.2f} MiB; "
        f"dockerd {(engine_after - engine_before) / 8 / 2**20:.2f} MiB"
    )
    close_pools()


def _cmd(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")[0].decode().rsplit("/", 1)[-1]
    except OSError:
        return ""


def accounting(image: str, runs: int) -> None:
    print("\n## accounting: what the agent's figures cost, measured inside the container")
    code = (
        "import os, resource, time\n"
        "def work():\n"
        "    own = resource.getrusage(resource.RUSAGE_SELF)\n"
        "    kids = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "    tasks = sum(len(os.listdir(f'/proc/{p}/task')) for p in os.listdir('/proc') "
        "if p.isdigit())\n"
        "    fds = len(os.listdir('/proc/self/fd'))\n"
        "    return own, kids, tasks, fds\n"
        "n = 1000\n"
        "t = time.perf_counter()\n"
        "for _ in range(n): work(); work()\n"
        "print(f'{(time.perf_counter() - t) / n * 1e3:.3f}')\n"
    )
    result = PythonDockerRunner(image=image).run(code)
    print(f"per run: {result.stdout.strip()} ms (two readings: before and after the program)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument(
        "--section",
        default="all",
        choices=["all", "latency", "burst", "batch", "memory", "accounting"],
    )
    args = parser.parse_args()
    image = PythonDockerRunner().image
    print(f"image {image}, load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs")
    if args.section in ("all", "latency"):
        latency(image, args.runs)
    if args.section in ("all", "burst"):
        burst(image)
    if args.section in ("all", "batch"):
        batch(image)
    if args.section in ("all", "memory"):
        memory(image)
    if args.section in ("all", "accounting"):
        accounting(image, args.runs)


if __name__ == "__main__":
    main()
