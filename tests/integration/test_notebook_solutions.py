"""The notebooks' exercise checks accept the teacher's reference answers.

nbval runs the notebooks as stored, with the students' stubs, and their
stored outputs say "❌ not yet": so the same checks are known to reject the
stubs. Here every answer in ``notebooks/solutions`` must be "✅ correct":
``solutions/chNN.py`` answers the exercises of notebook ``NN-*``, and is
checked as a student's cell would be (in a container, judged on the host).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dockermagic.grading import Answer, Exercise, check
from dockermagic.grading.course import load_course

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"

COURSE = load_course(NOTEBOOKS)


def test_every_exercise_of_the_notebooks_is_covered() -> None:
    assert len(COURSE.exercises) == 13
    for item in COURSE.exercises:
        assert (NOTEBOOKS / "solutions" / f"ch{item.id[:2]}.py").is_file(), item.id


@pytest.mark.parametrize("item", COURSE.exercises, ids=lambda item: item.id)
def test_reference_answer_passes_the_check(item: Exercise) -> None:
    solution = NOTEBOOKS / "solutions" / f"ch{item.id[:2]}.py"
    verdict = check(item, Answer(solution.read_text(encoding="utf-8"), origin=solution.name))
    assert verdict.ok, repr(verdict)
    assert verdict.score == verdict.weight
    assert repr(verdict) == "✅ correct"
