"""The logging set-up: many writers, one file writer, daily rotation, clear errors."""

from __future__ import annotations

import logging
import logging.handlers
import multiprocessing
import os
import re
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from dockermagic.errors import LogDirectoryError
from dockermagic.logs import (
    MAX_NAME_CHARS,
    OutputMirror,
    current_sink,
    escape_line,
    log_result,
    prepare_log_dir,
    safe_log_name,
    start_logging,
    worker_logging,
)
from dockermagic.result import RunResult

LINE = re.compile(r"^\S+ \S+ run=w(\d) stdout \| line (\d+) of worker (\d) x{40}$")


def _writer(queue: Any, worker: int, lines: int) -> None:
    worker_logging(queue)
    mirror = OutputMirror("shared", f"w{worker}")
    for i in range(lines):
        # Half the lines arrive as two chunks, as real output does.
        text = f"line {i} of worker {worker} " + "x" * 40 + "\n"
        if i % 2:
            mirror("stdout", text[:7])
            mirror("stdout", text[7:])
        else:
            mirror("stdout", text)
    mirror.close()


def test_eight_processes_lose_nothing_across_a_forced_rollover(tmp_path: Path) -> None:
    workers, lines = 8, 10_000
    sink = start_logging(tmp_path)
    try:
        context = multiprocessing.get_context("spawn")
        processes = [
            context.Process(target=_writer, args=(sink.queue, w, lines)) for w in range(workers)
        ]
        for process in processes:
            process.start()
        # Rotate while they write: wait for the file, then force a rollover.
        deadline = time.monotonic() + 60
        target = sink.output_path("shared")
        while (not target.exists() or target.stat().st_size < 200_000) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.01)
        sink.force_rollover()
        for process in processes:
            process.join(120)
            assert process.exitcode == 0
        assert sink.flush()
    finally:
        sink.stop()
    files = sorted(tmp_path.glob("shared.log*"))
    assert len(files) == 2, files  # the live file and one rotated file
    seen: set[tuple[int, int]] = set()
    total = 0
    for path in files:
        for text in path.read_text(encoding="utf-8").splitlines():
            match = LINE.match(text)
            assert match, f"torn or foreign line in {path.name}: {text!r}"
            worker, number = int(match.group(3)), int(match.group(2))
            assert int(match.group(1)) == worker
            seen.add((worker, number))
            total += 1
    assert total == workers * lines
    assert len(seen) == workers * lines  # no duplicates


class FakeClock:
    """Stands in for the ``time`` module inside logging.handlers."""

    def __init__(self, start: float) -> None:
        self.now = start

    def module(self) -> SimpleNamespace:
        return SimpleNamespace(
            time=lambda: self.now,
            localtime=time.localtime,
            gmtime=time.gmtime,
            strftime=time.strftime,
            mktime=time.mktime,
        )


