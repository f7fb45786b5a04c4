"""Exercises of notebook 03 (shared state: races, locks and their cost).

Each exercise is checked by :func:`dockermagic.grading.check`: the student's
cell runs in a fresh container on inputs drawn on the host; the right answers
are known on the host by construction and never enter the container.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from dockermagic.grading import Case, Exercise, register_exercise
from exercise_checks import IN_CHILDREN, describe_child, joined, kind_words

NOTEBOOK = "03-shared-state"

# -- safe_increment -----------------------------------------------------------------------


def _safe_increment_cases(rng: random.Random) -> list[Case]:
    cases = []
    # Three rounds: a race loses increments in nearly every round, and one is enough.
    for _ in range(3):
        # A different n for each process: the total is right only when every
        # process added exactly its own n.
        steps = [rng.randint(15_000, 25_000) for _ in range(4)]
        cases.append(Case((steps,), "4 processes at once, each with its own n", sum(steps)))
    return cases


def _judge_safe_increment(
    cases: Sequence[Case], observations: Sequence[Mapping[str, Any]]
) -> tuple[int, str]:
    right, first = 0, ""
    for case, seen in zip(cases, observations, strict=True):
        problem = describe_child(case, seen)
        if not problem:
            total = seen.get("value")
            if total != case.expected:
                problem = (
                    f"{case.label}: increments were lost while the processes ran your function "
                    "at once: reading, adding and writing back must happen as one step, "
                    "under the counter's lock"
                    if isinstance(total, int) and total < case.expected
                    else f"{case.label}: the counter went up by more than n for each call"
                )
        if problem:
            first = first or problem
        else:
            right += 1
    return right, first


safe_increment = register_exercise(
    Exercise(
        id=f"{NOTEBOOK}/safe_increment",
        function="safe_increment",
        cases=_safe_increment_cases,
        probe=joined(
            IN_CHILDREN,
            """
            from multiprocessing import Value as _Value


            def probe(function, case, observe):
                (steps,) = case
                counter = _Value("i", 0)
                seen = in_children([lambda n=n: function(counter, n) for n in steps])
                return first_problem(seen) or {"value": counter.value, "type": "int"}
            """,
        ),
        judge=_judge_safe_increment,
        cpus=2,
        timeout=30,
    )
)

# -- count_evens --------------------------------------------------------------------------


def _count_evens_cases(rng: random.Random) -> list[Case]:
    cases = []
    for label, sizes in (
        ("4 processes at once", [rng.randint(2_000, 5_000) for _ in range(4)]),
        ("3 processes at once, one of them with an empty list", [rng.randint(50, 500), 0, 9]),
    ):
        lists = [[rng.randrange(1_000) for _ in range(size)] for size in sizes]
        expected = sum(1 for numbers in lists for number in numbers if number % 2 == 0)
        cases.append(Case((lists,), label, expected))
    return cases


def _judge_count_evens(
    cases: Sequence[Case], observations: Sequence[Mapping[str, Any]]
) -> tuple[int, str]:
    right, first = 0, ""
    for case, seen in zip(cases, observations, strict=True):
        problem = describe_child(case, seen) or _compare_count_evens(case, seen)
        if problem:
            first = first or problem
        else:
            right += 1
    return right, first


def _compare_count_evens(case: Case, seen: Mapping[str, Any]) -> str:
    total, kind = seen.get("value"), str(seen.get("type", ""))
    if kind != "int" or not isinstance(total, int):
        return f"{case.label}: the counter should hold a whole number, not {kind_words(kind)}"
    if total != case.expected:
        return f"{case.label}: the total is wrong: add how many of the numbers are even"
    # How often the lock was taken is counted inside the student's program, so
    # a cheat could fake it; it is only an extra requirement on top of a total
    # that is compared here, for lists the container did not know in advance.
    calls, taken = len(case.args[0]), seen.get("locked", 0)
    if taken > calls:
        return (
            f"{case.label}: the total is right, but your function took the counter's lock "
            "more than once per call: count in a local variable, then update the counter once"
        )
    if taken == 0:
        return (
            f"{case.label}: the total is right, but your function never took the counter's "
            "lock (counter.get_lock()): without it, updates can be lost"
        )
    return ""


# A stand-in for Value("q", 0), named as its class is (error messages read
# the same): the same .value and .get_lock(), and it counts how often its
# lock is taken, in shared memory (by every process).
_COUNTING_COUNTER = """
from multiprocessing import Lock as _Lock
from multiprocessing import Value as _Value


class _Guard:
    def __init__(self, counter):
        self._counter = counter

    def acquire(self, *args, **kwargs):
        taken = self._counter._lock.acquire(*args, **kwargs)
        if taken:
            self._counter._taken.value += 1
        return taken

    def release(self):
        self._counter._lock.release()

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()


class Synchronized:
    def __init__(self):
        self._value = _Value("q", 0, lock=False)
        self._lock = _Lock()
        self._taken = _Value("i", 0, lock=False)

    @property
    def value(self):
        return self._value.value

    @value.setter
    def value(self, new):
        self._value.value = new

    def get_lock(self):
        return _Guard(self)

    def __repr__(self):
        return f"<Synchronized wrapper for c_long({self.value})>"
"""

count_evens = register_exercise(
    Exercise(
        id=f"{NOTEBOOK}/count_evens",
        function="count_evens",
        cases=_count_evens_cases,
        probe=joined(
            IN_CHILDREN,
            _COUNTING_COUNTER,
            """
            def probe(function, case, observe):
                (lists,) = case
                counter = Synchronized()
                seen = in_children([lambda numbers=numbers: function(counter, numbers) for numbers in lists])
                problem = first_problem(seen)
                if problem is not None:
                    return problem
                total = counter.value
                return {"value": total, "type": type(total).__name__, "locked": counter._taken.value}
            """,
        ),
        judge=_judge_count_evens,
        cpus=2,
        timeout=20,
    )
)
