"""The gateway's status page and its cookies, pure logic: what each user sees,
hostile names escaped, signed cookie values. The page behind the real Hub's
login is in tests/integration/test_hub.py."""

from __future__ import annotations

from typing import Any

from dockermagic.gateway.config import User
from dockermagic.gateway.oauth import CookieSigner, oauth_missing
from dockermagic.gateway.page import message_page, status_page, visible_status

HOSTILE = '<script>alert("x")</script>'


def status() -> dict[str, Any]:
    row = {"running": 1, "waiting": 0, "sessions": 1, "cpu_seconds_last_hour": 2.5}
    return {
        "version": "1.0",
        "capacity": 4,
        "running": 2,
        "waiting": 1,
        "users": {"alice": dict(row), HOSTILE: dict(row)},
        "programs": [
            {"id": "p1", "user": "alice", "language": "python", "session": None,
             "state": "running", "seconds": 1.5},
            {"id": "p2", "user": HOSTILE, "language": "python", "session": "s&t",
             "state": "waiting", "seconds": 0.25},
        ],
        "sessions": [
            {"id": "s1", "user": "alice", "name": "work", "language": "python", "runs": 3,
             "restarts": 0, "container": "c1", "busy": False, "idle_seconds": 4.0},
            {"id": "s2", "user": HOSTILE, "name": "s&t", "language": "javascript", "runs": 1,
             "restarts": 1, "container": "c2", "busy": True, "idle_seconds": 0.0},
        ],
    }  # fmt: skip


TEACHER = User(name="mrs-smith", token_sha256="", teacher=True)
ALICE = User(name="alice", token_sha256="")


def test_a_teacher_sees_everyone_escaped() -> None:
    page = status_page(status(), TEACHER)
    assert "<script>" not in page
    escaped = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"
    assert f"<tr><td>{escaped}</td><td>s&amp;t</td><td>javascript</td>" in page
    assert "<tr><td>alice</td><td>work</td><td>python</td>" in page
    assert '<strong id="user">mrs-smith</strong> (teacher' in page
    assert "Programs running: 2 of 4 at once; waiting: 1." in page
    assert 'http-equiv="refresh"' in page


def test_a_student_sees_only_their_own() -> None:
    shown = visible_status(status(), ALICE)
    assert list(shown["users"]) == ["alice"]
    assert [p["id"] for p in shown["programs"]] == ["p1"]
    assert [s["id"] for s in shown["sessions"]] == ["s1"]
    page = status_page(status(), ALICE)
    assert "script" not in page
    assert "s&amp;t" not in page
    assert "(one-shot run)" in page
    # The totals stay: why a run waits is no secret.
    assert "waiting: 1." in page


def test_an_empty_gateway_and_a_message_page() -> None:
    empty = {"version": "1.0", "capacity": 4, "running": 0, "waiting": 0, "users": {},
             "programs": [], "sessions": []}  # fmt: skip
    page = status_page(empty, ALICE)
    assert "No session is open." in page
    assert "<table>" not in page
    note = message_page("Refused <x>", "Why & how", '/services/a"b/')
    assert "Refused &lt;x&gt;" in note
    assert "Why &amp; how" in note
    assert 'href="/services/a&quot;b/"' in note


def test_signed_cookies() -> None:
    signer = CookieSigner(b"k" * 32)
    value = signer.sign("session", "token123")
    assert value.startswith("token123.")
    assert signer.unsign("session", value) == "token123"
    # Another name, another key, a changed value or signature: not ours.
    assert signer.unsign("state", value) is None
    assert CookieSigner(b"x" * 32).unsign("session", value) is None
    assert signer.unsign("session", "token124" + value[8:]) is None
    assert signer.unsign("session", value[:-1] + ("0" if value[-1] != "0" else "1")) is None
    for garbage in (None, "", "token123", ".", "a" * 5000, "token123.é"):
        assert signer.unsign("session", garbage) is None


def test_oauth_needs_the_hubs_variables() -> None:
    assert "JUPYTERHUB_CLIENT_ID" in oauth_missing({})
    env = {
        "JUPYTERHUB_CLIENT_ID": "service-dockermagic",
        "JUPYTERHUB_API_TOKEN": "t",
        "JUPYTERHUB_SERVICE_PREFIX": "/services/dockermagic/",
    }
    assert oauth_missing(env) == ""


def test_a_swarm_gateway_says_where_runs_go() -> None:
    assert "Swarm" not in status_page(status(), TEACHER)
    swarm = status() | {
        "backend": "swarm",
        "nodes": [{"id": "n1", "ready": True}, {"id": "n2", "ready": False}],
    }
    page = status_page(swarm, ALICE)
    assert "One-shot runs go to a Docker Swarm (1 of 2 nodes ready)" in page
