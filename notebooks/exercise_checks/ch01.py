"""Exercises of notebook 01 (running external programs with subprocess).

Each exercise is checked by :func:`dockermagic.grading.check`: the student's
cell runs in a fresh container on inputs drawn on the host; the right answers
are known on the host by construction and never enter the container.
"""

from __future__ import annotations

import random
import shlex
from typing import Any

from dockermagic.grading import Case, Exercise, register_exercise, value_judge
from exercise_checks import kind_words

NOTEBOOK = "01-subprocess"

_WORDS = ["pear", "apple", "fig", "kiwi", "banana", "cherry", "date", "Apple", "lime", "plum"]


def _run_tool_cases(rng: random.Random) -> list[Case]:
    word = rng.choice(_WORDS)
    code = rng.randint(3, 120)
    script = f"echo {word}; echo noise >&2; exit {code}"
    missing = f"/no/such/{rng.choice(_WORDS)}"
    return [
        Case((["echo", word],), f"`echo {word}`", (0, f"{word}\n")),
        Case((["sh", "-c", script],), f"`sh -c {shlex.quote(script)}`", (code, f"{word}\n")),
        # GNU ls exits with 2 when a folder does not exist.
        Case((["ls", missing],), f"`ls {missing}`", (2, "")),
    ]


def _compare_run_tool(case: Case, value: Any, kind: str) -> str:
    if kind not in ("tuple", "list") or not isinstance(value, list):
        return (
            f"{case.label}: return a tuple of two things: (exit code, standard output text), "
            f"not {kind_words(kind)}"
        )
    if len(value) != 2:
        return (
            f"{case.label}: your {kind} has {len(value)} items; return two: "
            "(exit code, standard output text)"
        )
    code, output = value
    want_code, want_output = case.expected
    if not isinstance(code, int) or isinstance(code, bool):
        return f"{case.label}: the first item should be the exit code, a number"
    if not isinstance(output, str):
        return f"{case.label}: the second item should be the standard output as text (str)"
    if code != want_code:
        return f"{case.label}: the exit code is not right"
    if output != want_output:
        if "noise" in output:
            return f"{case.label}: the output holds standard error too; return only standard output"
        return f"{case.label}: the output is not right (standard output, as text)"
    return ""


run_tool = register_exercise(
    Exercise(
        id=f"{NOTEBOOK}/run_tool",
        function="run_tool",
        cases=_run_tool_cases,
        probe="""
        def probe(function, case, observe):
            argv = list(case[0])
            return observe(lambda: function(argv))
        """,
        judge=value_judge(_compare_run_tool),
    )
)


def _sort_words_cases(rng: random.Random) -> list[Case]:
    many = [rng.choice(_WORDS) for _ in range(rng.randint(20, 40))]
    first, second, third = rng.sample(_WORDS, 3)
    few = [first, second, first, third]
    return [
        Case((few,), "a short list with a repeated word", sorted(set(few))),
        Case(([],), "an empty list", []),
        Case((many,), "a long list", sorted(set(many))),
    ]


def _compare_sort_words(case: Case, value: Any, kind: str) -> str:
    if kind != "list" or not isinstance(value, list):
        return (
            f"{case.label}: return a list of strings (split the program's output), "
            f"not {kind_words(kind)}"
        )
    if value != case.expected:
        # Never the right count or words: only what is wrong with the student's.
        if len(value) != len(case.expected):
            return (
                f"{case.label}: the list has the wrong number of words; "
                "look at duplicates, empty input and the trailing newline"
            )
        if sorted(map(str, value)) == sorted(case.expected):
            return f"{case.label}: the words are not in the right order"
        return (
            f"{case.label}: the words are not the words given, as they were "
            "(one word per line, without the newline)"
        )
    return ""


# The probe counts processes started through subprocess, however they are
# started (run, check_output and Popen all create a Popen). The count lives
# in the student's process, so a cheat could fake it, but never turns a
# wrong list into a right one: the values are compared on the host.
_COUNT_POPEN = """
import subprocess as _subprocess

_started = []


class _CountingPopen(_subprocess.Popen):
    def __init__(self, *args, **kwargs):
        _started.append(args[0] if args else kwargs.get("args"))
        super().__init__(*args, **kwargs)


_subprocess.Popen = _CountingPopen
"""


def _judge_sort_words(cases: Any, observations: Any) -> tuple[int, str]:
    right, hint = value_judge(_compare_sort_words)(cases, observations)
    if hint:
        return right, hint
    if sum(int(seen.get("processes", 0)) for seen in observations) < 2:
        return 0, "the lists are right, but the sorting must be done by the `sort` program"
    return right, ""


sort_words = register_exercise(
    Exercise(
        id=f"{NOTEBOOK}/sort_words",
        function="sort_words",
        cases=_sort_words_cases,
        prelude=_COUNT_POPEN,
        probe="""
        def probe(function, case, observe):
            before = len(_started)
            seen = observe(lambda: function(list(case[0])))
            seen["processes"] = len(_started) - before
            return seen
        """,
        judge=_judge_sort_words,
    )
)
