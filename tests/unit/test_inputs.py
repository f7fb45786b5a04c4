"""Pure logic of notebook inputs and of the magics' messages (no engine)."""

from __future__ import annotations

import json
import math

import pytest

from dockermagic.errors import InvalidArgumentError
from dockermagic.inputs import INPUTS_FILE, bind_inputs, input_languages
from dockermagic.magics import _failure_message, _magic_names
from dockermagic.policy import SandboxPolicy
from dockermagic.runners import JavaScriptDockerRunner, PythonDockerRunner
from tests.support import make_result


def test_no_values_leaves_the_program_alone() -> None:
    bound = bind_inputs("python", "print(1)", {}, filename="main.py")
    assert (bound.code, bound.filename, bound.files) == ("print(1)", "main.py", {})


@pytest.mark.parametrize("language", ["python", "javascript"])
def test_values_travel_as_json_next_to_the_untouched_program(language: str) -> None:
    code = "first line\nsecond line\n"
    bound = bind_inputs(language, code, {"x": [1, "ü"], "y": None}, filename="main.x")
    assert bound.files["main.x"] == code
    assert json.loads(bound.files[INPUTS_FILE]) == {"x": [1, "ü"], "y": None}
    assert bound.filename != "main.x"
    assert "main.x" in bound.code


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("1x", 1, "plain identifier"),
        ("class", 1, "plain identifier"),
        ("__x", 1, "plain identifier"),
        ("s", {1, 2}, "not JSON-encodable"),
        ("f", math.nan, "not JSON-encodable"),
        ("o", object(), "not JSON-encodable"),
    ],
)
def test_rejected_inputs(name: str, value: object, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        bind_inputs("python", "", {name: value}, filename="main.py")


def test_unsupported_language_and_module_file() -> None:
    assert input_languages() == ["javascript", "python"]
    with pytest.raises(InvalidArgumentError, match="cannot take inputs"):
        bind_inputs("ruby", "", {"x": 1}, filename="main.rb")
    with pytest.raises(InvalidArgumentError, match="CommonJS"):
        bind_inputs("javascript", "", {"x": 1}, filename="main.mjs")


def test_magic_names_come_from_the_registry() -> None:
    assert _magic_names(PythonDockerRunner) == ["docker_python", "docker_py"]
    assert _magic_names(JavaScriptDockerRunner) == ["docker_javascript", "docker_js"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"exit_code": 3}, "python cell exited with status 3"),
        ({"timed_out": True, "exit_code": 137}, "python cell timed out after 5 s and was killed"),
        ({"oom_killed": True, "exit_code": 137}, "ran out of memory (limit 64 MiB)"),
        ({"output_truncated": True}, "printed more than 1 MiB of output"),
    ],
)
def test_failure_messages(changes: dict[str, object], message: str) -> None:
    policy = SandboxPolicy(timeout=5, memory="64m")
    assert message in _failure_message(make_result(**changes), policy)
