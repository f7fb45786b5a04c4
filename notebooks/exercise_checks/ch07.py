"""Checks for notebook 07 (the assignment: running code in containers)."""

from __future__ import annotations

from collections.abc import Callable

from dockermagic import PythonDockerRunner, RunResult, SandboxPolicy
from exercise_checks import STUB_HINT, Verdict


def check_shell_runner(runner_class: type) -> Verdict:
    """Check a ``ShellRunner`` subclass: it runs a shell script and reports its outcome."""
    try:
        runner = runner_class()
        argv = runner.command("/code/main.sh")
        env = runner.environment()
    except NotImplementedError:
        return Verdict(False, "implement both command() and environment()")
    except TypeError as exc:
        return Verdict(False, f"the class cannot be used yet: {exc}")
    if not (isinstance(argv, list) and all(isinstance(a, str) for a in argv)):
        return Verdict(False, "command(path) must return a list of strings, the program's argv")
    if "/code/main.sh" not in argv:
        return Verdict(False, "command(path) must pass the script's path to the shell")
    if not isinstance(env, dict):
        return Verdict(False, "environment() must return a dict of variable names to values")
    if len(env) > 5:
        return Verdict(
            False,
            "environment() should give only what the language needs, not the host's variables",
        )
    result = runner.run('echo "$((6 * 7))"; echo oops >&2; exit 3', timeout=20)
    if result.stdout != "42\n" or result.stderr != "oops\n":
        return Verdict(False, "the script's output did not come back: run it with /bin/sh")
    if result.exit_code != 3 or result.status != "failed":
        return Verdict(False, "the script's exit status was not reported")
    return Verdict(True)


_SNIPPETS = {
    "ok": ("print('fine')", 20),
    "syntax error": ("print('unclosed", 20),
    "crashed": ("numbers = [1, 2, 3]\nprint(numbers[10])", 20),
    "timed out": ("import time\ntime.sleep(30)", 1.5),
    "out of memory": ('data = b"x" * (1 << 30)', 20),
}
_results: dict[str, RunResult] = {}


def _sample_results() -> dict[str, RunResult]:
    """One real run per kind of outcome (kept: the check may be run often)."""
    if not _results:
        runner = PythonDockerRunner(policy=SandboxPolicy.default().replace(memory="64m"))
        for kind, (code, timeout) in _SNIPPETS.items():
            _results[kind] = runner.run(code, timeout=timeout)
    return _results


def check_explain(explain: Callable[[RunResult], str]) -> Verdict:
    """Check ``explain(result)`` on real results of each kind of outcome."""
    try:
        explain(RunResult("python", "image", 0, "", "", 0.1))
    except NotImplementedError:
        return Verdict(False, STUB_HINT)
    except Exception as exc:
        return Verdict(False, f"on a successful result your function raised {type(exc).__name__}")
    wrong = []
    for kind, result in _sample_results().items():
        try:
            answer = explain(result)
        except Exception as exc:
            wrong.append(f"{kind} (raised {type(exc).__name__})")
            continue
        if answer != kind:
            wrong.append(kind)
    if wrong:
        return Verdict(False, f"not recognised yet: {', '.join(wrong)}")
    return Verdict(True)
