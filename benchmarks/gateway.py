"""The gateway's cost: the same runs locally and through a gateway on 127.0.0.1.

Usage: ``.venv/bin/python benchmarks/gateway.py [--runs N] [--students S --cells C]``

Starts ``dockermagic gateway serve`` as a subprocess (holding the engine
``DOCKER_HOST`` names, warm pool of 2 as a front end keeps), then measures:

* a warm session cell (``x``, the interpreter already running), locally and
  through the gateway;
* a one-shot ``print(1)`` with a warm pool of 2, locally and through the gateway;
* S students at once, each with a session of their own, running C cells each
  through the gateway: the p95 of a cell, and fairness (when each student's
  last cell finished, earliest against latest).

Prints median and p95 in milliseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from dockermagic import PythonDockerRunner
from dockermagic.gateway.client import GatewayBackend
from dockermagic.pool import close_pools
from dockermagic.sessions import Session

ROOT = Path(__file__).resolve().parents[1]


def measure(fn: Callable[[], object], runs: int) -> list[float]:
    for _ in range(3):
        fn()  # warm-up: connections, image metadata, the pool
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return samples


def p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def row(name: str, samples: list[float]) -> None:
    print(
        f"{name:<34} median {statistics.median(samples) * 1000:8.2f} ms"
        f"   p95 {p95(samples) * 1000:8.2f} ms   (n={len(samples)})",
        flush=True,
    )


def start_gateway(folder: Path, students: int) -> tuple[subprocess.Popen[str], str, dict[str, str]]:
    tokens = {f"s{i:02d}": f"student-{i:02d}-token-0123456789" for i in range(max(students, 1))}
    config = {
        "port": 0,
        "audit_dir": str(folder / "audit"),
        "pool_size": 2,
        "capacity": max(4, students),
        "users": {name: {"token": token} for name, token in tokens.items()},
        "quotas": {"runs_at_once": 2, "queued": 16, "sessions": 2},
    }
    (folder / "gateway.json").write_text(json.dumps(config))
    env = {k: v for k, v in os.environ.items() if k not in ("DOCKERMAGIC_GATEWAY",)}
    env["PYTHONPATH"] = str(ROOT)
    command = [sys.executable, "-m", "dockermagic", "gateway", "serve"]
    process = subprocess.Popen(
        [*command, "--config", str(folder / "gateway.json")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    for line in process.stdout:
        found = re.search(r"listening on (http://\S+)", line)
        if found:
            threading.Thread(
                target=lambda: [None for _ in process.stdout or ()], daemon=True
            ).start()
            return process, found.group(1), tokens
    raise SystemExit("the gateway did not start")


def classroom(url: str, tokens: dict[str, str], cells: int) -> None:
    sessions = {
        name: Session("bench", PythonDockerRunner(gateway=GatewayBackend(url, token)))
        for name, token in tokens.items()
    }
    samples: list[float] = []
    finished: dict[str, float] = {}
    lock = threading.Lock()
    began: list[float] = []
    # The clock starts when every student's session is up.
    barrier = threading.Barrier(len(sessions), action=lambda: began.append(time.perf_counter()))

    def student(name: str, session: Session) -> None:
        session.run("x = 1")  # started before the clock runs
        barrier.wait()
        mine = []
        for _ in range(cells):
            started = time.perf_counter()
            session.run("x = x + 1")
            mine.append(time.perf_counter() - started)
        with lock:
            samples.extend(mine)
            finished[name] = time.perf_counter()

    threads = [threading.Thread(target=student, args=item) for item in sessions.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for session in sessions.values():
        session.stop()
    ends = sorted(finished.values())
    begin = began[0]
    row(f"{len(sessions)} students x {cells} cells, a cell", samples)
    print(
        f"{'fairness (last cell done)':<34} first {ends[0] - begin:6.2f} s   "
        f"last {ends[-1] - begin:6.2f} s   (from when all sessions were up)",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--cells", type=int, default=10)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="dockermagic-bench-gateway-") as tmp:
        process, url, tokens = start_gateway(Path(tmp), args.students)
        try:
            backend = GatewayBackend(url, next(iter(tokens.values())))
            local = PythonDockerRunner(gateway=False, pool=2)
            remote = PythonDockerRunner(gateway=backend)
            with (
                Session("bench", PythonDockerRunner(gateway=False)) as here,
                Session("bench", remote) as there,
            ):
                here.run("x = 1")
                there.run("x = 1")
                row("warm cell, local", measure(lambda: here.run("x"), args.runs))
                row("warm cell, gateway", measure(lambda: there.run("x"), args.runs))
            runs = max(10, args.runs // 5)
            row("one-shot print(1), local pool 2", measure(lambda: local.run("print(1)"), runs))
            row("one-shot print(1), gateway", measure(lambda: remote.run("print(1)"), runs))
            if args.students:
                classroom(url, tokens, args.cells)
        finally:
            close_pools()
            process.send_signal(signal.SIGTERM)
            process.wait(60)


if __name__ == "__main__":
    main()
