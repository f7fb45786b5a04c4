"""Agents: what runs inside a language's containers and speaks the protocol.

A language with an :class:`Interpreter` gets the agent path: its one-shot
runs and its sessions are served by an agent (``dockermagic/servers/``) that
frames output, displays and files on one stream (:mod:`dockermagic.protocol`).
The container's command is a short bootstrap that reads the agent's source
from stdin (an ``S`` frame), so nothing is copied into the container before it
starts. Adding a language is one agent plus one :func:`register_interpreter`
call; a language without one runs its programs directly (no displays).

Pure data, no Docker calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

from dockermagic.errors import InvalidArgumentError
from dockermagic.policy import CODE_DIR
from dockermagic.protocol import KIND_SOURCE, encode_message

__all__ = ["Interpreter", "interpreter_for", "maybe_interpreter_for", "register_interpreter"]


@dataclass(frozen=True)
class Interpreter:
    """How to start a language's agent.

    Attributes:
        language: The runner's canonical language name.
        command: The container's command: a bootstrap that reads the agent
            from stdin and runs it.
        source: The agent's source, sent as the first frame.
    """

    language: str
    command: Sequence[str]
    source: bytes

    def boot_frame(self) -> bytes:
        """The ``S`` frame that hands the bootstrap the agent.

        Returns:
            The encoded frame.
        """
        return encode_message(KIND_SOURCE, self.source)


_interpreters: dict[str, Interpreter] = {}


def register_interpreter(interpreter: Interpreter) -> None:
    """Give a language an agent (displays, files, sessions).

    Args:
        interpreter: The language's agent.
    """
    _interpreters[interpreter.language] = interpreter


def maybe_interpreter_for(language: str) -> Interpreter | None:
    """The agent of a language, or None when it runs programs directly.

    Args:
        language: The runner's canonical language name.

    Returns:
        Its interpreter, or None.
    """
    return _interpreters.get(language)


def interpreter_for(language: str) -> Interpreter:
    """The agent of a language.

    Args:
        language: The runner's canonical language name.

    Returns:
        Its interpreter.

    Raises:
        InvalidArgumentError: The language has no agent (so no sessions).
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


#: Reads one frame (the agent's source) from stdin, then runs it. Kept tiny:
#: it is the container's command line.
_PYTHON_BOOT = (
    "import os\n"
    "def r(n):\n"
    "    b = bytearray()\n"
    "    while len(b) < n:\n"
    "        c = os.read(0, n - len(b))\n"
    "        if not c: raise SystemExit(0)\n"
    "        b += c\n"
    "    return bytes(b)\n"
    "s = r(int.from_bytes(r(5)[1:], 'big'))\n"
    "exec(compile(s, '<dockermagic-agent>', 'exec'), {'__name__': '__dockermagic__'})\n"
)


def _python() -> Interpreter:
    return Interpreter(
        language="python",
        command=("python3", "-c", _PYTHON_BOOT),
        source=_server("python_server.py"),
    )


#: Reads one frame (the agent's source) from fd 3, then runs it as a function
#: of require, so that the agent's stack frames carry its own name. All in a
#: function: top-level names here would clash with the names cells declare.
_NODE_BOOT = (
    "(()=>{const fs=require('fs'),vm=require('vm');"
    "function r(n){const b=Buffer.alloc(n);let o=0;while(o<n){"
    "const k=fs.readSync(3,b,o,n-o,null);if(k===0)process.exit(0);o+=k}return b}"
    "const s=r(r(5).readUInt32BE(1)).toString('utf8');"
    "vm.runInThisContext('(function(require){'+s+'\\n})',"
    "{filename:'<dockermagic-agent>'})(require)})()"
)

#: Node has no pipe() or dup2(): the shell gives it the protocol on fds 3/4,
#: two FIFOs (opened read-write, so neither end blocks) as fds 1/2 and an
#: empty file as fd 0 (the agent writes a program's stdin into it before the
#: program runs), then becomes node (``exec``), so that init's SIGINT reaches
#: node itself.
_NODE_LAUNCHER = (
    f'd={CODE_DIR}/.dockermagic && mkdir -p "$d" && mkfifo "$d/out" "$d/err" && : > "$d/in" && '
    'exec node --expose-internals -e "$0" "$d/out" "$d/err" "$d/in" '
    '3<&0 4>&1 0<"$d/in" 1<>"$d/out" 2<>"$d/err"'
)


def _javascript() -> Interpreter:
    return Interpreter(
        language="javascript",
        command=("sh", "-c", _NODE_LAUNCHER, _NODE_BOOT),
        source=_server("node_server.js"),
    )


register_interpreter(_python())
register_interpreter(_javascript())
