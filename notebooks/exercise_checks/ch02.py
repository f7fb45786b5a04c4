"""Exercises of notebook 02 (processes and pools).

Each exercise is checked by :func:`dockermagic.grading.check`: the student's
cell runs in a fresh container on inputs drawn on the host; the right answers
are known on the host by construction and never enter the container.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from dockermagic.grading import (
    Case,
    Exercise,
    describe_observation,
    register_exercise,
    value_judge,
)
from exercise_checks import kind_words

NOTEBOOK = "02-processes-and-pools"

# -- exit_codes ---------------------------------------------------------------------------

#: Seconds a target waits for all the others to have started.
_TOGETHER_SECONDS = 5.0


def _exit_codes_case(
    rng: random.Random, kinds: list[str], taken: set[int]
) -> tuple[list[list[Any]], list[int]]:
    """Targets of the given kinds in a random order, and their exit codes."""
    rng.shuffle(kinds)
    specs: list[list[Any]] = []
    codes: list[int] = []
    for kind in kinds:
        if kind == "return":
            specs.append([kind, 0])
            codes.append(0)
        elif kind == "raise":
            specs.append([kind, 0])
            codes.append(1)
        elif kind == "signal":
            number = rng.choice([9, 15])  # SIGKILL, SIGTERM
            specs.append([kind, number])
            codes.append(-number)
        else:  # "exit" (sys.exit) or "os_exit"
            code = rng.choice(sorted(set(range(2, 100)) - taken))
            taken.add(code)
            specs.append([kind, code])
            codes.append(code)
    return specs, codes


def _exit_codes_cases(rng: random.Random) -> list[Case]:
    taken: set[int] = set()
    first, first_codes = _exit_codes_case(rng, ["return", "exit", "os_exit", "return"], taken)
    second, second_codes = _exit_codes_case(rng, ["raise", "signal", "exit"], taken)
    # A target that finds the others did not start with it exits with this code
    # instead of its own, so the codes themselves show processes run one by one.
    late = rng.randint(101, 126)
    return [
        Case(
            (first, late, _TOGETHER_SECONDS),
            "four targets that return or call sys.exit() or os._exit()",
            {"codes": first_codes, "late": late},
        ),
        Case(
            (second, late, _TOGETHER_SECONDS),
            "three targets: one raises, one is killed by a signal, one calls sys.exit()",
            {"codes": second_codes, "late": late},
        ),
        Case(
            ([], late, _TOGETHER_SECONDS), "an empty list of targets", {"codes": [], "late": late}
        ),
    ]


def _compare_exit_codes(case: Case, value: Any, kind: str) -> str:
    want: list[int] = case.expected["codes"]
    if kind != "list" or not isinstance(value, list):
        return f"{case.label}: return a list of exit codes, not {kind_words(kind)}"
    if len(value) != len(want):
        return (
            f"{case.label}: {len(value)} exit codes came back for {len(want)} targets; "
            "return one per target, in the order of the targets"
        )
    if value == want:
        return ""
    if any(code is None for code in value):
        return (
            f"{case.label}: some exit codes are None: a process has one only once it has "
            "ended, so join() every process before reading its exitcode"
        )
    if case.expected["late"] in value:
        return (
            f"{case.label}: the targets did not all run at the same time (each one waits "
            "until all of them have started): start every process before joining any"
        )
    return f"{case.label}: some exit codes are not right: read each process's exitcode after join()"


exit_codes = register_exercise(
    Exercise(
        id=f"{NOTEBOOK}/exit_codes",
        function="exit_codes",
        cases=_exit_codes_cases,
        probe="""
        import multiprocessing as _multiprocessing
        import os as _os
        import sys as _sys
        import threading as _threading


        class _Target:
            # A function of no arguments, as the exercise says; an object so that
            # it can also be sent to a child started with "spawn" or "forkserver".
            def __init__(self, barrier, kind, code, late, number, parent):
                self.barrier, self.kind, self.code, self.late = barrier, kind, code, late
                self.parent = parent
                self.__name__ = self.__qualname__ = f"target_{number}"

            def __repr__(self):
                return f"<function {self.__name__}>"

            def __call__(self):
                if _os.getpid() == self.parent:
                    raise RuntimeError(
                        "a target ran in the checking process itself, not in a Process of its own"
                    )
                try:
                    self.barrier.wait()
                except _threading.BrokenBarrierError:
                    _os._exit(self.late)
                if self.kind == "exit":
                    _sys.exit(self.code)
                if self.kind == "os_exit":
                    _os._exit(self.code)
                if self.kind == "raise":
                    raise ValueError("this target fails on purpose")
                if self.kind == "signal":
                    _os.kill(_os.getpid(), self.code)


        def probe(function, case, observe):
            specs, late, seconds = case
            # Every target waits here until all of them run: the exit codes are
            # right only when the processes really ran at the same time. (A
            # barrier made for "spawn" also works in children started otherwise.)
            context = _multiprocessing.get_context("spawn")
            barrier = context.Barrier(max(1, len(specs)), timeout=seconds)
            targets = [
                _Target(barrier, kind, code, late, number, _os.getpid())
                for number, (kind, code) in enumerate(specs, 1)
            ]
            return observe(lambda: function(targets))
        """,
        judge=value_judge(_compare_exit_codes),
        # Processes run one by one wait twice for the others (see above).
        timeout=30,
    )
)

# -- pool_map -----------------------------------------------------------------------------


def _pool_map_cases(rng: random.Random) -> list[Case]:
    cases = []
    for label, count, workers in (
        ("many items", rng.randint(20, 40), rng.choice([2, 3])),
        ("fewer items than workers", rng.randint(1, 2), rng.choice([3, 4])),
        ("no items", 0, 2),
    ):
        items = [rng.randint(-50, 50) for _ in range(count)]
        a, b = rng.randint(2, 9), rng.randint(-20, 20)
        cases.append(
            Case(
                (items, workers, a, b),
                f"{label} (workers={workers})",
                [a * x + b for x in items],
            )
        )
    return cases


def _judge_pool_map(
    cases: Sequence[Case], observations: Sequence[Mapping[str, Any]]
) -> tuple[int, str]:
    right, first = 0, ""
    for case, seen in zip(cases, observations, strict=True):
        problem = describe_observation(case, seen) or _compare_pool_map(case, seen)
        if problem:
            first = first or problem
        else:
            right += 1
    return right, first


def _compare_pool_map(case: Case, seen: Mapping[str, Any]) -> str:
    value, kind = seen.get("value"), str(seen.get("type", ""))
    want: list[int] = case.expected
    workers = case.args[1]
    if kind != "list" or not isinstance(value, list):
        return f"{case.label}: return a list of the results, not {kind_words(kind)}"
    if len(value) != len(want):
        return (
            f"{case.label}: {len(value)} results came back for {len(want)} items; "
            "apply func to every item"
        )
    # func returns (result, pid of the process that ran it), so the probe
    # sees which processes did the work.
    if not all(isinstance(pair, list) and len(pair) == 2 for pair in value):
        return f"{case.label}: the results are not what func returned; return func(item) unchanged"
    results = [pair[0] for pair in value]
    if results != want:
        if sorted(results) == sorted(want):
            return (
                f"{case.label}: the results are not in the order of the items "
                "(pool.map keeps that order)"
            )
        return f"{case.label}: the results are not func(item) for each item"
    # Which processes did the work is seen inside the student's program, so a
    # cheat could fake it; it is only an extra requirement on top of results
    # that are compared here, for inputs the container did not know in advance.
    pids = {pair[1] for pair in value}
    if seen.get("parent") in pids:
        return (
            f"{case.label}: the results are right, but some were computed in the "
            "calling process, not by the pool's workers"
        )
    if len(pids) > workers:
        return (
            f"{case.label}: the results are right, but more processes than workers={workers} "
            "did the work: make one pool of exactly `workers` processes"
        )
    return ""


pool_map = register_exercise(
    Exercise(
        id=f"{NOTEBOOK}/pool_map",
        function="pool_map",
        cases=_pool_map_cases,
        probe="""
        import functools as _functools
        import os as _os


        import time as _time


        def _affine(a, b, x):
            # A little wait, so that every process of the pool gets some items.
            _time.sleep(0.02)
            return a * x + b, _os.getpid()


        def probe(function, case, observe):
            items, workers, a, b = case
            func = _functools.partial(_affine, a, b)
            seen = observe(lambda: function(func, list(items), workers))
            seen["parent"] = _os.getpid()
            return seen
        """,
        judge=_judge_pool_map,
    )
)
