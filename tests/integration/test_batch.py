"""The batch runner against the real engine: modes, statuses, fail-fast, cancel, logs."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import docker
import pytest

from dockermagic import BatchEvent, BatchReport, run_scripts
from dockermagic.cleanup import list_containers
from dockermagic.logs import current_sink, start_logging

TAG = os.environ["DOCKERMAGIC_TAG"]


#: Per-script timeout of the mixed folder: long enough for a cold container
#: on a busy 2-core machine, short enough for the timing-out script.
TIMEOUT = 4.0

MIXED = {
    "a_hello.py": "print('hello from python')\n",
    "b_data.py": (
        "from pathlib import Path\n"
        "text = (Path(__file__).parent / 'data' / 'input.txt').read_text()\n"
        "print('data says', text.strip())\n"
    ),
    "c_fail.py": "import sys\nprint('about to fail')\nsys.exit(3)\n",
    "d_syntax.py": "print('unbalanced'\n",
    "e_slow.py": "import time\nprint('sleeping', flush=True)\ntime.sleep(60)\n",
    "f_hello.js": "console.log('hello from node');\n",
    "g_module.mjs": "const x = await Promise.resolve(42);\nconsole.log(`module ${x}`);\n",
    "notes.txt": "not a script\n",
}

EXPECTED = {
    "a_hello.py": "ok",
    "b_data.py": "ok",
    "c_fail.py": "failed",
    "d_syntax.py": "failed",
    "e_slow.py": "timed_out",
    "f_hello.js": "ok",
    "g_module.mjs": "ok",
}


def make_folder(root: Path, scripts: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, code in scripts.items():
        (root / name).write_text(code)
    return root


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = make_folder(tmp_path_factory.mktemp("mixed") / "scripts", MIXED)
    (folder / "data").mkdir()
    (folder / "data" / "input.txt").write_text("forty-two\n")
    return folder


@pytest.fixture(scope="module")
def reports(
    mixed: Path, tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient
) -> dict[str, tuple[BatchReport, list[BatchEvent], Path]]:
    runs = {}
    for mode in ("sequential", "parallel"):
        logs = tmp_path_factory.mktemp(f"logs-{mode}")
        events: list[BatchEvent] = []
        report = run_scripts(
            mixed,
            mode=mode,  # type: ignore[arg-type]
            workers=2,
            timeout=TIMEOUT,
            on_event=events.append,
            log_dir=logs,
        )
        runs[mode] = (report, events, logs)
    return runs


@pytest.mark.gateway
@pytest.mark.parametrize("mode", ["sequential", "parallel"])
def test_each_script_reported_with_its_status(
    reports: dict[str, tuple[BatchReport, list[BatchEvent], Path]], mode: str
) -> None:
    report, _, _ = reports[mode]
    assert {r.name: r.status for r in report.results} == EXPECTED
    assert [r.name for r in report.results] == sorted(EXPECTED)
    assert report.ignored == ("notes.txt",)
    assert not report.ok
    assert not report.cancelled
    assert report.totals["ok"] == 4
    results = report.by_name()
    assert results["c_fail.py"].exit_code == 3
    assert "about to fail" in results["c_fail.py"].output_tail
    assert "SyntaxError" in results["d_syntax.py"].output_tail
    assert "data says forty-two" in results["b_data.py"].output_tail
    assert results["f_hello.js"].language == "javascript"
    assert results["e_slow.py"].duration >= TIMEOUT
    assert report.workers == (1 if mode == "sequential" else 2)


@pytest.mark.gateway
def test_sequential_and_parallel_agree(
    reports: dict[str, tuple[BatchReport, list[BatchEvent], Path]],
) -> None:
    def outcome(report: BatchReport) -> list[tuple[str, str, str, int | None, str]]:
        return [(r.name, r.language, r.status, r.exit_code, r.output_tail) for r in report.results]

    assert outcome(reports["sequential"][0]) == outcome(reports["parallel"][0])

    # The timing-out script overlaps the others in parallel: another script
    # starts while it runs. (Read from the events, not the wall times: a
    # worker's start-up eats most of the gain on 7 short scripts, so which
    # mode is faster depends on the machine's load and the engine.)
    def started_during_slow(events: list[BatchEvent]) -> list[str]:
        marks = [(e.kind, e.script) for e in events if e.kind in ("start", "finish")]
        begin, end = marks.index(("start", "e_slow.py")), marks.index(("finish", "e_slow.py"))
        return [script for kind, script in marks[begin + 1 : end] if kind == "start"]

    assert started_during_slow(reports["parallel"][1])
    assert not started_during_slow(reports["sequential"][1])


@pytest.mark.gateway
@pytest.mark.parametrize("mode", ["sequential", "parallel"])
def test_events_start_output_finish(
    reports: dict[str, tuple[BatchReport, list[BatchEvent], Path]], mode: str
) -> None:
    _, events, _ = reports[mode]
    for name in EXPECTED:
        mine = [e for e in events if e.script == name]
        kinds = [e.kind for e in mine]
        assert kinds[0] == "start"
        assert kinds[-1] == "finish"
        assert kinds.count("finish") == 1
        assert all(k == "output" for k in kinds[1:-1])
    hello = "".join(e.text for e in events if e.script == "a_hello.py" and e.kind == "output")
    assert hello == "hello from python\n"
    assert {e.total for e in events} == {len(EXPECTED)}


@pytest.mark.gateway
@pytest.mark.parametrize("mode", ["sequential", "parallel"])
def test_logs_hold_every_scripts_output(
    reports: dict[str, tuple[BatchReport, list[BatchEvent], Path]], mode: str
) -> None:
    report, _, logs = reports[mode]
    expected_lines = {
        "a_hello.py": "hello from python",
        "b_data.py": "data says forty-two",
        "c_fail.py": "about to fail",
        "d_syntax.py": "SyntaxError",
        "e_slow.py": "sleeping",
        "f_hello.js": "hello from node",
        "g_module.mjs": "module 42",
    }
    for result in report.results:
        log = Path(result.log_file)
        assert log.parent == logs
        text = log.read_text()
        assert expected_lines[result.name] in text
        assert f"run={report.run_id}" in text
    app_log = (logs / "dockermagic.log").read_text()
    for name, status in EXPECTED.items():
        assert f"{name} run={report.run_id}" in app_log
        assert f"status={status}" in app_log


@pytest.mark.gateway
def test_fail_fast_parallel_kills_the_rest(tmp_path: Path) -> None:
    folder = make_folder(
        tmp_path / "scripts",
        {
            "a_fail.py": "raise SystemExit(1)\n",
            "b_slow.py": "import time\ntime.sleep(60)\n",
            "c_ok.py": "print('never')\n",
            "d_ok.py": "print('never')\n",
        },
    )
    started = time.monotonic()
    report = run_scripts(
        folder, mode="parallel", workers=2, fail_fast=True, log_dir=tmp_path / "logs"
    )
    assert time.monotonic() - started < 20
    statuses = {r.name: r.status for r in report.results}
    assert statuses == {
        "a_fail.py": "failed",
        "b_slow.py": "cancelled",
        "c_ok.py": "cancelled",
        "d_ok.py": "cancelled",
    }


@pytest.mark.gateway
def test_only_runs_the_chosen_scripts(tmp_path: Path) -> None:
    folder = make_folder(
        tmp_path / "scripts", {"a.py": "print(1)\n", "b.py": "print(2)\n", "c.js": "x(\n"}
    )
    report = run_scripts(folder, only=["b.py"], log_dir=tmp_path / "logs")
    assert [(r.name, r.status) for r in report.results] == [("b.py", "ok")]


@pytest.mark.gateway
def test_fail_fast_sequential_starts_nothing_more(tmp_path: Path) -> None:
    folder = make_folder(
        tmp_path / "scripts",
        {"a_ok.py": "print(1)\n", "b_fail.js": "process.exit(2)\n", "c_ok.py": "print(3)\n"},
    )
    events: list[BatchEvent] = []
    report = run_scripts(folder, fail_fast=True, on_event=events.append, log_dir=tmp_path / "l")
    assert [r.status for r in report.results] == ["ok", "failed", "cancelled"]
    assert report.results[1].exit_code == 2
    assert ("start", "c_ok.py") not in {(e.kind, e.script) for e in events}
    assert ("finish", "c_ok.py") in {(e.kind, e.script) for e in events}


@pytest.mark.gateway
@pytest.mark.parametrize("mode", ["sequential", "parallel"])
def test_cancel_mid_batch_leaves_no_container(
    tmp_path: Path, mode: str, docker_client: docker.DockerClient
) -> None:
    folder = make_folder(
        tmp_path / "scripts",
        {f"s{i}.py": "import time\nprint('up', flush=True)\ntime.sleep(60)\n" for i in range(4)},
    )
    cancel = threading.Event()
    seen_output: list[str] = []

    def on_event(event: BatchEvent) -> None:
        if event.kind == "output":
            seen_output.append(event.script)
            # Cancel once a script is really running (its output arrived).
            threading.Timer(0.3, cancel.set).start()

    started = time.monotonic()
    report = run_scripts(
        folder, mode=mode, workers=2, on_event=on_event, cancel=cancel, log_dir=tmp_path / "l"
    )
    assert time.monotonic() - started < 20
    assert seen_output
    assert report.cancelled
    assert {r.status for r in report.results} == {"cancelled"}
    # Nothing left, right away (not only after the autouse fixture's grace period).
    assert list_containers(docker_client, tag=TAG) == []


def test_missing_image_is_an_error_for_its_scripts_only(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "scripts", {"a.py": "print(1)\n", "b.js": "console.log(2)\n"})
    report = run_scripts(
        folder,
        mode="parallel",
        images={"py": "dockermagic/no-such-image:never"},
        log_dir=tmp_path / "logs",
    )
    results = report.by_name()
    assert results["a.py"].status == "error"
    assert "no-such-image" in results["a.py"].message
    assert results["b.js"].status == "ok"


@pytest.mark.gateway
def test_shipped_example_scripts_all_succeed(tmp_path: Path) -> None:
    scripts = Path(__file__).resolve().parents[2] / "scripts"
    report = run_scripts(scripts, mode="parallel", log_dir=tmp_path / "logs")
    assert {r.name: r.status for r in report.results} == {r.name: "ok" for r in report.results}
    names = {r.name for r in report.results}
    assert {"primes.py", "compress_logs.py", "word_count.py", "subprocess_demo.py"} <= names
    assert {".js", ".mjs"} <= {Path(n).suffix for n in names}
    assert "verified 4 files" in report.by_name()["compress_logs.py"].output_tail


def test_a_library_call_without_a_sink_leaves_logging_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DOCKERMAGIC_LOG_DIR", raising=False)
    folder = make_folder(
        tmp_path / "scripts", {"a.py": "print('one')\n", "b.py": "raise SystemExit(1)\n"}
    )

    def logging_state() -> list[object]:
        package, output = logging.getLogger("dockermagic"), logging.getLogger("dockermagic.output")
        return [
            (logger.propagate, list(logger.handlers), logger.level)
            for logger in (package, output, logging.getLogger())
        ]

    before = logging_state()
    for mode in ("sequential", "parallel"):
        report = run_scripts(folder, mode=mode)  # type: ignore[arg-type]
        assert [r.status for r in report.results] == ["ok", "failed"]
        assert report.log_dir == ""
        assert [r.log_file for r in report.results] == ["", ""]
    assert not (tmp_path / "logs").exists()
    assert current_sink() is None
    assert logging_state() == before


def test_a_sink_from_the_caller_is_used_and_left_running(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "scripts", {"a.py": "print('into the sink')\n"})
    sink = start_logging(tmp_path / "logs")
    try:
        report = run_scripts(folder, mode="parallel", log_sink=sink)
        assert current_sink() is sink  # still the caller's, still running
        assert report.log_dir == str(tmp_path / "logs")
        assert "into the sink" in Path(report.results[0].log_file).read_text()
    finally:
        sink.stop()
