"""Notebook 06 (testing parallel code): pytest in a container, and its exercise.

:func:`run_pytest` shows pytest's report on functions defined in the
notebook's ``%%docker_python`` cells. The exercise asks for a test: the check
runs it with pytest in a fresh container against a correct ``parallel_sum``
and against buggy ones, and only whether it passed on each (and where it
failed) comes back; the host knows which implementation is which.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from dockermagic import PythonDockerRunner, SandboxPolicy
from dockermagic.grading import Case, Exercise, register_exercise
from dockermagic.grading.answers import cell_body, defines

NOTEBOOK = "06-testing-parallel-code"

# -- run_pytest ---------------------------------------------------------------------------

_RUN_PYTEST = """
import subprocess
import sys

done = subprocess.run(
    [sys.executable, "-m", "pytest", "-q", "--no-header", "--tb=short",
     "-p", "no:cacheprovider", "test_notebook.py"],
    cwd="/code", capture_output=True, text=True,
)
print(done.stdout + done.stderr)
"""


def _cells_run() -> list[str]:
    """The cells run in this kernel so far, as %docker_check sees them."""
    from IPython import get_ipython

    shell = get_ipython()
    # dockermagic's magics keep the cells themselves: front ends such as
    # nbval run cells without storing them in IPython's history.
    magics = shell.magics_manager.registry.get("DockerMagics") if shell is not None else None
    return list(getattr(magics, "cells_run", ()))


def run_pytest(*names: str) -> None:
    """Run pytest in a fresh container on the cells that define ``names``; show its report.

    The cells are the last ones run in this notebook that define each name
    (``%%docker_python`` cells too, without their first line), as
    ``%docker_check`` finds answers (``%load_ext dockermagic`` must have run). They are
    written, in the order given, into one test module, ``test_notebook.py``:
    the code under test and its tests alike. Only their text is used, so
    nothing of them runs here.

    Args:
        *names: Names of functions (code and tests) defined in notebook cells.

    Raises:
        LookupError: No cell run so far defines one of the names.
    """
    cells = _cells_run()
    sources: list[str] = []
    for name in names:
        bodies = [body[0] for cell in cells if (body := cell_body(cell)) and defines(body[0], name)]
        if not bodies:
            raise LookupError(f"no cell run so far defines {name!r}: run that cell first")
        if bodies[-1] not in sources:
            sources.append(bodies[-1])
    runner = PythonDockerRunner(policy=SandboxPolicy.default().replace(cpus=2, timeout=120))
    module = "\n\n".join(source.strip("\n") + "\n" for source in sources)
    result = runner.run(_RUN_PYTEST, files={"test_notebook.py": module})
    print(result.stdout.rstrip() if result.ok else f"pytest could not run: it {result.describe()}")


# -- the exercise: test_parallel_sum ------------------------------------------------------

# Each implementation comes in forms that differ only in their names and
# layout, never in what they do, so that a test cannot tell them apart by
# their text alone, and a verdict does not depend on the form drawn.
#
# Whether the test passed is seen inside the container, where the student's
# test runs and could forge it. That is acceptable here: what is judged is
# exactly which implementations the test rejects, and a test that forged it
# would have to tell the correct code from the buggy ones all the same.
_RIGHT = [
    """
from multiprocessing import Pool


