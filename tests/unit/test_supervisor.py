"""The supervisor's deadline, cancel, flood, grace and Ctrl-C paths, with a fake program.

Pure logic: a scripted program and a fake clock, so each path runs in
milliseconds. The real-engine tests (tests/integration) prove the wiring.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence

import pytest

from dockermagic.errors import InvalidArgumentError
from dockermagic.streams import OutputCollector
from dockermagic.supervisor import (
    Exited,
    Output,
    StopReason,
    StreamEnded,
    check_timeout,
    supervise,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeProgram:
    """Plays a script of (seconds, events) steps; obeys stop like a real program would."""

    def __init__(
        self,
        clock: Clock,
        steps: Sequence[tuple[float, list[Output | Exited] | type[StreamEnded]]],
        *,
        keep_reading: bool = True,
        stops_after: float | None = 0.5,
    ) -> None:
        self.clock = clock
        self.steps = deque(steps)
        self.keep_reading = keep_reading
        self.stops_after = stops_after
        self.stops: list[StopReason] = []
        self.forced = False
        self.stopped_at: float | None = None

    def receive(self, timeout: float) -> Sequence[Output | Exited]:
        stopped, after = self.stopped_at, self.stops_after
        if stopped is not None and after is not None and self.clock.now - stopped >= after:
            return [Exited(130)]
        if self.steps and self.steps[0][0] <= timeout:
            delay, events = self.steps.popleft()
            self.clock.now += delay
            if events is StreamEnded:
                raise StreamEnded()
            assert isinstance(events, list)
            return events
        if self.steps:
            delay, events = self.steps.popleft()
            self.steps.appendleft((delay - timeout, events))
        self.clock.now += timeout
        return []

    def stop(self, reason: StopReason) -> bool:
        self.stops.append(reason)
        if self.stopped_at is None:
            self.stopped_at = self.clock.now
        return self.keep_reading

    def force_stop(self) -> None:
        self.forced = True


def out(text: str, stream: str = "stdout") -> Output:
    return Output(stream, text.encode())


def test_a_program_that_finishes_reports_its_exit_and_output() -> None:
    clock = Clock()
    program = FakeProgram(clock, [(0.05, [out("a\n")]), (0.05, [out("b\n", "stderr"), Exited(3)])])
    collector = OutputCollector(100)
    watch = supervise(program, limit=5, collector=collector, clock=clock)
    assert (watch.exit_code, watch.reason, watch.forced) == (3, None, False)
    assert collector.text("stdout") == "a\n"
    assert collector.text("stderr") == "b\n"
    assert watch.duration == pytest.approx(0.1)
    assert program.stops == []


def test_the_deadline_stops_the_program_and_keeps_reading_its_last_words() -> None:
    clock = Clock()
    program = FakeProgram(clock, [(10.0, [out("never")])], stops_after=0.3)
    collector = OutputCollector(100)
    watch = supervise(program, limit=2, collector=collector, clock=clock)
    assert program.stops == [StopReason.TIMEOUT]
    assert watch.timed_out
    assert not watch.cancelled
    assert watch.exit_code == 130
    assert watch.duration == pytest.approx(2.3, abs=0.11)


def test_a_program_that_ignores_its_stop_is_forced_after_the_grace() -> None:
    clock = Clock()
    program = FakeProgram(clock, [(60.0, [])], stops_after=None)
    watch = supervise(program, limit=1, collector=OutputCollector(100), grace=2.0, clock=clock)
    assert watch.timed_out
    assert watch.forced
    assert program.forced
    assert watch.duration == pytest.approx(3.0, abs=0.11)


def test_a_program_cut_off_at_once_is_not_read_further() -> None:
    clock = Clock()
    program = FakeProgram(clock, [(60.0, [])], keep_reading=False)
    watch = supervise(program, limit=1, collector=OutputCollector(100), clock=clock)
    assert watch.timed_out
    assert not watch.forced
    assert watch.duration == pytest.approx(1.0)


def test_cancel_is_noticed_within_a_poll() -> None:
    clock = Clock()
    cancel = threading.Event()

    class Cancelling(FakeProgram):
        def receive(self, timeout: float) -> Sequence[Output | Exited]:
            if clock.now >= 100.35:
                cancel.set()
            return super().receive(timeout)

    program = Cancelling(clock, [(60.0, [])], keep_reading=False)
    watch = supervise(program, limit=30, collector=OutputCollector(100), cancel=cancel, clock=clock)
    assert program.stops == [StopReason.CANCEL]
    assert watch.cancelled
    assert not watch.timed_out
    # Set at 0.4 s (the first read after 0.35 s); noticed one poll later.
    assert watch.duration <= 0.4 + 0.1 + 1e-9


def test_a_flood_stops_the_program_and_keeps_exactly_the_cap() -> None:
    clock = Clock()
    steps: list[tuple[float, list[Output | Exited] | type[StreamEnded]]] = [
        (0.01, [out("x" * 40)]) for _ in range(10)
    ]
    program = FakeProgram(clock, steps, keep_reading=False)
    collector = OutputCollector(100)
    watch = supervise(program, limit=30, collector=collector, clock=clock)
    assert program.stops == [StopReason.OUTPUT_LIMIT]
    assert watch.truncated
    assert len(collector.text("stdout")) == 100


def test_a_session_flood_is_drained_after_the_stop() -> None:
    # A session's cell is interrupted and read to its end, its output dropped.
    clock = Clock()
    steps: list[tuple[float, list[Output | Exited] | type[StreamEnded]]] = [
        (0.01, [out("y" * 60)]),
        (0.01, [out("y" * 60)]),
        (0.01, [out("y" * 60), Exited(130)]),
    ]
    program = FakeProgram(clock, steps, stops_after=None)
    collector = OutputCollector(100)
    watch = supervise(program, limit=30, collector=collector, clock=clock)
    assert program.stops == [StopReason.OUTPUT_LIMIT]
    assert watch.exit_code == 130
    assert watch.truncated
    assert not watch.forced
    assert collector.total_bytes == 100


def test_an_ended_stream_ends_the_watch() -> None:
    clock = Clock()
    program = FakeProgram(clock, [(0.2, [out("bye\n")]), (0.1, StreamEnded)])
    collector = OutputCollector(100)
    watch = supervise(program, limit=5, collector=collector, clock=clock)
    assert watch.ended
    assert watch.exit_code is None
    assert collector.text("stdout") == "bye\n"


def test_ctrl_c_stops_the_program_before_it_goes_on() -> None:
    clock = Clock()

    class Interrupted(FakeProgram):
        calls = 0

        def receive(self, timeout: float) -> Sequence[Output | Exited]:
            self.calls += 1
            if self.calls == 3 and not self.stops:
                raise KeyboardInterrupt
            return super().receive(timeout)

    program = Interrupted(clock, [(60.0, [])], stops_after=0.2)
    with pytest.raises(KeyboardInterrupt):
        supervise(program, limit=30, collector=OutputCollector(100), clock=clock)
    assert program.stops == [StopReason.INTERRUPT]
    assert not program.forced


def test_a_failing_output_callback_stops_the_program_too() -> None:
    clock = Clock()

    def broken(stream: str, text: str) -> None:
        raise RuntimeError("display gone")

    program = FakeProgram(clock, [(0.01, [out("a")]), (60.0, [])], stops_after=None)
    with pytest.raises(RuntimeError, match="display gone"):
        supervise(program, limit=30, collector=OutputCollector(100, broken), clock=clock)
    assert program.stops == [StopReason.INTERRUPT]
    assert program.forced  # it never stopped: forced after the grace


@pytest.mark.parametrize("bad", [0, -1, float("nan"), True, "5"])
def test_timeouts_are_checked_in_one_place(bad: object) -> None:
    with pytest.raises(InvalidArgumentError, match="timeout"):
        check_timeout(bad, 30)  # type: ignore[arg-type]
    assert check_timeout(None, 30) == 30.0
    assert check_timeout(2, 30) == 2.0
