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

import textwrap
from collections.abc import Mapping
from typing import Any

from dockermagic.grading import Case, describe_observation

__all__ = ["IN_CHILDREN", "describe_child", "joined", "kind_words"]

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
