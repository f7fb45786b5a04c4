"""The progress model (reduced from batch events) and the terminal display that draws it."""

from __future__ import annotations

import io
import threading

from rich.console import Console

from dockermagic.batch import BatchEvent, BatchProgress, BatchReport, ScriptResult, StopSignal
from dockermagic.batch.script import Task
from dockermagic.batch.stop import StopPolicy
from dockermagic.console import ConsoleProgress, summary_table, totals_line
from dockermagic.status import Status

ESC_OUTPUT = "\x1b[32mALL TESTS PASSED\x1b[0m"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def event(kind: str, script: str, **fields: object) -> BatchEvent:
    return BatchEvent(kind, script, "python", 0, 2, **fields)  # type: ignore[arg-type]


def result(name: str, status: Status, **fields: object) -> ScriptResult:
    return ScriptResult(name=name, path=f"/s/{name}", language="python", status=status, **fields)  # type: ignore[arg-type]


def test_events_reduce_to_per_script_state() -> None:
    clock = Clock()
    model = BatchProgress([("a.py", "python"), ("b.py", "python")], output_chars=10, clock=clock)
    assert [s.status for s in model.scripts.values()] == [Status.QUEUED, Status.QUEUED]
    model(event("start", "a.py", log_file="/logs/a.py.log"))
    clock.now = 102.5
    model(event("output", "a.py", stream="stdout", text="one\ntwo\n\n"))
    model(event("output", "a.py", stream="stderr", text="warn\n"))
    a = model.scripts["a.py"]
    assert a.status is Status.RUNNING
    assert a.elapsed(clock()) == 2.5
    assert a.last_line == "warn"
    assert a.log_file == "/logs/a.py.log"
    model(event("output", "a.py", stream="stdout", text="0123456789"))
    assert a.stdout == "0123456789"
    assert a.dropped == {"stdout": 9, "stderr": 0}
    assert model.done == 0
    model(event("finish", "a.py", result=result("a.py", Status.FAILED, duration=3.0, exit_code=1)))
    assert a.status is Status.FAILED
    assert a.duration == 3.0
    assert a.exit_code == 1
    assert a.last_line == ""
    assert (model.done, model.total) == (1, 2)
    assert model.totals == {Status.FAILED: 1}


def test_the_report_finishes_scripts_that_never_started() -> None:
    model = BatchProgress([("a.py", "python"), ("b.py", "python")])
    report = BatchReport(
        "/s",
        "sequential",
        1,
        "r",
        (result("a.py", Status.OK), result("b.py", Status.CANCELLED, message="not started")),
    )
    model.finish(report)
    assert [s.status for s in model.scripts.values()] == [Status.OK, Status.CANCELLED]
    assert model.scripts["b.py"].message == "not started"
    assert model.totals == {Status.OK: 1, Status.CANCELLED: 1}


def test_abandon_marks_what_did_not_finish() -> None:
    model = BatchProgress([("a.py", "python"), ("b.py", "python")])
    model(event("finish", "a.py", result=result("a.py", Status.OK)))
    model.abandon()
    assert [s.status for s in model.scripts.values()] == [Status.OK, Status.ERROR]


def test_the_terminal_display_shows_no_escape_sequence() -> None:
    out = io.StringIO()
    console = Console(file=out, width=200, color_system=None)
    name = "\x1b[31mred\x1b[0m.py"
    model = BatchProgress([(name, "python")])
    with ConsoleProgress(console, model) as display:  # not a terminal: a line per finish
        display(event("start", name))
        display(event("output", name, stream="stdout", text=ESC_OUTPUT + "\n"))
        console.print(display._render())  # the live table's rows, as drawn
        done = result(name, Status.FAILED, exit_code=1, output_tail=ESC_OUTPUT, message="no\rway")
        display(event("finish", name, result=done))
    report = BatchReport("/s\x1b[2J", "parallel", 2, "r", (done,), wall_time=1.0)
    console.print(summary_table(report))
    console.print(totals_line(report))
    text = out.getvalue()
    assert "\x1b" not in text
    assert "\r" not in text
    assert r"\x1b[32mALL TESTS PASSED\x1b[0m" in text
    assert r"\x1b[31mred\x1b[0m.py" in text
    assert r"no\rway" in text


def task(name: str) -> Task:
    return Task(0, 1, f"/s/{name}", name, "python", "img", "", (), None, "r", "")


def test_one_stop_policy_for_every_reason() -> None:
    cancel = threading.Event()
    stop = StopPolicy(cancel, fail_fast=True)
    heard: list[str] = []
    stop.on_stop(heard.append)
    assert not stop.check()
    stop.record(result("a.py", Status.OK))
    stop.record(result("b.py", Status.CANCELLED))
    assert not stop.check()
    stop.record(result("c.py", Status.TIMED_OUT))
    assert stop.check()
    assert heard == ["c.py timed_out (fail-fast)"]
    assert not stop.cancelled  # fail-fast is not a cancellation
    assert stop.not_started(task("d.py")).message == "not started: c.py timed_out (fail-fast)"
    stop.interrupt(StopSignal(15))  # the first reason stays
    assert heard == ["c.py timed_out (fail-fast)"]
    assert stop.cancelled


def test_interrupts_and_cancel_say_why() -> None:
    stop = StopPolicy(threading.Event(), fail_fast=False)
    stop.record(result("a.py", Status.FAILED))
    assert not stop.check()
    assert stop.interrupt(StopSignal(1)) == "interrupted (SIGHUP)"
    assert stop.cut_short(task("b.py"), "interrupted (SIGHUP)").status is Status.CANCELLED
    ctrl_c = StopPolicy(threading.Event(), fail_fast=False)
    assert ctrl_c.interrupt(KeyboardInterrupt()) == "interrupted (Ctrl-C)"
    cancel = threading.Event()
    cancelled = StopPolicy(cancel, fail_fast=False)
    cancel.set()
    assert cancelled.check()
    assert cancelled.reason == "the batch was cancelled"
    assert cancelled.cancelled
