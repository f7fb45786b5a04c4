"""What displays cost: the display machinery on print(1), and bringing back a 100 KB PNG.

Usage::

    .venv/bin/python benchmarks/displays.py [--runs 30] [--cells 200]

* one-shot ``print(1)``: the agent (displays, files, a figure check at the
  end) against a language without an agent (the program run directly, the
  path every run took before agents), same image;
* session ``print(1)`` with and without the last-expression display;
* a session cell that displays a 100 KB PNG, against ``print(1)``;
* a one-shot run that displays a 100 KB PNG, against ``print(1)``.

Run it on a quiet machine; it prints medians and the load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

from dockermagic import PythonDockerRunner, Session
from dockermagic.runners import AbstractDockerCodeRunner

PNG_100K = "display_png(bytes(100_000))"


class DirectPython(AbstractDockerCodeRunner):
    """Python without its agent: the program runs directly (no displays)."""

    language = "python-direct"
    default_image = PythonDockerRunner.default_image
    image_env_var = PythonDockerRunner.image_env_var
    filename = "main.py"
    offline_image = PythonDockerRunner.offline_image

    def command(self, path: str) -> list[str]:
        return ["python3", path]

    def environment(self) -> dict[str, str]:
        return {"PYTHONUNBUFFERED": "1", "HOME": self.policy.workdir}


def timed(call: Callable[[], object], runs: int) -> list[float]:
    call()  # warm-up
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def row(name: str, samples: list[float]) -> None:
    samples.sort()
    p95 = samples[min(len(samples) - 1, int(len(samples) * 0.95))]
    print(
        f"{name:<44} {min(samples):8.2f} {statistics.median(samples):9.2f} {p95:8.2f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="one-shot runs per contestant")
    parser.add_argument("--cells", type=int, default=200, help="session cells per contestant")
    args = parser.parse_args()
    agent = PythonDockerRunner()
    direct = DirectPython(image=agent.image)
    print(f"image {agent.image}, load average {os.getloadavg()[0]:.2f}")
    print(f"{'contestant':<44} {'min ms':>8} {'median ms':>9} {'p95 ms':>8}")
    row("one-shot print(1), agent", timed(lambda: agent.run("print(1)"), args.runs))
    row("one-shot print(1), direct (no agent)", timed(lambda: direct.run("print(1)"), args.runs))
    row("one-shot 100 KB PNG display, agent", timed(lambda: agent.run(PNG_100K), args.runs))
    with Session("bench-displays", agent) as session:
        row(
            "session print(1), last expression shown",
            timed(lambda: session.run("print(1)"), args.cells),
        )
        row(
            "session print(1), last expression not shown",
            timed(lambda: session.run("print(1)", display_last=False), args.cells),
        )
        row("session 100 KB PNG display", timed(lambda: session.run(PNG_100K), args.cells))


if __name__ == "__main__":
    main()
