"""The exercises of the course's notebooks, one module per notebook (``chNN``).

A module registers its notebook's exercises when it is imported
(:func:`dockermagic.grading.register_exercise`): a notebook's set-up cell
imports its own module, and each check cell runs ``%docker_check <id>``.
Every check runs the student's cell in a fresh container on inputs drawn on
the host, and the host decides the verdict (:func:`dockermagic.grading.check`).

This package holds what several modules share: probe code that runs the
student's function in child processes (:data:`IN_CHILDREN`), and words
for hints (:func:`describe_child`, :func:`kind_words`); :func:`joined` puts
pieces of container code together.
"""

from __future__ import annotations

import inspect
import json
import linecache
import textwrap
from collections.abc import Callable, Mapping
from typing import Any

from dockermagic import PythonDockerRunner, RunResult, SandboxPolicy
from dockermagic.grading import Case, describe_observation

__all__ = [
    "IN_CHILDREN",
    "Verdict",
    "cell_source",
    "check_in_container",
    "describe_child",
    "joined",
    "kind_words",
    "run_in_container",
    "verdict_from_report",
]

#: Probe code (container side): ``in_children(calls, together=True)`` runs each
#: call in a process of its own, all at once or one after another, and returns
#: what ``observe`` saw in each child, so that an exception raised in a child
#: is reported with the student's line as one in the parent would be. A child
#: that ended without a word (``os._exit``, a crash, a signal) is
#: ``{"died": exit code}``. ``first_problem(observations)`` is the first of
#: them that is not a returned value (None when all returned).
IN_CHILDREN = """
import multiprocessing as _multiprocessing

# The probe's own children are forked, whatever the platform's default:
# a call may then be any function, closures included.
_FORK = _multiprocessing.get_context("fork")


def _report_from_child(sender, call):
    try:
        sender.send(observe(call))
    finally:
        sender.close()


def in_children(calls, together=True):
    def start(call):
        receiver, sender = _FORK.Pipe(duplex=False)
        child = _FORK.Process(target=_report_from_child, args=(sender, call))
        child.start()
        sender.close()
        return child, receiver

    def finish(child, receiver):
        try:
            seen = receiver.recv()
        except EOFError:
            seen = None
        child.join()
        return seen if isinstance(seen, dict) else {"died": child.exitcode}

    if together:
        started = [start(call) for call in calls]
        return [finish(child, receiver) for child, receiver in started]
    return [finish(*start(call)) for call in calls]


def first_problem(observations):
    for seen in observations:
        if "value" not in seen:
            return seen
    return None
"""


def describe_child(case: Case, observation: Mapping[str, Any]) -> str:
    """The words for what a child process running the student's function did.

    Args:
        case: The case.
        observation: What the probe saw in the child (see :data:`IN_CHILDREN`).

    Returns:
        The hint, or '' when the function returned.
    """
    if "died" in observation:
        where = f"{case.label}: " if case.label else ""
        return (
            f"{where}a process running your function ended before it returned "
            f"(exit code {observation['died']})"
        )
    return describe_observation(case, observation)


def kind_words(kind: str) -> str:
    """A type's name as a hint says it: ``an int``, ``a tuple``, ``None``.

    Args:
        kind: The type's name, as the probe reported it.

    Returns:
        The words.
    """
    if kind in ("", "NoneType"):
        return "None"
    return f"an {kind}" if kind[0].lower() in "aeiou" else f"a {kind}"


def joined(*parts: str) -> str:
    """Pieces of container code as one (each dedented on its own).

    Args:
        *parts: Code, indented or not.

    Returns:
        The code.
    """
    return "\n\n".join(textwrap.dedent(part).strip("\n") + "\n" for part in parts)


# -- the checks of notebooks not ported to dockermagic.grading yet ----------------------

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
