"""Exercises of notebook 07 (the assignment: running code in containers).

Both exercises build on dockermagic's own classes, which a container does
not have: there, the student's cell imports a stand-in
(``stand_in/dockermagic.py``, the same base class and ``RunResult``, running
nothing), loaded by the checks' prelude and put into the notebook's
``exercises`` session with ``--put``. The student's code runs only in
containers; what it answers comes back as data:

* ``ShellRunner``: the argv its ``command(path)`` returns and the variables
  its ``environment()`` gives. The host then builds a real runner from that
  data alone and runs a short script with it, in a sandbox container.
* ``explain``: the host runs real programs of each kind (fine, a syntax
  error, a crash, a time-out, out of memory) and sends the fields of their
  :class:`~dockermagic.RunResult`; the probe rebuilds a stand-in
  ``RunResult`` from them for the student's function.
"""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import docker

from dockermagic import AbstractDockerCodeRunner, PythonDockerRunner, RunResult, SandboxPolicy
from dockermagic.errors import DockermagicError
from dockermagic.grading import (
    Case,
    Exercise,
    describe_observation,
    register_exercise,
    value_judge,
)
from exercise_checks import joined, kind_words

NOTEBOOK = "07-assignment"

#: The stand-in for dockermagic in a container (a file, so that the
#: notebook's session can be given the same with ``--put``).
STAND_IN = Path(__file__).resolve().parent / "stand_in" / "dockermagic.py"

# Container code run before the student's cell: the stand-in becomes the
# module `dockermagic`.
_PRELUDE = f"""
import sys as _sys
import types as _types

_stand_in = _types.ModuleType("dockermagic")
_stand_in.__file__ = "dockermagic.py"
exec(compile({STAND_IN.read_text(encoding="utf-8")!r}, "dockermagic.py", "exec"), _stand_in.__dict__)
_sys.modules["dockermagic"] = _stand_in
"""

# -- ShellRunner --------------------------------------------------------------------------

#: More variables than a shell could need: the host's (or the container's)
#: whole environment, not the language's.
_MOST_VARIABLES = 5
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _shell_runner_cases(rng: random.Random) -> list[Case]:
    names = ["main", "script", "job", "task", "run", "test"]
    paths = [f"/code/{rng.choice(names)}_{rng.randrange(10_000):04d}.sh" for _ in range(2)]
    a, b, code = rng.randint(3, 40), rng.randint(3, 40), rng.randint(2, 120)
    word = rng.choice(["oops", "careful", "warning", "hmm"])
    script = f'echo "$(({a} * {b}))"\necho {word} >&2\nexit {code}\n'
    return [
        Case(
            (paths,),
            "",
            {"script": script, "stdout": f"{a * b}\n", "stderr": f"{word}\n", "exit_code": code},
        )
    ]


def _call_words(call: str, seen: Mapping[str, Any]) -> str:
    """What went wrong in one call of the class (``ShellRunner()``, ``environment()``)."""
    words = describe_observation(Case(()), seen)
    return words.replace("your function", call, 1) if words.startswith("your function") else words


