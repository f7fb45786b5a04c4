"""Exercises, checks and grading: student code only ever in containers, verdicts on the host.

* :mod:`~dockermagic.grading.exercise`: what an exercise is (function, cases,
  probe, judge, weight) and a :class:`Verdict`;
* :mod:`~dockermagic.grading.check`: one answer checked in a fresh container,
  judged on the host;
* :mod:`~dockermagic.grading.course`: a course folder's notebooks, their
  exercise cells (found by a stable id in the cell's metadata), the hand-out copy;
* :mod:`~dockermagic.grading.grade`: every student's every exercise, in
  parallel, as records and summaries.

The core of grading never imports IPython; the notebook side (finding a
student's answer among the cells run in a session) lives in
:mod:`dockermagic.magics`.
"""

from __future__ import annotations

from dockermagic.grading.answers import Answer, Cell, answer_from_cells, read_cells
from dockermagic.grading.check import check
from dockermagic.grading.exercise import (
    STUB_HINT,
    Case,
    Exercise,
    Judge,
    Outcome,
    Verdict,
    describe_observation,
    exercise,
    exercises,
    find_exercise,
    register_exercise,
    value_judge,
)

__all__ = [
    "STUB_HINT",
    "Answer",
    "Case",
    "Cell",
    "Exercise",
    "Judge",
    "Outcome",
    "Verdict",
    "answer_from_cells",
    "check",
    "describe_observation",
    "exercise",
    "exercises",
    "find_exercise",
    "read_cells",
    "register_exercise",
    "value_judge",
]
