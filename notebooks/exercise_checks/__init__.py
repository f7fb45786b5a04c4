"""Checks for the exercises of the concurrency notebooks.

Each notebook imports its own module (``from exercise_checks import ch03``)
and calls a ``check_*`` function on the student's function. A check returns a
:class:`Verdict`, which a notebook shows as one line: ``✅ correct`` or
``❌ not yet: <hint>``. Hints say what went wrong, never what the answer is.

Most checks run the student's code in a fresh, locked-down container
(:func:`run_in_container`): the whole cell that defines the function is
copied into a program, followed by a small harness that calls it and reports
back one JSON line. The expected values live in the harness, inside the
container, and are compared there.
"""

from __future__ import annotations

import inspect
import json
import linecache
import textwrap
from collections.abc import Callable
from typing import Any

from dockermagic import PythonDockerRunner, RunResult, SandboxPolicy

__all__ = [
    "Verdict",
    "cell_source",
    "check_in_container",
    "run_in_container",
    "verdict_from_report",
]

#: The line prefix the harness prints its report after.
MARKER = "@@CHECK@@"
#: A stub's answer, as reported by the harness.
STUB_HINT = "replace the `raise NotImplementedError` with your code, run that cell, then this one"


class Verdict:
    """The outcome of a check: shown as one line, true when the answer is right.

    Args:
        ok: Whether the answer is right.
        hint: What is wrong (ignored when ``ok``).
    """

    def __init__(self, ok: bool, hint: str = "") -> None:
        self.ok = ok
        self.hint = hint

    def __bool__(self) -> bool:
        return self.ok

    def __repr__(self) -> str:
        return "✅ correct" if self.ok else f"❌ not yet: {self.hint}"


def cell_source(obj: Callable[..., Any] | type) -> str:
    """The source of the cell (or module) that defined a function or class.

    The whole cell travels, so the imports a student wrote next to the
    function come along.

    Args:
        obj: A function or class defined in a notebook cell or a module.

    Returns:
        Its source code.
    """
    if inspect.isclass(obj):
        return inspect.getsource(inspect.getmodule(obj) or obj)
    filename = obj.__code__.co_filename
    lines = linecache.getlines(filename)
    if lines:
        return "".join(lines)
    return textwrap.dedent(inspect.getsource(obj))


_WRAPPER = """

import json as _json
import traceback as _traceback


def _finish(report):
    print({marker!r} + _json.dumps(report), flush=True)


if __name__ == "__main__":
    try:
        _finish(_check())
    except NotImplementedError:
        _finish({{"stub": True}})
    except Exception as _exc:
        _finish({{"crash": "".join(_traceback.format_exception_only(_exc)).strip()}})
"""


def run_in_container(
    sources: list[str],
    harness: str,
    *,
    prelude: str = "",
    cpus: float = 1,
    timeout: float = 60,
) -> tuple[dict[str, Any] | None, RunResult]:
    """Run student code and a harness in a new container; return the harness's report.

    Args:
        sources: Code to run first (the student's cells).
        harness: Code defining ``_check()``, which returns a JSON-ready dict.
        prelude: Code to run before the student's (e.g. counting wrappers).
        cpus: CPUs for the container.
        timeout: Wall-clock seconds.

    Returns:
        The report (None when the program never printed one) and the result.
    """
    program = "\n\n".join(
        [
            textwrap.dedent(prelude),
            *sources,
            textwrap.dedent(harness),
            _WRAPPER.format(marker=MARKER),
        ]
    )
    policy = SandboxPolicy.default().replace(cpus=cpus, timeout=timeout)
    result = PythonDockerRunner(policy=policy).run(program)
    for line in reversed(result.stdout.splitlines()):
        if line.startswith(MARKER):
            report: dict[str, Any] = json.loads(line[len(MARKER) :])
            return report, result
    return None, result


def verdict_from_report(
    report: dict[str, Any] | None, result: RunResult, judge: Callable[[dict[str, Any]], Verdict]
) -> Verdict:
    """Turn a harness report into a verdict, handling stubs, crashes and lost runs.

    Args:
        report: What the harness reported (None if nothing).
        result: The container run.
        judge: Decides on a normal report.

    Returns:
        The verdict.
    """
    if report is None:
        last = result.stderr.strip().splitlines()[-1:] or [""]
        why = f": {last[0]}" if last[0] else ""
        return Verdict(False, f"the program did not finish, it {result.describe()}{why}")
    if report.get("stub"):
        return Verdict(False, STUB_HINT)
    if "crash" in report:
        return Verdict(False, f"your code raised {report['crash']}")
    return judge(report)


def check_in_container(
    objects: dict[str, Any],
    harness: str,
    judge: Callable[[dict[str, Any]], Verdict],
    **options: Any,
) -> Verdict:
    """Copy the cells that define ``objects`` into a container, run the harness, judge.

    Args:
        objects: The student's functions or classes, by the name the harness
            calls them (a function named differently still gets checked).
        harness: Code defining ``_check()``.
        judge: Decides on a normal report.
        **options: For :func:`run_in_container` (``prelude``, ``cpus``, ``timeout``).

    Returns:
        The verdict.
    """
    try:
        sources = list(dict.fromkeys(cell_source(obj) for obj in objects.values()))
        aliases = [
            f"{name} = {obj.__name__}" for name, obj in objects.items() if obj.__name__ != name
        ]
    except (OSError, TypeError, AttributeError):
        return Verdict(False, "define the function in a notebook cell and run that cell first")
    sources.append("\n".join(aliases))
    report, result = run_in_container(sources, harness, **options)
    return verdict_from_report(report, result, judge)