def _shell_runner_problem(case: Case, seen: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """What is wrong with the class's answers ('' when nothing), and the answers."""
    if "commands" not in seen:
        return _call_words("ShellRunner()", seen), {}
    paths: list[str] = case.args[0]
    commands: dict[str, list[str]] = {}
    for path, found in zip(paths, seen["commands"], strict=True):
        call = f"command({path!r})"
        problem = _call_words(call, found)
        if problem:
            return problem, {}
        argv, kind = found.get("value"), str(found.get("type", ""))
        if (
            kind != "list"
            or not isinstance(argv, list)
            or not argv
            or not all(isinstance(part, str) for part in argv)
        ):
            return (
                f"{call} should return the argv that runs the script, a list of strings, "
                f"not {kind_words(kind)}"
            ), {}
        if any("\x00" in part for part in argv):
            return f"{call} returned an argv with a NUL character in it", {}
        if not any(path in part for part in argv):
            return (
                f"{call} returned {argv!r}: the argv must pass the script's path, "
                "the one it was given, to the shell"
            ), {}
        commands[path] = argv
    found = seen.get("environment", {})
    problem = _call_words("environment()", found)
    if problem:
        return problem, {}
    env, kind = found.get("value"), str(found.get("type", ""))
    if (
        kind != "dict"
        or not isinstance(env, dict)
        or not all(isinstance(value, str) for value in env.values())
    ):
        return (
            f"environment() should return a dict of variable names to values (str), "
            f"not {kind_words(kind)}"
        ), {}
    bad = [name for name in env if not _VARIABLE.fullmatch(name) or "\x00" in env[name]]
    if bad:
        return f"environment(): {bad[0]!r} is not a variable name (or its value holds NUL)", {}
    if len(env) > _MOST_VARIABLES:
        return (
            f"environment() gives {len(env)} variables: give only what the language "
            "needs (a shell needs hardly any), not a whole environment"
        ), {}
    return "", {"commands": commands, "environment": env}


class _AnswersRunner(AbstractDockerCodeRunner):
    """A shell runner made of a student's answers, as plain data.

    Nothing of the student's code runs here: ``command`` looks the argv up
    by path, ``environment`` returns a copy of the dict.
    """

    language = "shell-check"
    default_image = PythonDockerRunner.default_image
    image_env_var = PythonDockerRunner.image_env_var
    offline_image = PythonDockerRunner.offline_image
    filename = "main.sh"

    def __init__(self, commands: dict[str, list[str]], env: dict[str, str], **options: Any):
        super().__init__(**options)
        self._commands = {path: list(argv) for path, argv in commands.items()}
        self._env = dict(env)

    def command(self, path: str) -> list[str]:
        return list(self._commands[path])

    def environment(self) -> dict[str, str]:
        return dict(self._env)


def _judge_shell_runner(
    cases: Sequence[Case], observations: Sequence[Mapping[str, Any]]
) -> tuple[int, str]:
    (case,), (seen,) = cases, observations
    problem, answers = _shell_runner_problem(case, seen)
    if problem:
        return 0, problem
    path = case.args[0][0]
    runner = _AnswersRunner(
        answers["commands"],
        answers["environment"],
        policy=SandboxPolicy.default().replace(timeout=20),
    )
    want = case.expected
    try:
        result = runner.run(want["script"], filename=path.rsplit("/", 1)[1])
    except (DockermagicError, docker.errors.DockerException) as exc:
        return 0, f"a script could not be run with your command and environment: {exc}"
    if result.stdout != want["stdout"] or result.stderr != want["stderr"]:
        return 0, (
            "a short script run with your command did not print what it prints under "
            "/bin/sh: does command(path) run the file at path with /bin/sh?"
        )
    if result.exit_code != want["exit_code"]:
        return 0, "the script's own exit status was not passed on: run the script itself"
    return 1, ""


shell_runner = register_exercise(
    Exercise(
        id=f"{NOTEBOOK}/ShellRunner",
        function="ShellRunner",
        cases=_shell_runner_cases,
        prelude=_PRELUDE,
        probe="""
        def probe(function, case, observe):
            (paths,) = case
            made = []
            seen = observe(lambda: made.append(function()))
            if "value" not in seen:
                return seen
            runner = made[0]
            commands = [observe(lambda path=path: runner.command(path)) for path in paths]
            environment = observe(runner.environment)
            for found in [*commands, environment]:
                if found.get("stub"):
                    return found
            return {"commands": commands, "environment": environment}
        """,
        judge=_judge_shell_runner,
        partial=False,
        timeout=15,
    )
)

# -- explain ------------------------------------------------------------------------------

#: Programs of each kind, run for real on the host: (answer, code, seconds).
_PROGRAMS = [
    ("ok", "print('fine')", 20.0),
    ("ok", "import sys\nprint('a warning', file=sys.stderr)\nprint('done')", 20.0),
    ("syntax error", "print('unclosed", 20.0),
    ("syntax error", "def broken(:\n    pass", 20.0),
    ("crashed", "numbers = [1, 2, 3]\nprint(numbers[10])", 20.0),
    ("crashed", "import sys\nsys.exit(3)", 20.0),
    ("crashed", "print(1 / 0)", 20.0),
    ("timed out", "import time\ntime.sleep(30)", 1.5),
    ("timed out", "while True:\n    pass", 1.5),
    ("out of memory", 'data = b"x" * (1 << 30)', 20.0),
    ("out of memory", "blocks = [bytearray(1 << 20) for _ in range(1024)]", 20.0),
]
_MEMORY = "64m"
_KINDS = ("ok", "syntax error", "crashed", "timed out", "out of memory")
_FIELDS = (
    "language",
    "image",
    "exit_code",
    "stdout",
    "stderr",
    "duration",
    "timed_out",
    "oom_killed",
    "output_truncated",
    "cancelled",
    "container_name",
)
_results: list[tuple[str, str, float, RunResult]] = []
_results_lock = threading.Lock()


def _is(kind: str, result: RunResult) -> bool:
    """Whether a real run ended as its program is meant to (the check relies on it)."""
    syntax = "SyntaxError" in result.stderr
    return {
        "ok": result.ok,
        "syntax error": result.status == "failed" and syntax,
        "crashed": result.status == "failed" and not syntax,
        "timed out": result.timed_out,
        "out of memory": result.oom_killed and not result.timed_out,
    }[kind]


def _real_results() -> list[tuple[str, str, float, RunResult]]:
    """One real run of each program (kept: checks may run often, and in threads).

    Raises:
        RuntimeError: A program did not end as it should on this machine: a
            case would then be judged on a wrong premise.
    """
    with _results_lock:
        if not _results:
            runner = PythonDockerRunner(policy=SandboxPolicy.default().replace(memory=_MEMORY))
            with ThreadPoolExecutor(max_workers=4) as pool:
                done = list(pool.map(lambda p: runner.run(p[1], timeout=p[2]), _PROGRAMS))
            for (kind, code, _), result in zip(_PROGRAMS, done, strict=True):
                if not _is(kind, result):
                    raise RuntimeError(
                        f"the sample program {code!r} did not end as {kind}: it {result.describe()}"
                    )
            _results.extend(
                (kind, code, seconds, result)
                for (kind, code, seconds), result in zip(_PROGRAMS, done, strict=True)
            )
        return list(_results)


def _explain_cases(rng: random.Random) -> list[Case]:
    cases = []
    results = _real_results()
    for kind in _KINDS:
        kind_results = [item for item in results if item[0] == kind]
        for _, code, seconds, result in rng.sample(kind_results, min(2, len(kind_results))):
            shown = "; ".join(code.splitlines())
            limits = f" (time limit {seconds:g} s)" if seconds < 20 else ""
            if kind == "out of memory":
                limits = f" (memory limit {_MEMORY})"
            fields = {name: getattr(result, name) for name in _FIELDS}
            cases.append(Case((fields,), f"the result of `{shown}`{limits}", kind))
    return cases


def _compare_explain(case: Case, value: Any, kind: str) -> str:
    if kind != "str" or not isinstance(value, str):
        return f"{case.label}: return one of the five answers, a str, not {kind_words(kind)}"
    if value not in _KINDS:
        answers = ", ".join(repr(word) for word in _KINDS)
        return f"{case.label}: your function said {value!r}, which is not one of {answers}"
    if value != case.expected:
        return f"{case.label}: your function said {value!r}, which does not fit that run"
    return ""


explain = register_exercise(
    Exercise(
        id=f"{NOTEBOOK}/explain",
        function="explain",
        cases=_explain_cases,
        prelude=_PRELUDE,
        probe=joined(
            """
            from dockermagic import RunResult as _RunResult


            def probe(function, case, observe):
                (fields,) = case
                return observe(lambda: function(_RunResult(**fields)))
            """
        ),
        judge=value_judge(_compare_explain),
    )
)
