"""Checks for notebook 02 (processes and pools)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from exercise_checks import Verdict, check_in_container

_EXIT_CODES = """
import os
import sys
import time


def _fine():
    time.sleep(0.6)


def _three():
    time.sleep(0.6)
    sys.exit(3)


def _hard_exit():
    time.sleep(0.6)
    os._exit(7)


def _fine_too():
    time.sleep(0.6)


def _check():
    started = time.monotonic()
    got = exit_codes([_fine, _three, _hard_exit, _fine_too])
    elapsed = time.monotonic() - started
    return {
        "list": isinstance(got, list),
        "right": list(got or []) == [0, 3, 7, 0],
        "length": len(got or []) == 4,
        "together": elapsed < 1.8,
    }
"""


def check_exit_codes(exit_codes: Callable[[list[Any]], Any]) -> Verdict:
    """Check ``exit_codes(targets)``: one process each, all at once, their exit codes."""

    def judge(report: dict[str, Any]) -> Verdict:
        if not report["list"] or not report["length"]:
            return Verdict(False, "return a list with one exit code per target, in order")
        if not report["right"]:
            return Verdict(False, "some exit codes are wrong: read them after join()")
        if not report["together"]:
            return Verdict(
                False,
                "the answer is right, but the processes ran one after another: "
                "start them all before joining any",
            )
        return Verdict(True)

    return check_in_container({"exit_codes": exit_codes}, _EXIT_CODES, judge)


_POOL_MAP = """
import os


def _square_and_pid(x):
    return x * x, os.getpid()


def _check():
    report = {}
    for workers in (2, 3):
        items = list(range(-5, 25))
        got = pool_map(_square_and_pid, items, workers)
        got = list(got)
        values = [value for value, _ in got]
        pids = {pid for _, pid in got}
        report[str(workers)] = {
            "values": values == [x * x for x in items],
            "sorted": values == sorted(x * x for x in items),
            "in_parent": os.getpid() in pids,
            "too_many": len(pids) > workers,
        }
    return report
"""


def check_pool_map(pool_map: Callable[..., Any]) -> Verdict:
    """Check ``pool_map(func, items, workers)``: in order, in at most ``workers`` processes."""

    def judge(report: dict[str, Any]) -> Verdict:
        for workers, part in report.items():
            if part["in_parent"]:
                return Verdict(
                    False, "some items were computed in the parent process, not in a pool"
                )
            if part["too_many"]:
                return Verdict(
                    False, f"with workers={workers}, more processes than that did the work"
                )
            if not part["values"]:
                hint = "keep the input order" if part["sorted"] else "apply func to every item"
                return Verdict(False, f"the results are not right: {hint}")
        return Verdict(True)

    return check_in_container({"pool_map": pool_map}, _POOL_MAP, judge)
