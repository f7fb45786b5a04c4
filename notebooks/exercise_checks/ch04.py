"""Checks for notebook 04 (managers and proxies)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from exercise_checks import Verdict, check_in_container

_ADD_TAG = """
from multiprocessing import Manager, Process


def _check():
    with Manager() as manager:
        shared = manager.dict({"report.pdf": ["draft"], "photo.png": []})
        for key, tag in [("report.pdf", "final"), ("photo.png", "holiday"), ("report.pdf", "sent")]:
            child = Process(target=add_tag, args=(shared, key, tag))
            child.start()
            child.join()
            if child.exitcode != 0:
                return {"child_failed": True}
        got = {key: list(value) for key, value in shared.items()}
    return {
        "right": got == {"report.pdf": ["draft", "final", "sent"], "photo.png": ["holiday"]},
        "lost": sum(len(v) for v in got.values()) < 4,
    }
"""


def check_add_tag(add_tag: Callable[[Any, str, str], None]) -> Verdict:
    """Check ``add_tag(shared, key, tag)`` from child processes on a manager dict."""

    def judge(report: dict[str, Any]) -> Verdict:
        if report.get("child_failed"):
            return Verdict(False, "a process running your function failed (run it once yourself)")
        if report["lost"]:
            return Verdict(
                False,
                "tags were lost: `shared[key]` hands you a copy of the list; changing the copy "
                "does not send anything to the manager",
            )
        if not report["right"]:
            return Verdict(
                False, "the lists are not right: append the tag at the end, keep the others"
            )
        return Verdict(True)

    return check_in_container({"add_tag": add_tag}, _ADD_TAG, judge)


_SQUARES = """
def _check():
    numbers = [3, -4, 10, 0, 7]
    got = squares(numbers)
    report = {"type": type(got).__name__}
    if isinstance(got, dict):
        report["right"] = got == {n: n * n for n in numbers}
    return report
"""


def check_squares(squares: Callable[[list[int]], Any]) -> Verdict:
    """Check ``squares(numbers)``: a plain dict back, filled by processes through a manager."""

    def judge(report: dict[str, Any]) -> Verdict:
        if report["type"] == "DictProxy":
            return Verdict(
                False,
                "you returned the DictProxy itself; it stops working when its manager shuts "
                "down at the end of the `with` block: return a plain dict copy",
            )
        if report["type"] != "dict":
            return Verdict(False, f"return a dict (you returned a {report['type']})")
        if not report["right"]:
            return Verdict(
                False, "the dict is not right: one entry per number, number -> its square"
            )
        return Verdict(True)

    return check_in_container({"squares": squares}, _SQUARES, judge)
