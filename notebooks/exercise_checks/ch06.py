"""Tools and checks for notebook 06 (testing parallel code)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from exercise_checks import Verdict, cell_source, run_in_container, verdict_from_report

_PYTEST = """
import subprocess
import sys
from pathlib import Path


def _pytest(folder):
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "--no-header", "--tb=short", "-p", "no:cacheprovider",
         "test_notebook.py"],
        cwd=folder, capture_output=True, text=True, timeout=120,
    )
    return done.returncode, done.stdout + done.stderr
"""

_RUN = (
    _PYTEST
    + """
def _check():
    folder = Path("/work/tests")
    folder.mkdir()
    (folder / "test_notebook.py").write_text("\\n\\n".join(SOURCES))
    code, output = _pytest(folder)
    return {"code": code, "output": output}
"""
)


def run_pytest(*objects: Callable[..., Any]) -> None:
    """Run pytest in a fresh container on the cells that define ``objects``; show its report.

    The cells (code under test and tests alike) are written, in the order
    given, into one test module, ``test_notebook.py``.

    Args:
        *objects: Functions defined in notebook cells: the code and its tests.
    """
    sources = list(dict.fromkeys(cell_source(obj) for obj in objects))
    report, result = run_in_container([], f"SOURCES = {sources!r}\n" + _RUN, cpus=2)
    if report is None or "output" not in report:
        print(verdict_from_report(report, result, lambda r: Verdict(False, "")))
        return
    print(report["output"].rstrip())


_IMPLEMENTATIONS = {
    "right": """
from multiprocessing import Pool


def parallel_sum(numbers, workers=2):
    if not numbers:
        return 0
    size = -(-len(numbers) // workers)
    chunks = [numbers[i : i + size] for i in range(0, len(numbers), size)]
    with Pool(workers) as pool:
        return sum(pool.map(sum, chunks))
""",
    "loses the tail": """
from multiprocessing import Pool


def parallel_sum(numbers, workers=2):
    size = len(numbers) // workers
    chunks = [numbers[i * size : (i + 1) * size] for i in range(workers)]
    with Pool(workers) as pool:
        return sum(pool.map(sum, chunks))
""",
    "breaks on empty input": """
from multiprocessing import Pool


def parallel_sum(numbers, workers=2):
    size = -(-len(numbers) // workers)
    chunks = [numbers[i : i + size] for i in range(0, len(numbers), size)]
    with Pool(workers) as pool:
        return sum(pool.map(sum, chunks))
""",
}

_MUTANTS = (
    _PYTEST
    + """
def _check():
    report = {}
    for number, (name, implementation) in enumerate(IMPLEMENTATIONS.items()):
        folder = Path(f"/work/variant_{number}")
        folder.mkdir()
        (folder / "parallel_tools.py").write_text(implementation)
        (folder / "test_notebook.py").write_text("from parallel_tools import parallel_sum\\n\\n" + STUDENT)
        code, output = _pytest(folder)
        report[name] = {"code": code, "tail": output.strip().splitlines()[-1:]}
    return report
"""
)

_MUTANT_HINTS = {
    "loses the tail": "loses the last numbers when the list does not split evenly between the workers",
    "breaks on empty input": "crashes when the list is empty (the sum of nothing is 0)",
}


def check_test_finds_bugs(test: Callable[[], None]) -> Verdict:
    """Check a student's test of ``parallel_sum``: it passes on the right code, fails on bugs."""
    try:
        source = cell_source(test)
    except (OSError, TypeError, AttributeError):
        return Verdict(False, "define the test in a notebook cell and run that cell first")

    def judge(report: dict[str, Any]) -> Verdict:
        right = report["right"]
        if right["code"] == 5:
            return Verdict(False, "pytest found no test: the test's name must start with test_")
        if right["code"] != 0:
            return Verdict(
                False, "your test fails on a correct parallel_sum; check what it asserts"
            )
        for name, hint in _MUTANT_HINTS.items():
            if report[name]["code"] == 0:
                return Verdict(False, f"your test passes on a parallel_sum that {hint}")
        return Verdict(True)

    harness = f"IMPLEMENTATIONS = {_IMPLEMENTATIONS!r}\nSTUDENT = {source!r}\n" + _MUTANTS
    report, result = run_in_container([], harness, cpus=2, timeout=120)
    return verdict_from_report(report, result, judge)
