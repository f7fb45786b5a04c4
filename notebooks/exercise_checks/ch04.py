"""Exercises of notebook 04 (managers and proxies).

Each exercise is checked by :func:`dockermagic.grading.check`: the student's
cell runs in a fresh container on inputs drawn on the host; the right answers
are known on the host by construction and never enter the container.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from dockermagic.grading import Case, Exercise, describe_observation, register_exercise
from exercise_checks import IN_CHILDREN, describe_child, joined, kind_words

NOTEBOOK = "04-managers-and-proxies"

_FILES = ["report.pdf", "photo.png", "notes.txt", "song.mp3", "plan.odt", "data.csv"]
_TAGS = ["draft", "final", "sent", "holiday", "work", "old", "todo", "shared", "big"]

# -- add_tag ------------------------------------------------------------------------------


def _add_tag_cases(rng: random.Random) -> list[Case]:
    cases = []
    for label, keys, calls, empty in (
        ("tags added to lists that may already hold some", 2, 3, False),
        ("tags added to an empty list and to others", 3, 5, True),
    ):
        names = rng.sample(_FILES, keys)
        start = {name: rng.sample(_TAGS, rng.randint(0, 2)) for name in names}
        if empty:
            start[names[0]] = []
        wanted = [[rng.choice(names), rng.choice(_TAGS)] for _ in range(calls)]
        wanted[-1][0] = wanted[0][0]  # one list gets two tags
        expected = {name: list(tags) for name, tags in start.items()}
        for name, tag in wanted:
            expected[name].append(tag)
        cases.append(
            Case(
                ([[name, tags] for name, tags in start.items()], wanted),
                f"{label}, one child process per tag",
                {"start": start, "final": expected},
            )
        )
    return cases


def _compare_add_tag(case: Case, seen: Mapping[str, Any]) -> str:
    entries = seen.get("value")
    if not isinstance(entries, list):
        return f"{case.label}: the check saw nothing it understands"
    final = {entry[0]: entry[2] for entry in entries}
    kinds = {entry[1] for entry in entries}
    start, want = case.expected["start"], case.expected["final"]
    if set(final) != set(want):
        return f"{case.label}: the dict's keys changed: add the tag to the list at shared[key] only"
    if kinds != {"list"}:
        odd = sorted(kinds - {"list"})[0]
        return f"{case.label}: shared[key] should stay a list of tags, not {kind_words(odd)}"
    if final == want:
        return ""
    if final == start:
        return (
            f"{case.label}: every tag was lost: shared[key] hands you a copy of the list, and "
            "changing the copy sends nothing to the manager: store the changed list back"
        )
    if all(sorted(final[key]) == sorted(want[key]) for key in want):
        return f"{case.label}: the lists hold the right tags, but append each at the end"
    if any(final[key][: len(tags)] != tags for key, tags in start.items()):
        return (
            f"{case.label}: tags that were already in a list went missing: "
            "keep them, and add the new tag after them"
        )
    return f"{case.label}: the lists are not right: append the tag to the list at shared[key]"


def _judge_add_tag(
    cases: Sequence[Case], observations: Sequence[Mapping[str, Any]]
) -> tuple[int, str]:
    right, first = 0, ""
    for case, seen in zip(cases, observations, strict=True):
        problem = describe_child(case, seen) or _compare_add_tag(case, seen)
        if problem:
            first = first or problem
        else:
            right += 1
    return right, first


add_tag = register_exercise(
    Exercise(
        id=f"{NOTEBOOK}/add_tag",
        function="add_tag",
        cases=_add_tag_cases,
        probe=joined(
            IN_CHILDREN,
            """
            from multiprocessing import Manager as _Manager


            def probe(function, case, observe):
                start, wanted = case
                with _Manager() as manager:
                    shared = manager.dict({key: list(tags) for key, tags in start})
                    # One child after another, as the notebook says: no race between them.
                    seen = in_children(
                        [lambda key=key, tag=tag: function(shared, key, tag) for key, tag in wanted],
                        together=False,
                    )
                    problem = first_problem(seen)
                    if problem is not None:
                        return problem
                    final = [
                        [key, type(value).__name__, value if isinstance(value, list) else None]
                        for key, value in shared.items()
                    ]
                return {"value": final, "type": "dict"}
            """,
        ),
        judge=_judge_add_tag,
    )
)

# -- squares ------------------------------------------------------------------------------


def _squares_cases(rng: random.Random) -> list[Case]:
    cases = []
    for label, count in (
        ("a few numbers", rng.randint(4, 6)),
        ("one number", 1),
        ("no numbers", 0),
    ):
        numbers = rng.sample(range(-30, 31), count)
        cases.append(Case((numbers,), label, sorted([n, n * n] for n in numbers)))
    return cases


def _compare_squares(case: Case, value: Any, kind: str) -> str:
    if kind == "DictProxy":
        return (
            f"{case.label}: you returned the DictProxy itself; it stops working when its "
            "manager shuts down at the end of the `with` block: return a plain dict copy"
        )
    if kind != "dict" or not isinstance(value, list):
        return f"{case.label}: return a dict, not {kind_words(kind)}"
    # The probe sends a dict as its [key, value] pairs: the keys keep their type.
    if any(not isinstance(key, int) or isinstance(key, bool) for key, _ in value):
        return f"{case.label}: the keys should be the numbers themselves (int)"
    got = sorted(value)
    want: list[list[int]] = case.expected
    if got == want:
        return ""
    if len(got) < len(want) and all(pair in want for pair in got):
        return (
            f"{case.label}: some numbers are missing from the dict: every number needs its "
            "entry (and copy the results only after every process has been joined)"
        )
    return f"{case.label}: the dict is not right: one entry per number, number -> its square"


#: What using a proxy whose manager has shut down raises.
_GONE_MANAGER = ("BrokenPipeError", "ConnectionRefusedError", "FileNotFoundError", "EOFError")


def _judge_squares(
    cases: Sequence[Case], observations: Sequence[Mapping[str, Any]]
) -> tuple[int, str]:
    right, first = 0, ""
    for case, seen in zip(cases, observations, strict=True):
        problem = describe_observation(case, seen) or _compare_squares(
            case, seen.get("value"), str(seen.get("type", ""))
        )
        if seen.get("raised") in _GONE_MANAGER:
            problem += "; was a proxy used after its manager's `with` block ended?"
        if problem:
            first = first or problem
        else:
            right += 1
    return right, first


squares = register_exercise(
    Exercise(
        id=f"{NOTEBOOK}/squares",
        function="squares",
        cases=_squares_cases,
        probe="""
        def probe(function, case, observe):
            (numbers,) = case
            got = []
            seen = observe(lambda: got.append(function(list(numbers))) or got[0])
            if got and isinstance(got[0], dict):
                # As [key, value] pairs: JSON would turn the keys into strings.
                seen["value"] = [[key, value] for key, value in got[0].items()]
                seen["type"] = "dict"
            return seen
        """,
        judge=_judge_squares,
    )
)