def parallel_sum(numbers, workers=2):
    if not numbers:
        return 0
    size = -(-len(numbers) // workers)
    chunks = [numbers[i : i + size] for i in range(0, len(numbers), size)]
    with Pool(workers) as pool:
        return sum(pool.map(sum, chunks))
""",
    """
import multiprocessing


def parallel_sum(numbers, workers=2):
    if not numbers:
        return 0
    step = (len(numbers) + workers - 1) // workers
    parts = [numbers[start : start + step] for start in range(0, len(numbers), step)]
    with multiprocessing.Pool(workers) as pool:
        totals = pool.map(sum, parts)
    return sum(totals)
""",
]
_LOSES_THE_TAIL = [
    """
from multiprocessing import Pool


def parallel_sum(numbers, workers=2):
    size = len(numbers) // workers
    chunks = [numbers[i * size : (i + 1) * size] for i in range(workers)]
    with Pool(workers) as pool:
        return sum(pool.map(sum, chunks))
""",
    """
import multiprocessing


def parallel_sum(numbers, workers=2):
    step = len(numbers) // workers
    parts = [numbers[k * step : k * step + step] for k in range(workers)]
    with multiprocessing.Pool(workers) as pool:
        totals = pool.map(sum, parts)
    return sum(totals)
""",
]
_BREAKS_ON_EMPTY = [
    """
from multiprocessing import Pool


def parallel_sum(numbers, workers=2):
    size = -(-len(numbers) // workers)
    chunks = [numbers[i : i + size] for i in range(0, len(numbers), size)]
    with Pool(workers) as pool:
        return sum(pool.map(sum, chunks))
""",
    """
import multiprocessing


def parallel_sum(numbers, workers=2):
    step = (len(numbers) + workers - 1) // workers
    parts = [numbers[start : start + step] for start in range(0, len(numbers), step)]
    with multiprocessing.Pool(workers) as pool:
        totals = pool.map(sum, parts)
    return sum(totals)
""",
]

_CORRECT = "the correct parallel_sum"


def _test_cases(rng: random.Random) -> list[Case]:
    return [
        Case((rng.choice(_RIGHT),), _CORRECT, True),
        Case(
            (rng.choice(_LOSES_THE_TAIL),),
            "a parallel_sum that loses the last numbers when the list does not split "
            "evenly between the workers",
            False,
        ),
        Case(
            (rng.choice(_BREAKS_ON_EMPTY),),
            "a parallel_sum that crashes on an empty list (the sum of nothing is 0)",
            False,
        ),
    ]


def _failure_words(failure: Mapping[str, Any]) -> str:
    line = failure.get("line")
    at = f"line {line} of your cell" if isinstance(line, int) else "your test"
    message = str(failure.get("message") or "").strip().splitlines()
    if failure.get("raised") == "AssertionError":
        said = f" ({message[0][:200]})" if message else ""
        return f"the assert at {at} does not hold{said}"
    said = f": {message[0][:200]}" if message else ""
    return f"it raised {failure.get('raised')}{said} ({at})"


def _judge_test(
    cases: Sequence[Case], observations: Sequence[Mapping[str, Any]]
) -> tuple[int, str]:
    right, first = 0, ""
    for case, seen in zip(cases, observations, strict=True):
        problem = _test_problem(case, seen)
        if problem and case.expected:
            # A test that fails on correct code catches nothing: no share of the points.
            return 0, problem
        if problem:
            first = first or problem
        else:
            right += 1
    return right, first


def _test_problem(case: Case, seen: Mapping[str, Any]) -> str:
    if seen.get("timed_out"):
        return f"on {case.label}, your test did not finish within {seen['timed_out']} s"
    code = seen.get("pytest")
    if code == 5:
        return "pytest found no test in your cell: a test function's name must start with test_"
    if not isinstance(code, int) or code not in (0, 1):
        return f"pytest could not run your test (exit status {code}); run it in the notebook first"
    passed = code == 0
    if passed == case.expected:
        return ""
    if passed:
        return f"your test passes on {case.label}: add a case that catches it"
    failure = seen.get("failure")
    why = f": {_failure_words(failure)}" if isinstance(failure, Mapping) else ""
    return f"your test fails on {case.label}{why}"


test_parallel_sum = register_exercise(
    Exercise(
        id=f"{NOTEBOOK}/test_parallel_sum",
        function="test_parallel_sum",
        cases=_test_cases,
        probe='''
        import json as _json
        import os as _os
        import subprocess as _subprocess
        import sys as _sys
        import tempfile as _tempfile

        # pytest runs in a process of its own, with a plugin that writes down,
        # for each test, whether it passed and where the student's code failed.
        _PYTEST = """
        import json
        import sys
        import traceback

        import pytest


        class Report:
            def __init__(self):
                self.failure = None

            def pytest_runtest_makereport(self, item, call):
                if call.excinfo is not None and self.failure is None:
                    frames = [
                        frame.lineno
                        for frame in traceback.extract_tb(call.excinfo.tb)
                        if frame.filename.endswith("test_answer.py")
                    ]
                    self.failure = {
                        "raised": call.excinfo.typename,
                        "message": str(call.excinfo.value)[:500],
                        "line": frames[-1] if frames else None,
                    }


        report = Report()
        code = pytest.main(["-q", "-p", "no:cacheprovider", "test_answer.py"], plugins=[report])
        with open(sys.argv[1], "w", encoding="utf-8") as stream:
            json.dump({"pytest": int(code), "failure": report.failure}, stream)
        """

        _SECONDS = 20


        def probe(function, case, observe):
            (implementation,) = case
            with open(function.__code__.co_filename, encoding="utf-8") as stream:
                test = stream.read()
            folder = _tempfile.mkdtemp(dir="/work")
            with open(_os.path.join(folder, "parallel_tools.py"), "w", encoding="utf-8") as stream:
                stream.write(implementation)
            # The import comes after the student's lines, so that their line
            # numbers stay those of the cell, and a parallel_sum of their own
            # cannot replace the one under test.
            with open(_os.path.join(folder, "test_answer.py"), "w", encoding="utf-8") as stream:
                stream.write(test + "\\n\\nfrom parallel_tools import parallel_sum\\n")
            with open(_os.path.join(folder, "pytest_report.py"), "w", encoding="utf-8") as stream:
                stream.write(_PYTEST)
            report = _os.path.join(folder, "report.json")
            try:
                _subprocess.run(
                    [_sys.executable, "pytest_report.py", report],
                    cwd=folder, timeout=_SECONDS, stdin=_subprocess.DEVNULL,
                )
            except _subprocess.TimeoutExpired:
                return {"timed_out": _SECONDS}
            try:
                with open(report, encoding="utf-8") as stream:
                    seen = _json.load(stream)
            except (OSError, ValueError):
                return {"pytest": None}
            failure = seen.get("failure")
            if failure and isinstance(failure.get("line"), int):
                failure["line"] = cell_line(failure["line"])
            if failure and failure.get("raised") == "NotImplementedError":
                return {"stub": True}
            return seen
        ''',
        judge=_judge_test,
        cpus=2,
        timeout=75,
    )
)
