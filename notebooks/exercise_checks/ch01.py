"""Checks for notebook 01 (running external programs with subprocess)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from exercise_checks import Verdict, check_in_container

# Counts the processes started through subprocess, however they are started
# (run, check_output and Popen all create a Popen).
_COUNT_POPEN = """
import subprocess as _subprocess

_started = []


class _CountingPopen(_subprocess.Popen):
    def __init__(self, *args, **kwargs):
        _started.append(args[0] if args else kwargs.get("args"))
        super().__init__(*args, **kwargs)


_subprocess.Popen = _CountingPopen
"""

_RUN_TOOL = """
def _check():
    cases = [
        (["echo", "hello"], (0, "hello\\n")),
        (["sh", "-c", "echo partial; exit 4"], (4, "partial\\n")),
        (["ls", "/no/such/folder"], (2, "")),
    ]
    report = {"wrong": [], "types": True}
    for argv, expected in cases:
        try:
            got = run_tool(argv)
        except NotImplementedError:
            raise
        except Exception as exc:
            report["wrong"].append({"argv": argv, "raised": type(exc).__name__})
            continue
        if not (isinstance(got, tuple) and len(got) == 2):
            report["types"] = False
        elif tuple(got) != expected:
            report["wrong"].append({"argv": argv, "part": "code" if got[0] != expected[0] else "output"})
    return report
"""


def check_run_tool(run_tool: Callable[[list[str]], Any]) -> Verdict:
    """Check ``run_tool(argv) -> (exit code, stdout)`` in a container."""

    def judge(report: dict[str, Any]) -> Verdict:
        if not report["types"]:
            return Verdict(False, "return a tuple of two things: (exit code, standard output text)")
        for wrong in report["wrong"]:
            argv = " ".join(wrong["argv"])
            if "raised" in wrong:
                return Verdict(
                    False,
                    f"`{argv}` made your function raise {wrong['raised']}; "
                    "a failing command should give its exit code, not an exception",
                )
            if wrong["part"] == "code":
                return Verdict(False, f"the exit code of `{argv}` is not right")
            return Verdict(
                False, f"the output of `{argv}` is not right (only standard output, as text)"
            )
        return Verdict(True)

    return check_in_container({"run_tool": run_tool}, _RUN_TOOL, judge)


_SORT_WORDS = """
def _check():
    import random
    rnd = random.Random(14)
    pool = ["pear", "apple", "fig", "kiwi", "banana", "cherry", "date", "Apple"]
    cases = [["b", "a", "b"], [], [rnd.choice(pool) for _ in range(40)]]
    report = {"wrong": 0, "processes": 0, "not_list": False}
    for words in cases:
        before = len(_started)
        got = sort_words(list(words))
        report["processes"] += len(_started) - before
        if not isinstance(got, list):
            report["not_list"] = True
        elif got != sorted(set(words)):
            report["wrong"] += 1
    return report
"""


def check_sort_words(sort_words: Callable[[list[str]], Any]) -> Verdict:
    """Check ``sort_words(words)``: sorted, without duplicates, by an external ``sort``."""

    def judge(report: dict[str, Any]) -> Verdict:
        if report["not_list"]:
            return Verdict(False, "return a list of strings (split the program's output)")
        if report["wrong"]:
            return Verdict(
                False,
                f"{report['wrong']} of 3 test lists came back wrong; look at empty input, "
                "duplicates and the trailing newline",
            )
        if report["processes"] < 2:
            return Verdict(
                False, "the answers are right, but the sorting must be done by the `sort` program"
            )
        return Verdict(True)

    return check_in_container({"sort_words": sort_words}, _SORT_WORDS, judge, prelude=_COUNT_POPEN)
