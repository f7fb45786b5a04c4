"""Notebook 07's stand-in for dockermagic (used in containers) matches the real classes.

Students write their answers against the stand-in (in the ``exercises``
session and in the checks), and read about the real classes in the notebook:
what the stand-in has must be named, valued and behave as the real thing.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from dockermagic import PythonDockerRunner, RunResult, SandboxPolicy
from dockermagic.status import Status

STAND_IN = (
    Path(__file__).resolve().parents[2]
    / "notebooks"
    / "exercise_checks"
    / "stand_in"
    / "dockermagic.py"
)


@pytest.fixture(scope="module")
def stand_in() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dockermagic_stand_in", STAND_IN)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_run_result_fields_are_the_real_ones(stand_in: ModuleType) -> None:
    real = [(f.name, f.default) for f in dataclasses.fields(RunResult)]
    fake = [(f.name, f.default) for f in dataclasses.fields(stand_in.RunResult)]
    assert fake == real[: len(fake)]


def test_statuses_are_the_real_outcomes(stand_in: ModuleType) -> None:
    real = {
        s.name: s.value for s in Status if s not in (Status.QUEUED, Status.RUNNING, Status.ERROR)
    }
    assert {s.name: s.value for s in stand_in.Status} == real
    assert stand_in.Status.OK == "ok"
    assert str(stand_in.Status.TIMED_OUT) == str(Status.TIMED_OUT)


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"exit_code": 1},
        {"exit_code": 137, "timed_out": True},
        {"exit_code": 137, "oom_killed": True},
        {"exit_code": 137, "output_truncated": True},
        {"exit_code": 137, "cancelled": True, "timed_out": True},
    ],
)
def test_run_result_behaves_as_the_real_one(
    stand_in: ModuleType, fields: dict[str, object]
) -> None:
    values = {"exit_code": 0, **fields}
    real = RunResult("python", "image", stdout="", stderr="", duration=1.25, **values)
    fake = stand_in.RunResult("python", "image", stdout="", stderr="", duration=1.25, **values)
    assert fake.ok == real.ok
    assert fake.status == real.status
    assert fake.describe() == real.describe()


def test_python_runner_attributes_are_the_real_ones(stand_in: ModuleType) -> None:
    real, fake = PythonDockerRunner, stand_in.PythonDockerRunner
    for name in ("language", "aliases", "suffixes", "default_image", "image_env_var", "filename"):
        assert getattr(fake, name) == getattr(real, name), name
    assert fake.offline_image == real.offline_image.tag
    assert fake().command("/code/x.py") == real().command("/code/x.py")
    assert fake().environment() == real().environment()
    assert sorted(fake.__abstractmethods__) == []
    assert sorted(stand_in.AbstractDockerCodeRunner.__abstractmethods__) == sorted(
        PythonDockerRunner.__mro__[1].__abstractmethods__
    )


def test_policy_defaults_are_the_real_ones(stand_in: ModuleType) -> None:
    real = dataclasses.asdict(SandboxPolicy.default())
    assert dataclasses.asdict(stand_in.SandboxPolicy.default()) == real
    assert stand_in.PythonDockerRunner().policy.workdir == PythonDockerRunner().policy.workdir


def test_the_stand_in_runs_nothing(stand_in: ModuleType) -> None:
    with pytest.raises(RuntimeError, match="stand-in"):
        stand_in.PythonDockerRunner().run("print(1)")
