"""Time to grade a class: ``dockermagic grade`` on the made-up submissions of notebook 01.

Usage::

    .venv/bin/python benchmarks/grading.py [--workers 4 8] [--nbclient 3]

Grades the 32 submissions of ``tools/make_submissions.py`` (two of them
loop until their 10 s check timeout, one sleeps in both exercises) with each
worker count, in fresh containers, verdicts on the host. The baselines of
issue 15 were measured by hand: executing the notebooks with nbclient (268 s,
student code on the host) and a plain ``dockermagic run`` of the extracted
cells (21 s, no verdicts). ``--nbclient N`` executes N of the submissions
with nbclient for a per-notebook figure on this machine (their exercise cells
run in session containers now; the baseline ran them on the host).
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
import time
from pathlib import Path

from dockermagic.cli import main as cli_main

ROOT = Path(__file__).resolve().parent.parent


def _make_submissions(out: Path) -> int:
    spec = importlib.util.spec_from_file_location(
        "make_submissions", ROOT / "tools" / "make_submissions.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return len(module.write_submissions(out))


def _nbclient(folder: Path, count: int) -> float:
    import nbformat
    from nbclient import NotebookClient

    notebooks = sorted(folder.glob("right_*.ipynb"))[:count]
    started = time.perf_counter()
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        client = NotebookClient(
            nb,
            timeout=600,
            kernel_name="python3",
            allow_errors=True,
            resources={"metadata": {"path": str(ROOT / "notebooks")}},
        )
        client.execute()
    return (time.perf_counter() - started) / max(1, len(notebooks))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--nbclient", type=int, default=0, metavar="N")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "submissions"
        students = _make_submissions(folder)
        print(f"{students} submissions of notebook 01, 2 exercises each")
        for workers in args.workers:
            started = time.perf_counter()
            status = cli_main(
                [
                    "grade",
                    str(folder),
                    "--course",
                    str(ROOT / "notebooks"),
                    "--notebook",
                    "01",
                    "--workers",
                    str(workers),
                    "--logs",
                    str(Path(tmp) / "logs"),
                    "--json",
                    str(Path(tmp) / "grades.json"),
                ]
            )
            elapsed = time.perf_counter() - started
            print(f"\ngrade --workers {workers}: {elapsed:.1f} s (exit {status})")
        if args.nbclient:
            per = _nbclient(folder, args.nbclient)
            total = per * students
            print(
                f"\nnbclient, one submission executed: {per:.1f} s (x {students} = {total:.0f} s)"
            )
    print("\nbaselines (issue 15, by hand): nbclient 268 s, plain `dockermagic run` 21 s")


if __name__ == "__main__":
    main()
