"""The frame protocol between a session and its warm interpreter.

A session's container runs one long-lived interpreter (``servers/python_server.py``
or ``servers/node_server.js``) as its main process, under the policy's init. The
host attaches to the container once, for the session's life: the container's
stdin carries requests, its stdout carries every reply. Nothing else is needed,
so the network stays disabled.

Every message, in both directions, is one frame::

    +------+----------------------+-------------------+
    | kind | length (4 bytes, BE) | payload (length)  |
    +------+----------------------+-------------------+

``kind`` is one ASCII letter:

========  =========  ==========================================================
kind      direction  payload
========  =========  ==========================================================
``R``     to server  run a cell: JSON ``{"id", "code" (base64), "path",
                     "stdin" (base64 or null), "inputs" (object or null),
                     "deadline" (seconds or null)}``
``H``     to host    the interpreter is ready: JSON ``{"language", "version",
                     "pid"}``, sent once at start
``O``     to host    a chunk of standard output: the cell ``id`` (4 bytes,
                     big-endian) then the raw bytes
``E``     to host    a chunk of standard error, the same way
``D``     to host    the cell ``id`` is done: JSON ``{"id", "exit_code",
                     "interrupted", "tasks", "fds"}`` (``tasks``: processes
                     and threads left in the container; ``fds``: the
                     interpreter's open descriptors)
========  =========  ==========================================================

Why one stream for everything: Docker reads a container's stdout and stderr
through two pipes and may reorder writes across them, so the server writes
*all* frames, output of both streams and results, to one file descriptor and
the order the host sees is the order the cell produced. The cell's own file
descriptors 1 and 2 are pipes the server pumps into ``O``/``E`` frames, so a
subprocess printing cannot corrupt the protocol.

Interrupting needs no frame: the host sends SIGINT to the container (the init
forwards it to the interpreter), which raises ``KeyboardInterrupt`` in Python
and breaks the running script in Node. An interpreter that is not running a
cell ignores SIGINT, so a late interrupt cannot hurt the next cell. The
``deadline`` of a request is the server's own last resort: a cell still
running that long after it started ends the interpreter, so a runaway cell
stops even when its host is gone.

Trust: a session's cells run in the interpreter's own process, so a cell can
write frames of its own (it can reach the protocol's descriptor). A session
is one trust domain: its results are never verdicts (checks and grading use
fresh containers). The host only makes sure that no bytes on the channel
harm it: :class:`MessageReader` refuses unknown kinds and oversized frames,
payload parsers refuse malformed or deeply nested JSON with
:class:`ProtocolError`, and output tagged with another cell's id is dropped,
so nothing of one cell shows up in the next cell's result.

Pure logic, no Docker calls.
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "KIND_DONE",
    "KIND_HELLO",
    "KIND_RUN",
    "KIND_STDERR",
    "KIND_STDOUT",
    "MAX_FRAME",
    "CellDone",
    "Message",
    "MessageReader",
    "ProtocolError",
    "encode_message",
    "parse_done",
    "parse_hello",
    "run_request",
    "split_output",
]

KIND_RUN = b"R"
KIND_HELLO = b"H"
KIND_STDOUT = b"O"
KIND_STDERR = b"E"
KIND_DONE = b"D"

_HEADER = struct.Struct(">cI")
_CELL_ID = struct.Struct(">I")
#: Largest payload accepted from the container (servers send at most 1 MiB per frame).
MAX_FRAME = 16 * 1024**2
_FROM_SERVER = frozenset({KIND_HELLO, KIND_STDOUT, KIND_STDERR, KIND_DONE})


class ProtocolError(Exception):
    """The interpreter sent something that is not a valid frame."""


@dataclass(frozen=True)
class Message:
    """One decoded frame.

    Attributes:
        kind: The kind letter, e.g. ``b"O"``.
        payload: The raw payload.
    """

    kind: bytes
    payload: bytes


@dataclass(frozen=True)
class CellDone:
    """The payload of a ``D`` frame.

    Attributes:
        id: The cell's id, as sent in its ``R`` frame.
        exit_code: 0, the ``sys.exit``/``process.exit`` status, 1 for an
            uncaught exception, 130 after an interrupt.
        interrupted: Whether an interrupt (SIGINT) reached the cell.
        tasks: Processes and threads left running in the container (0: unknown).
        fds: Descriptors the interpreter holds open (0: unknown).
    """

    id: int
    exit_code: int
    interrupted: bool
    tasks: int = 0
    fds: int = 0


def encode_message(kind: bytes, payload: bytes) -> bytes:
    """Encode one frame.

    Args:
        kind: One ASCII letter.
        payload: The payload.

    Returns:
        Header and payload.
    """
    if len(kind) != 1:
        raise ValueError(f"frame kind must be one byte, not {kind!r}")
    return _HEADER.pack(kind, len(payload)) + payload


def run_request(
    cell_id: int,
    code: bytes,
    path: str,
    *,
    stdin: bytes | None = None,
    inputs: Mapping[str, Any] | None = None,
    deadline: float | None = None,
) -> bytes:
    """The ``R`` frame that runs a cell.

    Args:
        cell_id: A number the ``D`` frame repeats.
        code: The cell's source.
        path: The file name tracebacks show (the cell's own line numbers).
        stdin: The cell's standard input; None for end-of-file at once.
        inputs: JSON values to define as variables before the cell runs.
        deadline: Seconds after which the server ends itself if the cell still runs.

    Returns:
        The encoded frame.
    """
    request = {
        "id": cell_id,
        "code": base64.b64encode(code).decode("ascii"),
        "path": path,
        "stdin": None if stdin is None else base64.b64encode(stdin).decode("ascii"),
        "inputs": dict(inputs) if inputs else None,
        "deadline": deadline,
    }
    return encode_message(KIND_RUN, json.dumps(request, ensure_ascii=False).encode("utf-8"))


def split_output(payload: bytes) -> tuple[int, bytes]:
    """Split an ``O``/``E`` payload into the cell id and the output bytes.

    Args:
        payload: The frame's payload.

    Returns:
        ``(cell id, data)``.

    Raises:
        ProtocolError: The payload is too short to hold an id.
    """
    if len(payload) < _CELL_ID.size:
        raise ProtocolError("bad output frame: no cell id")
    return _CELL_ID.unpack_from(payload)[0], payload[_CELL_ID.size :]


def _json_object(payload: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"bad {what} frame: {exc}") from exc
    except RecursionError as exc:
        # json.loads recurses once per nesting level: a frame of 100,000
        # brackets must end the cell, not the host.
        raise ProtocolError(f"bad {what} frame: nested too deeply") from exc
    if not isinstance(value, dict):
        raise ProtocolError(f"bad {what} frame: not an object")
    return value


def parse_done(payload: bytes) -> CellDone:
    """Decode a ``D`` frame's payload.

    Args:
        payload: The JSON payload.

    Returns:
        The cell's outcome.

    Raises:
        ProtocolError: The payload is not a valid ``D`` object.
    """
    value = _json_object(payload, "done")
    cell_id, exit_code = value.get("id"), value.get("exit_code")
    tasks, fds = value.get("tasks", 0), value.get("fds", 0)
    if not all(
        isinstance(v, int) and not isinstance(v, bool) for v in (cell_id, exit_code, tasks, fds)
    ):
        raise ProtocolError(f"bad done frame: {payload[:200]!r}")
    return CellDone(
        id=int(cell_id),  # type: ignore[arg-type]  # checked above
        exit_code=int(exit_code),  # type: ignore[arg-type]
        interrupted=bool(value.get("interrupted")),
        tasks=tasks,
        fds=fds,
    )


def parse_hello(payload: bytes) -> dict[str, Any]:
    """Decode an ``H`` frame's payload.

    Args:
        payload: The JSON payload.

    Returns:
        The interpreter's description (language, version, pid).

    Raises:
        ProtocolError: The payload is not a JSON object.
    """
    return _json_object(payload, "hello")


class MessageReader:
    """Incremental decoder of the frames an interpreter sends.

    Bytes may arrive split anywhere (they come out of Docker's own stream
    frames, which follow the server's writes, not its frames).
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> Iterator[Message]:
        """Add bytes and yield every frame they complete.

        Args:
            data: The next bytes of the interpreter's stdout.

        Yields:
            Complete frames, in order.

        Raises:
            ProtocolError: An unknown kind or an oversized frame.
        """
        self._buffer += data
        # Walk with an offset and cut once: deleting each frame from the
        # front would move the rest of the buffer every time (quadratic).
        offset = 0
        try:
            while len(self._buffer) - offset >= _HEADER.size:
                kind, length = _HEADER.unpack_from(self._buffer, offset)
                if kind not in _FROM_SERVER:
                    raise ProtocolError(f"unknown frame kind {kind!r}")
                if length > MAX_FRAME:
                    raise ProtocolError(f"frame of {length} bytes exceeds {MAX_FRAME}")
                start = offset + _HEADER.size
                if len(self._buffer) < start + length:
                    break
                offset = start + length
                yield Message(kind, bytes(self._buffer[start:offset]))
        finally:
            del self._buffer[:offset]

    @property
    def pending(self) -> int:
        """Bytes received but not yet part of a complete frame."""
        return len(self._buffer)