def test_files_rotate_at_midnight_and_keep_the_configured_days(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    day1 = time.mktime((2026, 3, 10, 15, 0, 0, 0, 0, -1))
    clock = FakeClock(day1)
    monkeypatch.setattr(logging.handlers, "time", clock.module())
    sink = start_logging(tmp_path, backup_days=3)
    try:
        mirror = OutputMirror("daily", "r1")
        logger = logging.getLogger("dockermagic.test")
        for day in range(6):
            clock.now = day1 + day * 86400
            mirror("stdout", f"day {day}\n")
            logger.warning("app day %d", day)
            assert sink.flush()
            # Files are stamped with real time; rotation is decided by the clock.
            os.utime(sink.output_path("daily"), (clock.now, clock.now))
    finally:
        sink.stop()
    rotated = sorted(p.name for p in tmp_path.glob("daily.log.*"))
    assert rotated == ["daily.log.2026-03-12", "daily.log.2026-03-13", "daily.log.2026-03-14"]
    assert "day 5" in (tmp_path / "daily.log").read_text()
    assert "day 4" in (tmp_path / "daily.log.2026-03-14").read_text()
    assert sorted(p.name for p in tmp_path.glob("dockermagic.log.*"))[-1] == (
        "dockermagic.log.2026-03-14"
    )
    assert "app day 5" in (tmp_path / "dockermagic.log").read_text()


def test_no_rotation_within_a_day(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock(time.mktime((2026, 3, 10, 0, 5, 0, 0, 0, -1)))
    monkeypatch.setattr(logging.handlers, "time", clock.module())
    sink = start_logging(tmp_path)
    try:
        mirror = OutputMirror("same-day", "r")
        mirror("stdout", "morning\n")
        clock.now += 23 * 3600
        mirror("stdout", "night\n")
        assert sink.flush()
    finally:
        sink.stop()
    assert not list(tmp_path.glob("same-day.log.*"))


def test_output_lines_and_results_are_stamped(tmp_path: Path) -> None:
    sink = start_logging(tmp_path)
    try:
        mirror = OutputMirror("job.py", "abc123")
        mirror("stdout", "first\nsec")
        mirror("stderr", "warn\n")
        mirror("stdout", "ond\nunterminated")
        mirror.close()
        result = RunResult("python", "img:1", 1, "", "", 0.25)
        log_result("job.py", "abc123", result, origin="test")
        assert sink.flush()
    finally:
        sink.stop()
    lines = (tmp_path / "job.py.log").read_text().splitlines()
    assert [line.split(" ", 2)[2] for line in lines] == [
        "run=abc123 stdout | first",
        "run=abc123 stderr | warn",
        "run=abc123 stdout | second",
        "run=abc123 stdout | unterminated",
    ]
    app = (tmp_path / "dockermagic.log").read_text()
    assert "job.py run=abc123 python image=img:1 status=failed exit=1" in app
    assert "first" not in app  # output stays out of the application log


def test_start_logging_is_idempotent_and_reference_counted(tmp_path: Path) -> None:
    first = start_logging(tmp_path)
    second = start_logging(tmp_path)
    assert first is second
    second.stop()
    OutputMirror("still", "r")("stdout", "open\n")
    assert first.flush()
    first.stop()
    assert "open" in (tmp_path / "still.log").read_text()


def test_missing_directory_is_created(tmp_path: Path) -> None:
    assert prepare_log_dir(tmp_path / "a" / "b").is_dir()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere; see the file case")
def test_unwritable_directory_is_a_clear_error(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(LogDirectoryError, match="Cannot write logs"):
        prepare_log_dir(locked)


def test_a_directory_even_root_cannot_create_is_a_clear_error() -> None:
    with pytest.raises(LogDirectoryError, match="Cannot write logs to /proc/dockermagic-logs"):
        prepare_log_dir("/proc/dockermagic-logs")


def test_a_file_in_the_way_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "logs"
    blocker.write_text("not a directory")
    with pytest.raises(LogDirectoryError, match="Cannot write logs to") as info:
        prepare_log_dir(blocker / "inner")
    assert info.value.directory.endswith("inner")


def test_directory_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKERMAGIC_LOG_DIR", str(tmp_path / "env-logs"))
    assert prepare_log_dir() == tmp_path / "env-logs"


# -- one record, one line (issue 10, item 6) ---------------------------------------------

#: Every character str.splitlines() breaks a line at.
LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


def unescape(text: str) -> str:
    """The inverse of escape_line, as the logs module docstring describes it."""
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        nxt = text[i + 1] if i + 1 < len(text) else ""
        if char != "\\" or nxt not in "\\nrxu" or not nxt:
            out.append(char)
            i += 1
        elif nxt == "\\":
            out.append("\\")
            i += 2
        elif nxt in "nr":
            out.append("\n" if nxt == "n" else "\r")
            i += 2
        else:
            width = 2 if nxt == "x" else 4
            out.append(chr(int(text[i + 2 : i + 2 + width], 16)))
            i += 2 + width
    return "".join(out)


@pytest.mark.parametrize(
    "text",
    [
        "plain text, a tab\tand ünïcödé ✓",
        "carriage\rreturn",
        "\x1b[32mALL TESTS PASSED\x1b[0m",
        LINE_BREAKS,
        "".join(chr(c) for c in range(0x20)) + "\x7f" + "".join(chr(c) for c in range(0x80, 0xA0)),
        "bidi \u202e and \u2066 overrides",
        "a lone surrogate \udce9 from a file name",
        "backslashes: \\ \\\\ \\n \\x1b \\u2028 \\r\\\n \\\x1b end\\",
        "C:\\temp\\d+",
    ],
)
def test_escaping_is_one_line_and_reversible(text: str) -> None:
    escaped = escape_line(text)
    assert len(escaped.splitlines()) <= 1
    assert not any(ch in escaped for ch in LINE_BREAKS)
    assert not any((ord(ch) < 32 and ch != "\t") or 0x7F <= ord(ch) < 0xA0 for ch in escaped)
    escaped.encode("utf-8")  # no lone surrogate left
    assert unescape(escaped) == text


def test_ordinary_text_and_lone_backslashes_stay_as_they_are() -> None:
    for text in ("hello", "C:\\temp", "a regex \\d+\\s*", "tab\there", "ünïcödé ✓"):
        assert escape_line(text) == text
    assert escape_line("ok\rfake") == "ok\\rfake"
    assert escape_line("\\n") == "\\\\n"  # a backslash before n is doubled


def test_every_record_is_one_physical_line(tmp_path: Path) -> None:
    sink = start_logging(tmp_path)
    try:
        mirror = OutputMirror("job.py", "r1")
        forged = [
            "carriage\r2026-01-01 00:00:00,000 run=forged stdout | fake",
            # Every break but \n, which does end a line of output.
            f"breaks{LINE_BREAKS[1:]}inside",
            "\x1b[2J\x1b[32mALL TESTS PASSED",
        ]
        mirror("stdout", "\n".join(forged) + "\n")
        mirror.close()
        result = RunResult("python", "img", 1, "", "", 0.1)
        log_result("a\nline.py\u2028x", "r1", result, origin="test")
        try:
            raise ValueError("multi\nline\nerror")
        except ValueError:
            logging.getLogger("dockermagic.test").exception("failed: %s", "name\r\n")
        assert sink.flush()
    finally:
        sink.stop()
    output = tmp_path / "job.py.log"
    with open(output, encoding="utf-8") as stream:
        lines = list(stream)
    assert len(lines) == len(output.read_text(encoding="utf-8").splitlines()) == len(forged)
    assert (
        lines[0].split(" | ", 1)[1]
        == "carriage\\r2026-01-01 00:00:00,000 run=forged stdout | fake\n"
    )
    app = tmp_path / "dockermagic.log"
    with open(app, encoding="utf-8") as stream:
        records = list(stream)
    assert len(records) == len(app.read_text(encoding="utf-8").splitlines()) == 2
    assert "a\\nline.py\\u2028x run=r1" in records[0]
    assert "failed: name\\r\\nTraceback (most recent call last):\\n" in records[1]
    assert "ValueError: multi\\nline\\nerror" in records[1]


def test_a_name_that_is_not_utf8_keeps_its_record(tmp_path: Path) -> None:
    name = os.fsdecode(b"caf\xe9.py")
    sink = start_logging(tmp_path)
    try:
        mirror = OutputMirror(name, "r1")
        mirror("stdout", "hello\n")
        mirror.close()
        log_result(name, "r1", RunResult("python", "img", 0, "", "", 0.1), origin="test")
        assert sink.flush()
        output = sink.output_path(name)
    finally:
        sink.stop()
    assert "caf\\udce9.py run=r1" in (tmp_path / "dockermagic.log").read_text(encoding="utf-8")
    assert "hello" in output.read_text(encoding="utf-8")


def test_names_that_look_alike_get_their_own_files() -> None:
    names = [
        "h a.py",
        "h_a.py",
        "h\na.py",
        "h\ta.py",
        os.fsdecode(b"h\xe9a.py"),
        "dockermagic",
        "Dockermagic",
        ".hidden.py",
        "hidden.py",
        "x" * 300 + "1.py",
        "x" * 300 + "2.py",
        "",
    ]
    safe = [safe_log_name(name) for name in names]
    assert len(set(safe)) == len(names)
    for stem in safe:
        assert re.fullmatch(r"[A-Za-z0-9._-]+", stem), stem
        assert len(stem) <= MAX_NAME_CHARS
        assert stem.lower() != "dockermagic"
    # A name that is already safe keeps it.
    assert safe_log_name("h_a.py") == "h_a.py"
    assert safe_log_name("cells-python") == "cells-python"
    assert safe_log_name("h a.py").startswith("h_a.py-")


def test_current_sink_is_the_one_the_application_started(tmp_path: Path) -> None:
    assert current_sink() is None
    first = start_logging(tmp_path / "one")
    second = start_logging(tmp_path / "two")
    try:
        assert current_sink() is second
        second.stop()
        assert current_sink() is first
        # The package's records go on to the sink that is still running.
        OutputMirror("after", "r")("stdout", "still logged\n")
        assert first.flush()
        assert "still logged" in (tmp_path / "one" / "after.log").read_text()
    finally:
        first.stop()
    assert current_sink() is None
    assert logging.getLogger("dockermagic").propagate
