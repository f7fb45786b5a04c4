"""``dockermagic gateway serve|status|audit``: the classroom server's commands.

A thin front end over :mod:`dockermagic.gateway`: ``serve`` runs the service
(``dockermagic.gateway.server``, which needs ``pip install
'dockermagic[gateway]'``), ``status`` asks a running gateway with a teacher's
token (``DOCKERMAGIC_GATEWAY``/``DOCKERMAGIC_TOKEN`` or ``--url``/``--token``),
``audit`` reads the audit log on the gateway's machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from typing import Any

from dockermagic.errors import InvalidArgumentError
from dockermagic.gateway.audit import read_audit
from dockermagic.gateway.config import GatewayConfig
from dockermagic.settings import current_settings

__all__ = ["add_gateway_commands", "cmd_gateway_audit", "cmd_gateway_serve", "cmd_gateway_status"]


def cmd_gateway_serve(args: argparse.Namespace) -> int:
    """Run the gateway until SIGINT/SIGTERM."""
    config = GatewayConfig.load(args.config)
    if args.port is not None:
        config = _with_port(config, args.port)
    try:
        from dockermagic.gateway.server import serve
    except ImportError as exc:  # pragma: no cover - the extra is missing
        raise InvalidArgumentError(
            "gateway", "serve", f"needs `pip install 'dockermagic[gateway]'` ({exc})"
        ) from exc
    logging.getLogger("dockermagic").setLevel(logging.INFO)

    def ready(url: str) -> None:
        # One line a supervisor (or a test) can wait for.
        print(f"dockermagic gateway listening on {url}", flush=True)

    serve(config, on_ready=ready)
    return 0


def _with_port(config: GatewayConfig, port: int) -> GatewayConfig:
    return dataclasses.replace(config, port=port)


def cmd_gateway_status(args: argparse.Namespace) -> int:
    """Print what a running gateway is doing (a teacher's token)."""
    from dockermagic.gateway.client import GatewayBackend

    settings = current_settings()
    url = args.url or settings.gateway
    token = args.token or settings.token
    if not url or not token:
        raise InvalidArgumentError(
            "gateway", url or "", "give --url and --token (or DOCKERMAGIC_GATEWAY/_TOKEN)"
        )
    backend = GatewayBackend(url.rstrip("/"), token, ca=args.ca or settings.gateway_ca)
    status = backend.json("GET", "/status")
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    # An older gateway does not say its backend: its runs are containers.
    on = " on a Swarm" if status.get("backend") == "swarm" else ""
    print(
        f"gateway {url}{on}: {status['running']} running, {status['waiting']} waiting, "
        f"capacity {status['capacity']}"
    )
    nodes = status.get("nodes") or []
    if nodes:
        ready = [n for n in nodes if n.get("ready")]
        names = ", ".join(str(n.get("hostname") or n.get("id", "?"))[:32] for n in ready)
        print(f"nodes: {len(ready)} of {len(nodes)} ready ({names})")
    print(f"{'user':<16} {'running':>7} {'waiting':>7} {'sessions':>8} {'cpu s/h':>8}")
    for name, row in sorted(status["users"].items()):
        print(
            f"{name:<16} {row['running']:>7} {row['waiting']:>7} {row['sessions']:>8} "
            f"{row['cpu_seconds_last_hour']:>8.1f}"
        )
    for session in status["sessions"]:
        print(
            f"session {session['user']}/{session['name']} ({session['language']}): "
            f"{session['runs']} cell(s), idle {session['idle_seconds']:.0f} s"
        )
    return 0


def cmd_gateway_audit(args: argparse.Namespace) -> int:
    """Print the audit log's records (of one user), one JSON line or one text line each."""
    directory = args.dir
    if directory is None:
        if args.config is None:
            raise InvalidArgumentError("audit", "", "give --config FILE or --dir FOLDER")
        directory = GatewayConfig.load(args.config).audit_dir
    for record in read_audit(directory, user=args.user):
        if args.json:
            print(json.dumps(record))
        else:
            print(_audit_line(record))
    return 0


def _audit_line(record: dict[str, Any]) -> str:
    where = f"session {record['session']}" if record.get("session") else "run"
    if record.get("node"):
        where += f" on {record.get('node_name') or str(record['node'])[:12]}"
    status = record.get("status", "?")
    if status == "error":
        status = f"error: {record.get('error', '')}"
    return (
        f"{record.get('time', '?')} {record.get('user', '?')} {where} "
        f"{record.get('language', '?')} {status} {record.get('duration', '-')} s "
        f"code {str(record.get('code_sha256', ''))[:12]}"
    )


def add_gateway_commands(commands: Any) -> None:
    """Add ``gateway serve|status|audit`` to the ``dockermagic`` command.

    Args:
        commands: The top-level sub-parsers.
    """
    gateway = commands.add_parser("gateway", help="the classroom server (holds the engine)")
    actions = gateway.add_subparsers(dest="gateway_command", metavar="ACTION", required=True)
    serve = actions.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", required=True, help="the teacher's JSON configuration")
    serve.add_argument("--port", type=int, help="listen on this port (0: any free one)")
    serve.set_defaults(handler=cmd_gateway_serve)
    status = actions.add_parser("status", help="what a running gateway is doing (teachers)")
    status.add_argument("--url", help="the gateway (default: DOCKERMAGIC_GATEWAY)")
    status.add_argument("--token", help="a teacher's token (default: DOCKERMAGIC_TOKEN)")
    status.add_argument(
        "--ca", help="CA file of an https:// gateway (default: DOCKERMAGIC_GATEWAY_CA)"
    )
    status.add_argument("--json", action="store_true", help="print the raw JSON")
    status.set_defaults(handler=cmd_gateway_status)
    audit = actions.add_parser("audit", help="read the audit log (on the gateway's machine)")
    audit.add_argument("--config", help="the gateway's configuration (for its audit_dir)")
    audit.add_argument("--dir", help="the audit folder itself")
    audit.add_argument("--user", help="only this user's records")
    audit.add_argument("--json", action="store_true", help="one JSON record a line")
    audit.set_defaults(handler=cmd_gateway_audit)
