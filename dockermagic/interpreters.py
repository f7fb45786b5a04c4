"""Warm interpreters: what a session runs as its container's main process.

A language with an :class:`Interpreter` can have sessions
(:mod:`dockermagic.sessions`). The interpreter is a small server shipped as
package data (``dockermagic/servers/``), copied into the session container's
code volume before start, that speaks the frames of :mod:`dockermagic.protocol`
over the container's stdin and stdout. Adding a language is one server plus
one :func:`register_interpreter` call.

Pure data, no Docker calls.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources

from dockermagic.errors import InvalidArgumentError
from dockermagic.policy import CODE_DIR

__all__ = ["SERVER_DIR", "Interpreter", "interpreter_for", "register_interpreter"]

#: Where the servers are copied, relative to the code volume.
SERVER_DIR = ".dockermagic"


@dataclass(frozen=True)
class Interpreter:
    """How to start a language's warm interpreter.

    Attributes:
        language: The runner's canonical language name.
        command: The container's command (the server as its main process).
        files: Files copied into the code volume (relative path -> content).
    """

    language: str
    command: tuple[str, ...]
    files: Mapping[str, bytes] = field(default_factory=dict)


_interpreters: dict[str, Interpreter] = {}


def register_interpreter(interpreter: Interpreter) -> None:
    """Give a language warm sessions.

    Args:
        interpreter: The language's interpreter.
    """
    _interpreters[interpreter.language] = interpreter


def interpreter_for(language: str) -> Interpreter:
    """The warm interpreter of a language.

    Args:
        language: The runner's canonical language name.

    Returns:
        Its interpreter.

    Raises:
        InvalidArgumentError: The language has no warm interpreter.
    """
    try:
        return _interpreters[language]
    except KeyError:
        known = ", ".join(sorted(_interpreters))
        raise InvalidArgumentError(
            "language", language, f"has no warm interpreter for sessions (known: {known})"
        ) from None


def _server(name: str) -> bytes:
    return resources.files("dockermagic").joinpath("servers").joinpath(name).read_bytes()


def _python() -> Interpreter:
    path = f"{CODE_DIR}/{SERVER_DIR}/python_server.py"
    return Interpreter(
        language="python",
        command=("python3", path),
        files={f"{SERVER_DIR}/python_server.py": _server("python_server.py")},
    )


#: Node has no pipe() or dup2(): the shell gives it the protocol on fds 3/4
#: and two FIFOs (opened read-write, so neither end blocks) as fds 1/2, then
#: becomes node (``exec``), so that init's SIGINT reaches node itself.
_NODE_LAUNCHER = (
    'd=$(mktemp -d /tmp/.dockermagic.XXXXXX) && mkfifo "$d/out" "$d/err" && '
    'exec node --expose-internals {server} "$d/out" "$d/err" '
    '3<&0 4>&1 0</dev/null 1<>"$d/out" 2<>"$d/err"'
)


def _javascript() -> Interpreter:
    path = f"{CODE_DIR}/{SERVER_DIR}/node_server.js"
    return Interpreter(
        language="javascript",
        command=("sh", "-c", _NODE_LAUNCHER.format(server=path)),
        files={f"{SERVER_DIR}/node_server.js": _server("node_server.js")},
    )


register_interpreter(_python())
register_interpreter(_javascript())
