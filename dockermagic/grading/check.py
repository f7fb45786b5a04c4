"""Checking one answer to one exercise: the code runs in a container, the verdict on the host.

:func:`check` copies the student's cell into a fresh container as
``/code/answer.py``, next to a small probe program that imports it, calls the
function on each case (inputs chosen on the host with a fresh random seed)
and prints one report of what it saw, behind a per-check random marker. The
host reads that one report and the :class:`~dockermagic.grading.exercise.Exercise`'s
judge compares it with the right answers, which never enter the container.

Why nothing the student's code does can turn a wrong answer into a pass:
printing a report (a second marker line is a failure), an ``atexit`` handler
or ``os._exit`` (no report or two reports: failure), monkeypatching the probe
or builtins, forging protocol frames (the report is only data: to pass, it
must hold the right values for inputs it did not know in advance, that is, be
an answer), reading the expected values (they are not there).
"""

from __future__ import annotations

import json
import random
import secrets
import textwrap
import threading
import time
from collections.abc import Callable, Sequence

from dockermagic.errors import DockermagicError
from dockermagic.grading.answers import Answer
from dockermagic.grading.exercise import (
    STUB_HINT,
    Case,
    Exercise,
    Outcome,
    Verdict,
    describe_observation,
)
from dockermagic.policy import SandboxPolicy
from dockermagic.result import RunResult
from dockermagic.runners import PythonDockerRunner
from dockermagic.status import Status

__all__ = ["QUIET_SECONDS", "check"]
#: Seconds a check runs quietly before it says it is still waiting.
QUIET_SECONDS = 5.0

_MAIN = """
import json as _json
import sys as _sys
import traceback as _traceback

_NONCE = {nonce!r}
_FUNCTION = {function!r}
_FIRST_LINE = {first_line!r}


# For probes too: the student's own line number of a line of /code/answer.py.
def cell_line(line):
    return line + _FIRST_LINE - 1


def _line(tb):
    frames = [f for f in _traceback.extract_tb(tb) if f.filename.endswith("/answer.py")]
    return cell_line(frames[-1].lineno) if frames else None


def _plain(value):
    try:
        _json.dumps(value)
        return value
    except (TypeError, ValueError):
        return {{"repr": repr(value)[:500], "type": type(value).__name__}}


def observe(call):
    try:
        value = call()
    except NotImplementedError:
        return {{"stub": True}}
    except SystemExit as exc:
        return {{"exit": str(exc.code)}}
    except BaseException as exc:
        return {{
            "raised": type(exc).__name__,
            "message": str(exc)[:500],
            "line": _line(exc.__traceback__),
        }}
    return {{"value": _plain(value), "type": type(value).__name__}}


def _main():
    _sys.path.insert(0, "/code")
    try:
        import answer
    except BaseException as exc:
        if isinstance(exc, SyntaxError):
            line = (exc.lineno or 1) + _FIRST_LINE - 1
            report = {{"import": {{"raised": "SyntaxError", "message": exc.msg, "line": line}}}}
        else:
            report = {{"import": {{
                "raised": type(exc).__name__,
                "message": str(exc)[:500],
                "line": _line(exc.__traceback__),
            }}}}
    else:
        function = getattr(answer, _FUNCTION, None)
        if function is None:
            report = {{"undefined": True}}
        else:
            with open("/code/cases.json", encoding="utf-8") as stream:
                cases = _json.load(stream)
            report = {{"cases": [probe(function, case, observe) for case in cases]}}
    _sys.stdout.write("\\n" + _NONCE + _json.dumps(report) + "\\n")
    _sys.stdout.flush()


# A child started with "spawn" or "forkserver" imports this file again as
# __mp_main__ (to find the probe's functions): it must not check again.
if __name__ == "__main__":
    _main()
"""


