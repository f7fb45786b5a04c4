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
                     "stdin" (base64 or null), "inputs" (object or null)}``
``H``     to host    the interpreter is ready: JSON ``{"language", "version",
                     "pid"}``, sent once at start
``O``     to host    a chunk of the cell's standard output (raw bytes)
``E``     to host    a chunk of the cell's standard error (raw bytes)
``D``     to host    the cell ``id`` is done: JSON ``{"id", "exit_code",
                     "interrupted"}``
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
cell ignores SIGINT, so a late interrupt cannot hurt the next cell.

Everything the container sends is untrusted: :class:`FrameReader` refuses
unknown kinds and oversized frames, and the host treats a broken stream as a
dead interpreter.

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
    "DONE",
    "HELLO",
    "MAX_FRAME",
    "RUN",
    "STDERR",
    "STDOUT",
    "CellDone",
    "Frame",
    "FrameReader",
    "ProtocolError",
    "encode_frame",
    "parse_done",
    "parse_hello",
    "run_request",
]

RUN = b"R"
HELLO = b"H"
STDOUT = b"O"
STDERR = b"E"
DONE = b"D"

_HEADER = struct.Struct(">cI")
#: Largest payload accepted from the container (servers send at most 1 MiB per frame).
MAX_FRAME = 16 * 1024**2
_FROM_SERVER = frozenset({HELLO, STDOUT, STDERR, DONE})


class ProtocolError(Exception):
    """The interpreter sent something that is not a valid frame."""


@dataclass(frozen=True)
class Frame:
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
    """

    id: int
    exit_code: int
    interrupted: bool


def encode_frame(kind: bytes, payload: bytes) -> bytes:
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
) -> bytes:
    """The ``R`` frame that runs a cell.

    Args:
        cell_id: A number the ``D`` frame repeats.
        code: The cell's source.
        path: The file name tracebacks show (the cell's own line numbers).
        stdin: The cell's standard input; None for end-of-file at once.
        inputs: JSON values to define as variables before the cell runs.

    Returns:
        The encoded frame.
    """
    request = {
        "id": cell_id,
        "code": base64.b64encode(code).decode("ascii"),
        "path": path,
        "stdin": None if stdin is None else base64.b64encode(stdin).decode("ascii"),
        "inputs": dict(inputs) if inputs else None,
    }
    return encode_frame(RUN, json.dumps(request, ensure_ascii=False).encode("utf-8"))


def _json_object(payload: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"bad {what} frame: {exc}") from exc
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
    if not isinstance(cell_id, int) or not isinstance(exit_code, int):
        raise ProtocolError(f"bad done frame: {value!r}")
    return CellDone(id=cell_id, exit_code=exit_code, interrupted=bool(value.get("interrupted")))


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


class FrameReader:
    """Incremental decoder of the frames an interpreter sends.

    Bytes may arrive split anywhere (they come out of Docker's own stream
    frames, which follow the server's writes, not its frames).
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> Iterator[Frame]:
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
                yield Frame(kind, bytes(self._buffer[start:offset]))
        finally:
            del self._buffer[:offset]

    @property
    def pending(self) -> int:
        """Bytes received but not yet part of a complete frame."""
        return len(self._buffer)
