"""SandboxPolicy, parse_bytes, RunResult and the runner registry: pure logic."""

from __future__ import annotations

import pytest

from dockermagic import (
    InvalidArgumentError,
    JavaScriptDockerRunner,
    PythonDockerRunner,
    SandboxPolicy,
)
from dockermagic.policy import parse_bytes
from dockermagic.runners import runner_class_for
from tests.support import make_result


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("256m", 256 * 2**20),
        ("1g", 2**30),
        ("512k", 512 * 1024),
        ("1.5G", 3 * 2**29),
        ("64MiB", 64 * 2**20),
        (1000, 1000),
        ("2048", 2048),
    ],
)
def test_parse_bytes(text: str | int, expected: int) -> None:
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("bad", ["", "lots", "-5m", "0", 0, True, "5x"])
def test_parse_bytes_rejects(bad: object) -> None:
    with pytest.raises(InvalidArgumentError):
        parse_bytes(bad)  # type: ignore[arg-type]


def test_defaults_are_the_safe_ones() -> None:
    policy = SandboxPolicy()
    assert not policy.network
    assert policy.user == "65534:65534"
    assert policy.read_only
    assert policy.memory == 256 * 2**20
    assert policy.cpus == 1.0
    assert policy.pids_limit == 128
    assert policy.timeout == 30.0
    assert policy.output_limit == 2**20
    kwargs = policy.host_config_kwargs()
    assert kwargs["network_mode"] == "none"
    assert kwargs["memswap_limit"] == kwargs["mem_limit"]
    assert kwargs["cap_drop"] == ["ALL"]
    assert kwargs["security_opt"] == ["no-new-privileges"]
    assert kwargs["shm_size"] == 64 * 2**20
    assert policy.container_kwargs() == {
        "user": "65534:65534",
        "working_dir": "/work",
        "network_disabled": True,
    }
    assert policy.copy_limit == 64 * 2**20


def test_network_is_opt_in() -> None:
    assert SandboxPolicy().replace(network=True).host_config_kwargs()["network_mode"] == "bridge"
    assert SandboxPolicy().replace(network=True).container_kwargs()["network_disabled"] is False


@pytest.mark.parametrize(
    "changes",
    [
        {"timeout": 0},
        {"timeout": -3},
        {"timeout": float("inf")},
        {"cpus": 0},
        {"cpus": 999},
        {"memory": "1m"},
        {"pids_limit": 2},
        {"user": "root"},
        {"user": "0:0"},
        {"workdir": "relative"},
        {"no_such_field": 1},
    ],
)
def test_bad_values_are_rejected_with_the_field_name(changes: dict[str, object]) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        SandboxPolicy().replace(**changes)
    assert info.value.argument in {*changes, "policy field"}


def test_replace_ignores_none_and_keeps_sizes_in_bytes() -> None:
    policy = SandboxPolicy().replace(memory="512m", timeout=None)
    assert policy.memory == 512 * 2**20
    assert policy.timeout == 30.0
    assert policy == SandboxPolicy(memory=512 * 2**20)


def test_environment_variables_set_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKERMAGIC_TIMEOUT", "12.5")
    monkeypatch.setenv("DOCKERMAGIC_MEMORY", "128m")
    monkeypatch.setenv("DOCKERMAGIC_OUTPUT_LIMIT", "64k")
    policy = SandboxPolicy.default()
    assert (policy.timeout, policy.memory, policy.output_limit) == (12.5, 128 * 2**20, 65536)
    monkeypatch.setenv("DOCKERMAGIC_TIMEOUT", "soon")
    with pytest.raises(InvalidArgumentError, match="DOCKERMAGIC_TIMEOUT"):
        SandboxPolicy.default()


@pytest.mark.parametrize(
    ("changes", "status"),
    [
        ({}, "ok"),
        ({"exit_code": 1}, "failed"),
        ({"exit_code": 137, "timed_out": True}, "timed_out"),
        ({"exit_code": 137, "oom_killed": True}, "oom"),
        ({"exit_code": 137, "output_truncated": True}, "truncated"),
        ({"exit_code": 137, "cancelled": True, "timed_out": True}, "cancelled"),
    ],
)
def test_result_status(changes: dict[str, object], status: str) -> None:
    result = make_result(**changes)
    assert result.status == status
    assert result.ok is (status == "ok")
    assert result.describe()


def test_result_is_frozen() -> None:
    with pytest.raises(AttributeError):
        make_result().exit_code = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("key", "cls"),
    [
        ("python", PythonDockerRunner),
        ("PY", PythonDockerRunner),
        ("python3", PythonDockerRunner),
        ("js", JavaScriptDockerRunner),
        ("node", JavaScriptDockerRunner),
        ("scripts/a.py", PythonDockerRunner),
        ("x/b.mjs", JavaScriptDockerRunner),
        ("c.cjs", JavaScriptDockerRunner),
        ("D.JS", JavaScriptDockerRunner),
    ],
)
def test_registry_lookup(key: str, cls: type) -> None:
    assert runner_class_for(key) is cls


def test_unknown_language_names_the_known_ones() -> None:
    with pytest.raises(InvalidArgumentError, match="javascript, python"):
        runner_class_for("cobol")


def test_the_base_class_is_abstract() -> None:
    from dockermagic import AbstractDockerCodeRunner

    with pytest.raises(TypeError):
        AbstractDockerCodeRunner()  # type: ignore[abstract]
