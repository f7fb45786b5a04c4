"""Grading a class: every student's every exercise, in fresh containers, in parallel.

``SUBMISSIONS`` is a folder with one entry per student: a notebook, a ``.py``
file or a folder of them; the student is the entry's name without its suffix.
For each exercise of the course the student's answer is found by the
exercise cell's id (:mod:`~dockermagic.grading.answers`), checked in a fresh
container (:func:`~dockermagic.grading.check.check`) and judged on the host.
Nothing of a student's runs on the host: a submission is only ever read as
text and JSON.

Each student has a time budget (``student_timeout``): the seconds their
checks may take in all. A check starts with at most what is left, and one
that cannot start any more ends as *timeout* ("budget used up"), so one
student's endless loops cannot hold up the class.

Pure orchestration: the words and files (table, CSV, JSON, HTML) are
:mod:`~dockermagic.grading.report`'s.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from dockermagic.grading.answers import Answer, answer_from_cells, read_cells
from dockermagic.grading.check import check
from dockermagic.grading.course import Course
from dockermagic.grading.exercise import Exercise, Outcome, Verdict
from dockermagic.logs import OutputMirror
from dockermagic.policy import SandboxPolicy
from dockermagic.runners import PythonDockerRunner

__all__ = ["Record", "Submission", "grade", "submissions"]

logger = logging.getLogger(__name__)

_SUFFIXES = (".ipynb", ".py")


@dataclass(frozen=True)
class Submission:
    """One student's entry in the submissions folder."""

    student: str
    path: Path


@dataclass(frozen=True)
class Record:
    """One student's result on one exercise.

    Attributes:
        student: The student (the entry's name without its suffix).
        exercise: The exercise's id.
        status: passed, failed, missing, timeout or error.
        score: Points earned.
        weight: Points the exercise is worth.
        hint: What went wrong, in words.
        duration: Seconds the check took (0 when it did not run).
        output: What the student's code printed during the check.
        origin: Where the answer was found (``cell 7``).
    """

    student: str
    exercise: str
    status: Outcome
    score: float
    weight: float
    hint: str = ""
    duration: float = 0.0
    output: str = ""
    origin: str = ""


def submissions(folder: str | Path) -> list[Submission]:
    """The students' entries of a submissions folder, by name.

    Hidden entries and files of other kinds are skipped; a symbolic link is
    an entry (graded as an error: it is not followed).

    Args:
        folder: The folder.

    Returns:
        The entries.

    Raises:
        NotADirectoryError: ``folder`` is not a folder.
    """
    root = Path(folder)
    if not root.is_dir():
        raise NotADirectoryError(f"{folder}: not a folder of submissions")
    found = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        named = entry.stem if entry.suffix in _SUFFIXES else entry.name
        if entry.is_symlink() or entry.is_dir() or (entry.suffix in _SUFFIXES and entry.is_file()):
            found.append(Submission(named, entry))
    return found


class _Budget:
    """A student's seconds of checking left (thread-safe)."""

    def __init__(self, seconds: float) -> None:
        self._left = seconds
        self._lock = threading.Lock()

    def take(self, wanted: float) -> float:
        with self._lock:
            return max(0.0, min(wanted, self._left))

    def spend(self, seconds: float) -> None:
        with self._lock:
            self._left -= seconds


def grade(
    course: Course,
    entries: Sequence[Submission],
    *,
    workers: int = 4,
    student_timeout: float = 120.0,
    on_record: Callable[[Record], None] | None = None,
    log: bool = True,
) -> list[Record]:
    """Grade every entry on every exercise of the course.

    Args:
        course: The course (its exercises, in order).
        entries: The students' entries.
        workers: Checks that run at once.
        student_timeout: Seconds of checking one student may use in all.
        on_record: Called with each record as soon as it is decided (from
            worker threads), for a live progress display.
        log: Write each student's verdicts and output into
            ``logs/grade-<student>.log`` (through the running log sink).

    Returns:
        The records, by student then by exercise in course order.
    """
    runners = _Runners(pool=min(workers, 4))
    lock = threading.Lock()

    def decided(record: Record) -> Record:
        if log:
            _log_record(record)
        if on_record is not None:
            with lock:
                on_record(record)
        return record

    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="grade") as pool:
        futures = []
        for entry in entries:
            budget = _Budget(student_timeout)
            try:
                cells = read_cells(entry.path)
            except (OSError, ValueError) as exc:
                for item in course.exercises:
                    futures.append(
                        pool.submit(decided, _record(entry, item, _unreadable(exc, item)))
                    )
                continue
            for item in course.exercises:
                answer = answer_from_cells(item.id, cells)
                futures.append(
                    pool.submit(_grade_one, entry, item, answer, budget, runners, decided)
                )
        return [future.result() for future in futures]


def _unreadable(exc: Exception, item: Exercise) -> Verdict:
    return Verdict(Outcome.ERROR, f"the submission could not be read: {exc}", weight=item.weight)


def _grade_one(
    entry: Submission,
    item: Exercise,
    answer: Answer | None,
    budget: _Budget,
    runners: _Runners,
    decided: Callable[[Record], Record],
) -> Record:
    if answer is None:
        verdict = Verdict(Outcome.MISSING, f"no cell defines `{item.function}`", weight=item.weight)
        return decided(_record(entry, item, verdict))
    seconds = budget.take(item.timeout)
    if seconds < 1.0:
        verdict = Verdict(
            Outcome.TIMEOUT,
            "not checked: the student's time budget was used up",
            weight=item.weight,
        )
        return decided(_record(entry, item, verdict, answer))
    started = time.monotonic()
    try:
        verdict = check(item, answer, runner=runners.get(item), timeout=seconds)
    except Exception as exc:  # one broken check must not lose the class's grades
        logger.exception("checking %s for %s failed", item.id, entry.student)
        verdict = Verdict(Outcome.ERROR, f"the check failed: {exc}", weight=item.weight)
    finally:
        budget.spend(time.monotonic() - started)
    return decided(_record(entry, item, verdict, answer))


def _record(
    entry: Submission, item: Exercise, verdict: Verdict, answer: Answer | None = None
) -> Record:
    return Record(
        student=entry.student,
        exercise=item.id,
        status=verdict.outcome,
        score=verdict.score,
        weight=verdict.weight,
        hint=verdict.hint,
        duration=round(verdict.duration, 3),
        output=verdict.output,
        origin=answer.origin if answer is not None else "",
    )


class _Runners:
    """One runner per (CPUs, timeout) of the exercises, sharing warm pools."""

    def __init__(self, pool: int) -> None:
        self._pool = pool
        self._runners: dict[tuple[float, float], PythonDockerRunner] = {}
        self._lock = threading.Lock()

    def get(self, item: Exercise) -> PythonDockerRunner:
        key = (item.cpus, item.timeout)
        with self._lock:
            runner = self._runners.get(key)
            if runner is None:
                policy = SandboxPolicy.default().replace(cpus=item.cpus, timeout=item.timeout)
                runner = PythonDockerRunner(policy=policy, pool=self._pool)
                self._runners[key] = runner
            return runner


def _log_record(record: Record) -> None:
    mirror = OutputMirror(f"grade-{record.student}", secrets.token_hex(6), "python")
    mirror(
        "verdict",
        f"{record.exercise} {record.status} {record.score:g}/{record.weight:g}"
        + (f" {record.hint}" if record.hint else "")
        + "\n",
    )
    if record.output:
        mirror("output", record.output)
    mirror.close()
