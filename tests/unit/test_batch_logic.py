"""Pure logic of the batch runner: discovery, status mapping, tails, reports."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from dockermagic.batch import (
    STATUSES,
    BatchEvent,
    BatchReport,
    OutputTail,
    ScriptResult,
    batch_status,
    default_workers,
    discover_scripts,
    run_scripts,
)
from dockermagic.batch.cache import RunnerCache
from dockermagic.batch.script import Task, run_task
from dockermagic.cli import build_parser
from dockermagic.console import key_line
from dockermagic.errors import InvalidArgumentError
from dockermagic.policy import SandboxPolicy
from dockermagic.runners import AbstractDockerCodeRunner, register_runner, unregister_runner
from tests.support import make_result


def _touch(folder: Path, *names: str) -> None:
    for name in names:
        (folder / name).write_text("x\n")


def test_discovery_sorts_scripts_and_reports_other_files(tmp_path: Path) -> None:
    _touch(tmp_path, "b.py", "a.js", "c.mjs", "d.cjs", "notes.txt", "Makefile", "E.PY")
    (tmp_path / "data").mkdir()
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "inner.py").write_text("x\n")
    found = discover_scripts(tmp_path)
    assert [p.name for p in found.scripts] == ["E.PY", "a.js", "b.py", "c.mjs", "d.cjs"]
    assert found.ignored == ("Makefile", "notes.txt")
    assert found.data_dir == tmp_path / "data"


def test_discovery_without_data_folder(tmp_path: Path) -> None:
    _touch(tmp_path, "a.py")
    assert discover_scripts(tmp_path).data_dir is None


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: None, "holds no scripts"),
        (lambda p: _touch(p, "readme.md", "x.rb"), "holds no runnable script"),
        (lambda p: (p / "sub").mkdir() or _touch(p / "sub", "a.py"), "holds no scripts"),
    ],
)
def test_discovery_rejects_folders_without_scripts(
    tmp_path: Path, setup: object, message: str
) -> None:
    setup(tmp_path)  # type: ignore[operator]
    with pytest.raises(InvalidArgumentError, match=message):
        discover_scripts(tmp_path)


def test_discovery_rejects_missing_folder_and_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="no such folder"):
        discover_scripts(tmp_path / "nope")
    _touch(tmp_path, "a.py")
    with pytest.raises(InvalidArgumentError, match="is not a folder"):
        discover_scripts(tmp_path / "a.py")


@pytest.mark.parametrize(
    ("changes", "status"),
    [
        ({}, "ok"),
        ({"exit_code": 1}, "failed"),
        ({"exit_code": 137, "timed_out": True}, "timed_out"),
        ({"exit_code": 137, "oom_killed": True}, "oom"),
        ({"exit_code": 137, "output_truncated": True}, "failed"),
        ({"exit_code": 137, "cancelled": True, "timed_out": True}, "cancelled"),
    ],
)
def test_status_mapping(changes: dict[str, object], status: str) -> None:
    assert batch_status(make_result(**changes)) == status
    assert status in STATUSES


def test_output_tail_keeps_last_lines_interleaved() -> None:
    tail = OutputTail(lines=3, chars=1000)
    for i in range(10):
        tail.add("stdout" if i % 2 else "stderr", f"line {i}\n")
    assert tail.text() == "line 7\nline 8\nline 9"


def test_output_tail_is_bounded() -> None:
    tail = OutputTail(lines=5, chars=100)
    for _ in range(1000):
        tail.add("stdout", "x" * 30)
    tail.add("stdout", "y" * 10_000)
    assert len(tail.text()) <= 100
    assert tail.text().endswith("y")


def _script(name: str, status: str) -> ScriptResult:
    return ScriptResult(name=name, path=f"/s/{name}", language="python", status=status)


def test_report_totals_ok_and_json() -> None:
    report = BatchReport(
        directory="/s",
        mode="parallel",
        workers=2,
        run_id="abc",
        results=(_script("a.py", "ok"), _script("b.py", "failed"), _script("c.py", "cancelled")),
        ignored=("notes.txt",),
        wall_time=1.23456,
    )
    assert report.totals == {
        "ok": 1,
        "failed": 1,
        "timed_out": 0,
        "oom": 0,
        "error": 0,
        "cancelled": 1,
    }
    assert not report.ok
    assert set(report.by_name()) == {"a.py", "b.py", "c.py"}
    data = json.loads(report.to_json())
    assert data["totals"]["failed"] == 1
    assert data["ok"] is False
    assert data["wall_time"] == 1.235
    assert data["ignored"] == ["notes.txt"]
    assert [r["status"] for r in data["results"]] == ["ok", "failed", "cancelled"]


def test_report_of_all_ok_is_ok() -> None:
    report = BatchReport("/s", "sequential", 1, "x", (_script("a.py", "ok"),))
    assert report.ok
    assert not BatchReport("/s", "sequential", 1, "x", ()).ok


def test_default_workers_bounds() -> None:
    assert default_workers(1) == 1
    assert 1 <= default_workers(100) <= 100


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mode": "sideways"},
        {"mode": "parallel", "workers": 0},
        {"mode": "parallel", "workers": -3},
        {"timeout": 0},
        {"timeout": -1.0},
        {"backend": "kubernetes"},
    ],
)
def test_run_scripts_rejects_bad_arguments_before_running(
    tmp_path: Path, kwargs: dict[str, object]
) -> None:
    _touch(tmp_path, "a.py")
    with pytest.raises(InvalidArgumentError):
        run_scripts(tmp_path, log_dir=tmp_path / "logs", **kwargs)  # type: ignore[arg-type]
    assert not (tmp_path / "logs").exists()


def _runners() -> RunnerCache:
    # Never asked for a runner here: these tasks cannot or need not run.
    return RunnerCache(SandboxPolicy.default(), "r1")


def test_infrastructure_error_becomes_an_error_result(tmp_path: Path) -> None:
    task = Task(
        index=0,
        total=1,
        path=str(tmp_path / "a.py"),
        name="a.py",
        language="python",
        image="missing:image",
        problem="Image 'missing:image' is not available",
        include=(),
        timeout=None,
        run_id="r1",
        log_file="",
    )
    events: list[BatchEvent] = []
    result = run_task(task, _runners(), events.append, threading.Event())
    assert result.status == "error"
    assert "not available" in result.message
    assert result.exit_code is None
    assert [e.kind for e in events] == ["start", "finish"]
    assert events[-1].result == result


def test_cancelled_task_is_not_started(tmp_path: Path) -> None:
    task = Task(0, 1, str(tmp_path / "a.py"), "a.py", "python", "img", "", (), None, "r", "")
    cancel = threading.Event()
    cancel.set()
    events: list[BatchEvent] = []
    result = run_task(task, _runners(), events.append, cancel)
    assert result.status == "cancelled"
    assert events == []


@pytest.mark.parametrize(
    ("argv", "parallel"),
    [
        (["run"], None),
        (["run", "d", "--parallel"], "auto"),
        (["run", "d", "--parallel", "3"], 3),
        (["run", "d", "--parallel", "0"], 0),
        (["run", "--sequential", "d"], None),
    ],
)
def test_cli_run_arguments(argv: list[str], parallel: object) -> None:
    args = build_parser().parse_args(argv)
    assert args.parallel == parallel
    assert args.directory in ("d", "scripts")


def test_cli_sequential_and_parallel_exclude_each_other() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--sequential", "--parallel"])


def test_only_rejects_unknown_or_empty_selection(tmp_path: Path) -> None:
    _touch(tmp_path, "a.py", "b.js")
    with pytest.raises(InvalidArgumentError, match=r"c\.py"):
        run_scripts(tmp_path, only=["a.py", "c.py"], log_dir=tmp_path / "logs")
    with pytest.raises(InvalidArgumentError, match="at least one"):
        run_scripts(tmp_path, only=[], log_dir=tmp_path / "logs")
    assert not (tmp_path / "logs").exists()


@pytest.mark.parametrize(
    ("tail", "line"),
    [
        (
            "Traceback (most recent call last):\n  File x\nValueError: bad value",
            "ValueError: bad value",
        ),
        (
            "/code/c.js:1\nthrow new Error('boom');\n^\n\nError: boom\n    at Object.<anonymous>\n"
            "\nNode.js v18.20.4",
            "Error: boom",
        ),
        ("just some output\nlast words\n", "last words"),
        ("", ""),
    ],
)
def test_key_line_of_a_failure(tail: str, line: str) -> None:
    assert key_line(tail) == line


def test_cli_image_options_come_from_the_registry(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["run", "--image-py", "p:1", "--image-js", "j:1"])
    assert (args.image_python, args.image_javascript) == ("p:1", "j:1")
    args = build_parser().parse_args(["run", "--image-python", "p:2", "--image-javascript", "j:2"])
    assert (args.image_python, args.image_javascript) == ("p:2", "j:2")

    @register_runner
    class RubyRunner(AbstractDockerCodeRunner):
        language = "ruby"
        aliases = ("rb",)
        suffixes = (".rb",)
        default_image = "ruby:3-slim"
        image_env_var = "DOCKERMAGIC_RUBY_IMAGE"
        filename = "main.rb"

        def command(self, path: str) -> list[str]:
            return ["ruby", path]

        def environment(self) -> dict[str, str]:
            return {}

    try:
        parser = build_parser()
        assert parser.parse_args(["run", "--image-rb", "r:1"]).image_ruby == "r:1"
        with pytest.raises(SystemExit):
            parser.parse_args(["run", "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "Run the .py, .js, .mjs, .cjs and .rb files" in text
        assert "--image-ruby IMG, --image-rb IMG" in text
    finally:
        unregister_runner("ruby")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--image-rb", "r:1"])
