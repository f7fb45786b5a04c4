"""Checks for notebook 03 (shared state and locks)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from exercise_checks import Verdict, check_in_container

_SAFE_INCREMENT = """
from multiprocessing import Process, Value


def _check():
    n, processes = 20_000, 4
    exact = 0
    for _ in range(3):
        counter = Value("i", 0)
        children = [Process(target=safe_increment, args=(counter, n)) for _ in range(processes)]
        for child in children:
            child.start()
        for child in children:
            child.join()
        if any(child.exitcode != 0 for child in children):
            return {"child_failed": True}
        exact += counter.value == n * processes
    return {"exact_runs": exact}
"""


def check_safe_increment(safe_increment: Callable[[Any, int], None]) -> Verdict:
    """Check ``safe_increment(counter, n)`` under 4 competing processes, 3 times."""

    def judge(report: dict[str, Any]) -> Verdict:
        if report.get("child_failed"):
            return Verdict(False, "a process running your function failed (run it once yourself)")
        if report["exact_runs"] < 3:
            return Verdict(
                False,
                "increments were lost when 4 processes ran your function at once: "
                "reading, adding and writing back must happen as one step",
            )
        return Verdict(True)

    return check_in_container({"safe_increment": safe_increment}, _SAFE_INCREMENT, judge, cpus=2)


_COUNT_EVENS = """
import random
from multiprocessing import Lock, Process, Value


class _Guard:
    def __init__(self, counter):
        self._counter = counter

    def acquire(self, *args, **kwargs):
        taken = self._counter._lock.acquire(*args, **kwargs)
        if taken:
            self._counter.acquired.value += 1
        return taken

    def release(self):
        self._counter._lock.release()

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()


class _CountingCounter:
    # Looks like a multiprocessing Value; counts how often its lock is taken.
    def __init__(self):
        self._value = Value("q", 0, lock=False)
        self._lock = Lock()
        self.acquired = Value("i", 0, lock=False)

    @property
    def value(self):
        return self._value.value

    @value.setter
    def value(self, new):
        self._value.value = new

    def get_lock(self):
        return _Guard(self)


def _check():
    rnd = random.Random(3)
    chunks = [[rnd.randrange(1000) for _ in range(5000)] + [2] for _ in range(4)]
    counter = _CountingCounter()
    children = [Process(target=count_evens, args=(counter, chunk)) for chunk in chunks]
    for child in children:
        child.start()
    for child in children:
        child.join()
    if any(child.exitcode != 0 for child in children):
        return {"child_failed": True}
    expected = sum(1 for chunk in chunks for x in chunk if x % 2 == 0)
    return {"right": counter.value == expected, "acquired": counter.acquired.value, "calls": 4}
"""


def check_count_evens(count_evens: Callable[[Any, list[int]], None]) -> Verdict:
    """Check ``count_evens(counter, numbers)``: right total, the lock taken once per call."""

    def judge(report: dict[str, Any]) -> Verdict:
        if report.get("child_failed"):
            return Verdict(False, "a process running your function failed (run it once yourself)")
        acquired, calls = report["acquired"], report["calls"]
        if acquired == 0:
            return Verdict(False, "you never took the counter's lock (counter.get_lock())")
        if not report["right"]:
            return Verdict(False, "the total is wrong: add how many numbers are even")
        if acquired > calls:
            return Verdict(
                False,
                f"the total is right, but {calls} calls took the lock {acquired} times: "
                "count in a local variable first, then update the counter once",
            )
        return Verdict(True)

    return check_in_container({"count_evens": count_evens}, _COUNT_EVENS, judge, cpus=2)
