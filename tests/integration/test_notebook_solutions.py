"""The notebooks' exercise checks accept the teacher's reference answers.

nbval runs the notebooks as stored, with the students' stubs, and their
stored outputs say "❌ not yet": so the same checks are known to reject the
stubs. Here every answer in ``notebooks/solutions`` must be "✅ correct":
``solutions/chNN.py`` answers the exercises of notebook ``NN-*``, and is
checked as a student's cell would be (in a container, judged on the host).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from dockermagic.grading import Answer, Exercise, check
from dockermagic.grading.course import load_course

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"

# (chapter, check function, names of the answer objects it takes)
CASES = [
    ("ch02", "check_exit_codes", "exit_codes"),
    ("ch02", "check_pool_map", "pool_map"),
    ("ch03", "check_safe_increment", "safe_increment"),
    ("ch03", "check_count_evens", "count_evens"),
    ("ch04", "check_add_tag", "add_tag"),
    ("ch04", "check_squares", "squares"),
    ("ch05", "check_compress_file", "compress_file"),
    ("ch05", "check_verify_archive", "verify_archive"),
    ("ch06", "check_test_finds_bugs", "test_parallel_sum"),
    ("ch07", "check_shell_runner", "ShellRunner"),
    ("ch07", "check_explain", "explain"),
]


def _solutions(chapter: str) -> ModuleType:
    path = NOTEBOOKS / "solutions" / f"{chapter}.py"
    spec = importlib.util.spec_from_file_location(f"notebook_solutions_{chapter}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module", autouse=True)
def _checks_importable() -> None:
    sys.path.insert(0, str(NOTEBOOKS))
    yield
    sys.path.remove(str(NOTEBOOKS))


@pytest.mark.parametrize(("chapter", "check", "answer"), CASES, ids=[c[1] for c in CASES])
def test_reference_answer_is_accepted(chapter: str, check: str, answer: str) -> None:
    checks = importlib.import_module(f"exercise_checks.{chapter}")
    verdict = getattr(checks, check)(getattr(_solutions(chapter), answer))
    assert verdict, repr(verdict)
    assert repr(verdict) == "✅ correct"


COURSE = load_course(NOTEBOOKS)


@pytest.mark.parametrize("item", COURSE.exercises, ids=lambda item: item.id)
def test_reference_answer_passes_the_check(item: Exercise) -> None:
    solution = NOTEBOOKS / "solutions" / f"ch{item.id[:2]}.py"
    verdict = check(item, Answer(solution.read_text(encoding="utf-8"), origin=solution.name))
    assert verdict.ok, repr(verdict)
    assert verdict.score == verdict.weight
    assert repr(verdict) == "✅ correct"
