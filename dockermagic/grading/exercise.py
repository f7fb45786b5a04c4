"""An exercise, and how a check of it decides: :class:`Exercise`, :class:`Verdict`.

A course declares its exercises (in its own modules, e.g. a notebook folder's
``exercise_checks``): for each one, the function a student writes, the cases
it is tried on, a *probe* (container code that calls the function on each case
and reports what it saw) and a *judge* (host code that compares what was seen
with what is right). The split is the point: the student's code runs only in a
container and hands back data; the expected answers never enter that
container, and the verdict is decided on the host (:mod:`dockermagic.grading.check`).

Pure data, no Docker calls.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dockermagic.errors import InvalidArgumentError
from dockermagic.status import Word

__all__ = [
    "STUB_HINT",
    "Case",
    "Compare",
    "Exercise",
    "Judge",
    "Outcome",
    "Verdict",
    "describe_observation",
    "exercise",
    "exercises",
    "find_exercise",
    "register_exercise",
    "value_judge",
]


class Outcome(Word):
    """How an exercise of a submission ended."""

    PASSED = "passed"
    FAILED = "failed"
    MISSING = "missing"
    TIMEOUT = "timeout"
    ERROR = "error"


@dataclass(frozen=True)
class Verdict:
    """The outcome of a check, decided on the host.

    Shown in a notebook as one line: ``✅ correct`` or ``❌ not yet: <hint>``.

    Attributes:
        outcome: passed, failed, missing, timeout or error.
        hint: What went wrong, in words (never the answer).
        score: Points earned (``weight`` when passed; a share for partly right).
        weight: Points the exercise is worth.
        output: What the program printed (for the teacher's report).
        duration: Seconds the check took.
    """

    outcome: Outcome
    hint: str = ""
    score: float = 0.0
    weight: float = 1.0
    output: str = ""
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        """True when the answer is right."""
        return self.outcome is Outcome.PASSED

    def __bool__(self) -> bool:
        return self.ok

    def __repr__(self) -> str:
        return "✅ correct" if self.ok else f"❌ not yet: {self.hint}"


@dataclass(frozen=True)
class Case:
    """One input an answer is tried on.

    Attributes:
        args: Positional arguments, JSON-encodable (the probe turns them into
            what the function takes). Only these enter the container.
        label: How a hint names this case (e.g. ``"`echo hello`"``).
        expected: The right answer, known on the host by construction; it
            never enters the container.
    """

    args: Sequence[Any]
    label: str = ""
    expected: Any = None


#: ``judge(cases, observations) -> (cases right, hint)``; the hint names the
#: first thing that is wrong ('' when all are right).
Judge = Callable[[Sequence[Case], Sequence[Mapping[str, Any]]], tuple[int, str]]

#: ``compare(case, value, type_name) -> hint`` for a case whose call returned;
#: '' when the value is right.
Compare = Callable[[Case, Any, str], str]

#: What a stub (``raise NotImplementedError``) is told.
STUB_HINT = "replace the `raise NotImplementedError` with your code, run that cell, then the check"


def describe_observation(case: Case, observation: Mapping[str, Any]) -> str:
    """The words for an observation that is not a value (a raise, an exit, a stub).

    An exception is named with its type, message and the student's own line,
    so that a typo is not reported as a wrong answer.

    Args:
        case: The case.
        observation: What the probe saw.

    Returns:
        The hint, or '' when the observation holds a value.
    """
    where = f"{case.label}: " if case.label else ""
    if observation.get("stub"):
        return STUB_HINT
    if "raised" in observation:
        line = observation.get("line")
        at = f" (line {line} of your cell)" if isinstance(line, int) else ""
        message = str(observation.get("message") or "")
        said = f": {message}" if message else ""
        return f"{where}your function raised {observation['raised']}{said}{at}"
    if "exit" in observation:
        return (
            f"{where}your function called sys.exit({observation['exit']}); return a value instead"
        )
    if "value" not in observation:
        return f"{where}the check saw nothing it understands"
    return ""


def value_judge(compare: Compare) -> Judge:
    """A judge that checks each case's returned value with ``compare``.

    A case that raised, exited or is a stub gets :func:`describe_observation`'s
    words; only a returned value is compared.

    Args:
        compare: Decides on one returned value.

    Returns:
        The judge.
    """

    def judge(cases: Sequence[Case], observations: Sequence[Mapping[str, Any]]) -> tuple[int, str]:
        right = 0
        first = ""
        for case, seen in zip(cases, observations, strict=True):
            problem = describe_observation(case, seen) or compare(
                case, seen.get("value"), str(seen.get("type", ""))
            )
            if problem:
                first = first or problem
            else:
                right += 1
        return right, first

    return judge


@dataclass(frozen=True)
class Exercise:
    """One exercise of a course.

    Attributes:
        id: Stable across notebook edits: ``<notebook>/<function>``, e.g.
            ``01-subprocess/run_tool``. Exercise cells carry it in their metadata.
        function: The name the student's answer must define.
        cases: Makes the cases from a random generator (the host's, seeded
            per check, so that answers cannot be written for known inputs).
        probe: Python code for the container defining ``probe(answer, case,
            observe)`` which returns a JSON-ready dict of what it saw;
            ``observe(call)`` runs a call and captures its value or exception;
            ``cell_line(n)`` turns line ``n`` of ``/code/answer.py`` into the
            student's own line number.
        judge: Decides on the host (see :data:`Judge`).
        prelude: Code run in the container before the answer is imported
            (e.g. counting wrappers).
        weight: Points the exercise is worth.
        timeout: Seconds the check may take (an endless loop ends as timeout).
        cpus: CPUs the check's container gets.
        partial: Give a share of the points for cases that are right.
    """

    id: str
    function: str
    cases: Callable[[random.Random], Sequence[Case]]
    probe: str
    judge: Judge
    prelude: str = ""
    weight: float = 1.0
    timeout: float = 10.0
    cpus: float = 1.0
    partial: bool = True
    tags: Mapping[str, str] = field(default_factory=dict)


_exercises: dict[str, Exercise] = {}


def register_exercise(item: Exercise) -> Exercise:
    """Make an exercise known by its id (a course module does this at import).

    Args:
        item: The exercise.

    Returns:
        It, unchanged.

    Raises:
        InvalidArgumentError: The id is not ``<notebook>/<function>``.
    """
    notebook, _, function = item.id.rpartition("/")
    if not notebook or function != item.function:
        raise InvalidArgumentError("exercise id", item.id, f"must be '<notebook>/{item.function}'")
    _exercises[item.id] = item
    return item


def exercise(exercise_id: str) -> Exercise:
    """A registered exercise.

    Args:
        exercise_id: Its id.

    Returns:
        The exercise.

    Raises:
        InvalidArgumentError: No such exercise is registered.
    """
    try:
        return _exercises[exercise_id]
    except KeyError:
        raise InvalidArgumentError("exercise", exercise_id, "no such exercise") from None


def find_exercise(name: str) -> Exercise:
    """A registered exercise by its id, or by its function's name when that is unique.

    Args:
        name: ``01-subprocess/run_tool`` or ``run_tool``.

    Returns:
        The exercise.

    Raises:
        InvalidArgumentError: None or several match (the words say which).
    """
    if name in _exercises:
        return _exercises[name]
    found = [item for item in _exercises.values() if item.function == name]
    if len(found) == 1:
        return found[0]
    if found:
        ids = ", ".join(sorted(item.id for item in found))
        raise InvalidArgumentError("exercise", name, f"several exercises match: {ids}")
    hint = "no such exercise" if _exercises else "none is known: import the course's checks first"
    raise InvalidArgumentError("exercise", name, hint)


def exercises() -> list[Exercise]:
    """Every registered exercise, by id.

    Returns:
        The exercises.
    """
    return [_exercises[key] for key in sorted(_exercises)]
