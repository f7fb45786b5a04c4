"""Cell latency: a warm dockermagic session against cold runs and other sandboxes.

Usage: ``.venv/bin/python benchmarks/cells.py [--cells N]`` (llm-sandbox and
epicbox come from the ``bench`` extra: ``pip install -e '.[bench]'``; a missing
one is skipped).

Every contestant runs the same cell in the same image (the one
PythonDockerRunner resolves, ``dockermagic/python:offline`` offline; Node's for
JavaScript) N times after one warm-up, timed end to end from the caller:

* ``dockermagic session``: ``Session.run`` in a warm interpreter.
* ``dockermagic cold run``: ``PythonDockerRunner.run``, a fresh hardened container.
* ``raw exec_run``: ``container.exec_run(["python3", "-c", code])`` in a running
  container, the floor of any exec-per-cell design.
* ``llm-sandbox session``: ``SandboxSession(...).run`` (copies a file in, execs
  ``python``); ``skip_environment_setup=True`` so it uses the image's
  ``python`` (the offline image has the symlink) instead of building a venv.
* ``epicbox run``: ``epicbox.run`` (one container per run). epicbox 1.1 passes
  urllib3 1.x's ``method_whitelist`` to ``Retry``; a shim renames it to
  ``allowed_methods``. Its default user (root) is replaced by 65534, as ours.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import docker

from dockermagic import JavaScriptDockerRunner, PythonDockerRunner
from dockermagic.labels import container_labels
from dockermagic.sessions import SessionManager

MB_PY = "print('x' * 999_999)"
MB_PY_LINES = "for i in range(10000): print('y' * 99)"
MB_JS = "console.log('x'.repeat(999_999))"
MB_JS_LINES = "for (let i = 0; i < 10000; i++) console.log('y'.repeat(99))"


def measure(fn: Callable[[], object], runs: int) -> list[float]:
    fn()  # warm-up
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def row(name: str, samples: list[float]) -> tuple[str, float, float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return name, ordered[0], statistics.median(ordered), p95


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=50)
    args = parser.parse_args()
    n = args.cells
    rows: list[tuple[str, float, float, float]] = []
    notes: list[str] = []

    py_image = PythonDockerRunner().image
    js_image = JavaScriptDockerRunner().image
    manager = SessionManager()
    try:
        py = manager.get("bench", "python")
        js = manager.get("bench", "javascript")

        def session_cell(session: Any, code: str, size: int) -> Callable[[], object]:
            def run() -> object:
                result = session.run(code)
                if not result.ok or len(result.stdout) != size:
                    raise RuntimeError(f"cell failed: {result.status}")
                return result

            return run

        rows.append(
            row("dockermagic session, Python print(1)", measure(session_cell(py, "print(1)", 2), n))
        )
        rows.append(
            row(
                "dockermagic session, JS console.log(1)",
                measure(session_cell(js, "console.log(1)", 2), n),
            )
        )
        rows.append(
            row(
                "dockermagic session, Python 1 MB (one print)",
                measure(session_cell(py, MB_PY, 10**6), n),
            )
        )
        rows.append(
            row(
                "dockermagic session, Python 1 MB (10k lines)",
                measure(session_cell(py, MB_PY_LINES, 10**6), n),
            )
        )
        rows.append(
            row(
                "dockermagic session, JS 1 MB (one log)", measure(session_cell(js, MB_JS, 10**6), n)
            )
        )
        rows.append(
            row(
                "dockermagic session, JS 1 MB (10k lines)",
                measure(session_cell(js, MB_JS_LINES, 10**6), n),
            )
        )
    finally:
        manager.close()

    cold = PythonDockerRunner(image=py_image)
    rows.append(
        row("dockermagic cold run, Python print(1)", measure(lambda: cold.run("print(1)"), n))
    )

    client = docker.from_env()
    container = client.containers.run(
        py_image,
        ["sleep", "infinity"],
        detach=True,
        init=True,
        network_mode="none",
        labels=container_labels("python"),
    )
    try:
        rows.append(
            row(
                "raw exec_run in a running container",
                measure(lambda: container.exec_run(["python3", "-c", "print(1)"]), n),
            )
        )
    finally:
        container.remove(force=True)

    try:
        from llm_sandbox import SandboxSession
    except ImportError:
        notes.append("llm-sandbox not installed: pip install -e '.[bench]'")
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with SandboxSession(
                lang="python", image=py_image, skip_environment_setup=True, verbose=False
            ) as sandbox:
                rows.append(
                    row(
                        "llm-sandbox session, Python print(1)",
                        measure(lambda: sandbox.run("print(1)"), n),
                    )
                )

    try:
        import epicbox
        import epicbox.utils
        from urllib3.util.retry import Retry
    except ImportError:
        notes.append("epicbox not installed: pip install -e '.[bench]'")
    else:

        class _Retry(Retry):  # type: ignore[misc]
            def __init__(self, *a: Any, method_whitelist: Any = None, **k: Any) -> None:
                if method_whitelist is not None:
                    k["allowed_methods"] = method_whitelist
                super().__init__(*a, **k)

        epicbox.utils.Retry = _Retry
        epicbox.configure(profiles=[epicbox.Profile("python", py_image, user="65534")])
        files = [{"name": "main.py", "content": b"print(1)"}]

        def epic() -> object:
            result = epicbox.run(
                "python", "python3 main.py", files=files, limits={"cputime": 5, "memory": 256}
            )
            assert result["stdout"] == b"1\n", result
            return result

        rows.append(row("epicbox run, Python print(1)", measure(epic, n)))

    reference = next((r[2] for r in rows if r[0].startswith("llm-sandbox")), None)
    print(f"{n} cells each after one warm-up; images {py_image}, {js_image}\n")
    print("| contestant | min ms | median ms | p95 ms | llm-sandbox median / this |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, low, median, p95 in rows:
        ratio = f"{reference / median:.1f}x" if reference else "-"
        print(f"| {name} | {low:.2f} | {median:.2f} | {p95:.2f} | {ratio} |")
    for note in notes:
        print(f"\nnote: {note}")


if __name__ == "__main__":
    main()
