"""The exit watch's reading of an engine's event stream, event order by event order.

Pure logic: a scripted ``/events`` response stands in for the engine, so the
orders the real engine produces only now and then (an ``oom`` after the
``die``, seen in CI with a TLS engine on a loaded machine) run every time.
The real-engine OOM tests (tests/integration) prove the wiring.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from dockermagic.container import SIGKILL_STATUS, ExitWatch
from dockermagic.profiles import DOCKER, PODMAN


class ScriptedResponse:
    """An ``/events`` response: its lines, then (optionally) a stream that stays open."""

    status_code = 200

    def __init__(self, lines: list[bytes], *, hold_open: bool) -> None:
        self._lines = lines
        self._hold_open = hold_open
        self.release = threading.Event()
        self.closed = False

    def iter_lines(self) -> Iterator[bytes]:
        yield from self._lines
        if self._hold_open:
            self.release.wait(10)

    def close(self) -> None:
        self.closed = True


class ScriptedAPI:
    base_url = "http+docker://localhost"
    api_version = "1.43"

    def __init__(self, response: ScriptedResponse) -> None:
        self.response = response

    def get(self, url: str, **kwargs: Any) -> ScriptedResponse:
        assert url.endswith("/events")
        return self.response


class ScriptedClient:
    def __init__(self, response: ScriptedResponse) -> None:
        self.api = ScriptedAPI(response)


def event(action: str, exit_code: int | None = None) -> bytes:
    attributes = {} if exit_code is None else {"exitCode": str(exit_code)}
    return json.dumps(
        {"Type": "container", "Action": action, "Actor": {"Attributes": attributes}}
    ).encode()


def watch(
    lines: list[bytes], *, hold_open: bool = False, profile: Any = DOCKER
) -> tuple[ExitWatch, ScriptedResponse]:
    response = ScriptedResponse(lines, hold_open=hold_open)
    return ExitWatch(ScriptedClient(response), "c1", profile=profile), response  # type: ignore[arg-type]


def test_an_oom_reported_before_the_exit() -> None:
    w, _ = watch([event("oom"), event("die", SIGKILL_STATUS)])
    state = w.wait(5, oom_grace=2)
    assert state is not None
    assert (state.exit_code, state.oom_killed) == (SIGKILL_STATUS, True)


def test_an_oom_reported_after_the_exit_is_still_seen() -> None:
    w, response = watch([event("die", SIGKILL_STATUS), event("oom"), event("destroy")])
    state = w.wait(5, oom_grace=2)
    assert state is not None
    assert state.oom_killed
    assert w.died.wait(5)
    assert response.closed


def test_a_removal_ends_the_wait_for_a_late_oom() -> None:
    w, _ = watch([event("die", SIGKILL_STATUS), event("destroy")])
    state = w.wait(5, oom_grace=30)
    assert state is not None
    assert (state.exit_code, state.oom_killed) == (SIGKILL_STATUS, False)


def test_the_late_oom_is_awaited_only_for_the_grace() -> None:
    # No oom and no removal yet: the wait gives up after its grace.
    w, response = watch([event("die", SIGKILL_STATUS)], hold_open=True)
    try:
        state = w.wait(5, oom_grace=0.2)
        assert state is not None
        assert not state.oom_killed
        assert not w.died.is_set(), "still reading for the oom"
    finally:
        response.release.set()
    assert w.died.wait(5)
    assert not w.broken


@pytest.mark.parametrize("status", [0, 1, 134])
def test_an_ordinary_exit_ends_the_reading_at_once(status: int) -> None:
    w, response = watch([event("die", status)], hold_open=True)
    try:
        assert w.died.wait(5), "no wait for an oom after an exit that is not a SIGKILL"
        state = w.wait(0)
        assert state is not None
        assert (state.exit_code, state.oom_killed) == (status, False)
    finally:
        response.release.set()


def test_a_stream_that_ends_without_an_exit_is_broken() -> None:
    w, _ = watch([event("oom")])
    assert w.wait(5) is None
    assert w.broken


def test_podman_names_its_removal_remove() -> None:
    w, _ = watch([event("died", SIGKILL_STATUS), event("remove")], profile=PODMAN)
    state = w.wait(5, oom_grace=30)
    assert state is not None
    assert state.exit_code == SIGKILL_STATUS
    assert w.died.is_set()
