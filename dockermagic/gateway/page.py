"""The gateway's status page: ``GET /v1/status``'s data as a small HTML page.

Server-rendered, no script (the page reloads itself every ten seconds). A
teacher sees every user's programs and sessions; anyone else sees the
gateway's totals and only their own, so a student can tell why their run
waits without learning who else is there. Every name on the page (users',
sessions', languages') is the users' input and is escaped.

Pure functions, no I/O: :mod:`dockermagic.gateway.server` serves the page
behind the Hub's login (:mod:`dockermagic.gateway.oauth`).
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from dockermagic.gateway.config import User

__all__ = ["PAGE_HEADERS", "message_page", "status_page", "visible_status"]

#: Seconds between the page's reloads.
REFRESH = 10
#: Every page's HTTP headers: nothing cached, no script, no framing, no referrer
#: (the callback's URL carries the Hub's code).
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f3f3f3; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.muted { color: #666; }
"""


def visible_status(status: Mapping[str, Any], user: User) -> dict[str, Any]:
    """What of the gateway's status a user may see.

    Args:
        status: :meth:`~dockermagic.gateway.server.Gateway.status`'s answer.
        user: Who asks.

    Returns:
        All of it for a teacher; for anyone else the totals and only their own
        row, programs and sessions.
    """
    if user.teacher:
        return dict(status)
    mine = dict(status)
    users = status.get("users", {})
    mine["users"] = {user.name: users[user.name]} if user.name in users else {}
    mine["programs"] = [p for p in status.get("programs", []) if p.get("user") == user.name]
    mine["sessions"] = [s for s in status.get("sessions", []) if s.get("user") == user.name]
    return mine


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return f"<td>{'yes' if value else 'no'}</td>"
    if isinstance(value, (int, float)):
        return f'<td class="n">{value:g}</td>'
    return f"<td>{html.escape('' if value is None else str(value))}</td>"


def _table(headings: Sequence[str], rows: Iterable[Sequence[Any]], empty: str) -> str:
    body = ["<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows]
    if not body:
        return f'<p class="muted">{html.escape(empty)}</p>'
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headings)
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _document(title: str, body: str, *, refresh: bool = False) -> str:
    meta = f'<meta http-equiv="refresh" content="{REFRESH}">' if refresh else ""
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8">{meta}'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body>{body}</body></html>\n"
    )


def status_page(status: Mapping[str, Any], user: User) -> str:
    """The status page for a user.

    Args:
        status: :meth:`~dockermagic.gateway.server.Gateway.status`'s answer.
        user: Who is signed in.

    Returns:
        The HTML document.
    """
    shown = visible_status(status, user)
    who = html.escape(user.name)
    role = "teacher: every user's programs and sessions" if user.teacher else "your own"
    users = shown.get("users", {})
    user_rows = [
        [
            name,
            row.get("running", 0),
            row.get("waiting", 0),
            row.get("sessions", 0),
            row.get("cpu_seconds_last_hour", 0.0),
        ]
        for name, row in users.items()
    ]
    program_rows = [
        [
            p.get("user"),
            p.get("language"),
            p.get("session") or "(one-shot run)",
            p.get("state"),
            p.get("seconds"),
        ]
        for p in shown.get("programs", [])
    ]
    session_rows = [
        [
            s.get("user"),
            s.get("name"),
            s.get("language"),
            s.get("runs"),
            s.get("restarts"),
            s.get("busy"),
            s.get("idle_seconds"),
        ]
        for s in shown.get("sessions", [])
    ]
    body = (
        f"<h1>dockermagic gateway</h1>"
        f'<p>Signed in as <strong id="user">{who}</strong> ({html.escape(role)}). '
        f'<span class="muted">Version {html.escape(str(shown.get("version", "")))}.</span></p>'
        f"<p>Programs running: {_number(shown.get('running'))} of "
        f"{_number(shown.get('capacity'))} at once; waiting: {_number(shown.get('waiting'))}.</p>"
        + _where(shown)
        + "<h2>Users</h2>"
        + _table(
            ["user", "running", "waiting", "sessions", "CPU seconds, last hour"],
            user_rows,
            "Nobody has used the gateway yet.",
        )
        + "<h2>Programs</h2>"
        + _table(
            ["user", "language", "session", "state", "seconds"],
            program_rows,
            "No program is running or waiting.",
        )
        + "<h2>Sessions</h2>"
        + _table(
            ["user", "session", "language", "runs", "restarts", "busy", "idle seconds"],
            session_rows,
            "No session is open.",
        )
    )
    return _document("dockermagic gateway", body, refresh=True)


def _where(status: Mapping[str, Any]) -> str:
    """Where one-shot runs go, when that is a Swarm: its nodes, ready or not."""
    if status.get("backend") != "swarm":
        return ""
    nodes = [n for n in status.get("nodes", []) if isinstance(n, Mapping)]
    ready = sum(1 for n in nodes if n.get("ready"))
    counted = f" ({ready} of {len(nodes)} nodes ready)" if nodes else ""
    return f"<p>One-shot runs go to a Docker Swarm{counted}; sessions run on its manager.</p>"


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) else "?"


def message_page(title: str, text: str, link: str) -> str:
    """A page that says one thing (a refused or failed sign-in).

    Args:
        title: Its heading.
        text: What happened.
        link: Where to try again (a path of the service).

    Returns:
        The HTML document.
    """
    body = (
        f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>"
        f'<p><a href="{html.escape(link, quote=True)}">Try again</a></p>'
    )
    return _document(title, body)