def check(
    item: Exercise,
    answer: Answer | str,
    *,
    seed: int | None = None,
    runner: PythonDockerRunner | None = None,
    timeout: float | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> Verdict:
    """Check an answer: run it in a fresh container, judge what it did on the host.

    Args:
        item: The exercise.
        answer: The student's answer (a cell's code, which must define
            ``item.function``; a plain string starts on line 1).
        seed: The cases' random seed; a fresh one when None.
        runner: Runs the check; a Python runner with the exercise's CPUs and
            timeout when None.
        timeout: Seconds the check may take; the exercise's when None.
        on_wait: Told once, with a line to show, when the check has run
            :data:`QUIET_SECONDS` without an answer yet.

    Returns:
        The verdict.
    """
    if isinstance(answer, str):
        answer = Answer(answer)
    seconds = timeout if timeout is not None else item.timeout
    cases = list(item.cases(random.Random(seed if seed is not None else secrets.randbits(64))))
    nonce = f"@@{secrets.token_hex(16)}@@"
    main = "\n\n".join(
        [
            textwrap.dedent(item.prelude),
            textwrap.dedent(item.probe),
            _MAIN.format(nonce=nonce, function=item.function, first_line=answer.first_line),
        ]
    )
    files = {
        "answer.py": answer.source,
        "cases.json": json.dumps([list(case.args) for case in cases]),
    }
    policy = SandboxPolicy.default().replace(cpus=item.cpus, timeout=item.timeout)
    runner = runner or PythonDockerRunner(policy=policy)
    started = time.monotonic()
    waiting = _Waiting(on_wait, item.function, seconds)
    try:
        result = runner.run(main, files=files, filename="check.py", timeout=seconds)
    except DockermagicError as exc:
        return Verdict(Outcome.ERROR, f"the check could not run: {exc}", weight=item.weight)
    finally:
        waiting.stop()
    duration = time.monotonic() - started
    return _decide(item, cases, result, nonce, duration, runner.policy)


class _Waiting:
    """Says once that a check is still running (an endless loop looks like silence)."""

    def __init__(
        self, on_wait: Callable[[str], None] | None, function: str, seconds: float
    ) -> None:
        self._timer: threading.Timer | None = None
        if on_wait is not None:
            message = (
                f"still checking {function}… (it may loop or wait; "
                f"the check gives up after {seconds:g} s)"
            )
            self._timer = threading.Timer(QUIET_SECONDS, on_wait, args=(message,))
            self._timer.daemon = True
            self._timer.start()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


def _decide(
    item: Exercise,
    cases: Sequence[Case],
    result: RunResult,
    nonce: str,
    duration: float,
    policy: SandboxPolicy,
) -> Verdict:
    # What the student's code printed, without the harness's own report.
    printed = "".join(
        line for line in result.stdout.splitlines(keepends=True) if not line.startswith(nonce)
    )
    output = (printed + result.stderr)[-20_000:]

    def verdict(outcome: Outcome, hint: str = "", right: int = 0) -> Verdict:
        score = item.weight if outcome is Outcome.PASSED else 0.0
        if outcome is Outcome.FAILED and item.partial and cases:
            score = round(item.weight * right / len(cases), 2)
        return Verdict(outcome, hint, score, item.weight, output, duration)

    reports = [line[len(nonce) :] for line in result.stdout.splitlines() if line.startswith(nonce)]
    if len(reports) > 1:
        return verdict(Outcome.FAILED, "your code printed a line that imitates the check's report")
    if not reports:
        if result.timed_out:
            return verdict(
                Outcome.TIMEOUT,
                f"the check did not finish within {result.duration:.0f} s: "
                "an endless loop, or a wait that never ends?",
            )
        last = (result.stderr.strip().splitlines() or [""])[-1][:200]
        why = f" ({last})" if last and result.status is Status.FAILED else ""
        return verdict(
            Outcome.FAILED,
            f"the program ended before the check could report: it {result.describe(policy)}{why}",
        )
    try:
        report = json.loads(reports[0])
    except ValueError:
        return verdict(Outcome.FAILED, "the check's report was damaged")
    if not isinstance(report, dict):
        return verdict(Outcome.FAILED, "the check's report was damaged")
    if "import" in report:
        problem = report["import"] if isinstance(report["import"], dict) else {}
        hint = describe_observation(Case(()), problem)
        return verdict(Outcome.FAILED, hint.replace("your function raised", "your cell raised"))
    if report.get("undefined"):
        # Neutral words: an exercise may ask for a class (ShellRunner) as well as a function.
        return verdict(
            Outcome.FAILED, f"your cell does not define `{item.function}`: check its name"
        )
    observations = report.get("cases")
    if not isinstance(observations, list) or len(observations) != len(cases):
        return verdict(Outcome.FAILED, "the check's report was damaged")
    for observation in observations:
        if isinstance(observation, dict) and observation.get("stub"):
            return verdict(Outcome.FAILED, STUB_HINT)
    right, hint = item.judge(cases, observations)
    if right == len(cases) and not hint:
        return verdict(Outcome.PASSED)
    return verdict(Outcome.FAILED, hint or "not every case is right", right)
