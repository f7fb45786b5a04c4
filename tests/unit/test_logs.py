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
    OutputMirror,
    log_result,
    prepare_log_dir,
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
