"""The frames between the host and a container's agent.

Every Python and JavaScript container runs an agent (``servers/python_server.py``
or ``servers/node_server.js``) as its main program. A short bootstrap in the
container's command reads the agent itself from stdin (an ``S`` frame), so
nothing has to be copied into the container before it starts. The host
attaches once: the container's stdin carries requests, its stdout every reply.
Nothing else is needed, so the network stays disabled.

Every message, in both directions, is one frame::

    +------+----------------------+-------------------+
    | kind | length (4 bytes, BE) | payload (length)  |
    +------+----------------------+-------------------+

``kind`` is one ASCII letter:

========  =========  ==========================================================
kind      direction  payload
========  =========  ==========================================================
``S``     to agent   the agent's own source (read by the bootstrap), first
``F``     to agent   a chunk of a file: flags (1 byte: 1 first chunk, 2 last),
                     base (``c``: the program's folder ``/code``, read-only
                     once the program runs; ``w``: the working directory),
                     path length (2 bytes BE), path (UTF-8), data
``R``     to agent   run: JSON ``{"id", "code" (base64), "path", "stdin"
                     (base64 or null), "inputs" (object or null), "deadline"
                     (seconds or null), "script" (run as a program, not a
                     cell), "once" (end the agent afterwards), "display_last"
                     (show the value of a last expression), "get"
                     (``{"patterns", "limit"}`` or null), "name" and
                     "first_line" (what tracebacks call the code, and the
                     number of its first line)}``
``H``     to host    the agent is ready: JSON ``{"language", "version", "pid"}``
``O``     to host    a chunk of standard output: the request ``id`` (4 bytes,
                     BE) then the raw bytes
``E``     to host    a chunk of standard error, the same way
``M``     to host    a display: the request ``id`` then JSON ``{"data",
                     "metadata"}`` shaped like Jupyter's ``display_data``
``G``     to host    a chunk of a file fetched from the working directory:
                     the request ``id``, flags, path length, path, data
``D``     to host    request ``id`` is done: JSON ``{"id", "exit_code",
                     "interrupted", "tasks", "fds", "cpu", "maxrss", "got",
                     "skipped"}``
========  =========  ==========================================================

Why one stream for everything: Docker reads a container's stdout and stderr
through two pipes and may reorder writes across them, so the agent writes
*all* frames, output of both streams, displays and results, to one file
descriptor and the order the host sees is the order the program produced. The
program's own file descriptors 1 and 2 are pipes the agent pumps into
``O``/``E`` frames, so a subprocess printing cannot corrupt the protocol, and
bytes a program prints that look like frames stay text.

Interrupting needs no frame: the host sends SIGINT to the container (the init
forwards it to the interpreter), which raises ``KeyboardInterrupt`` in Python
and breaks the running script in Node. An interpreter that is not running a
cell ignores SIGINT, so a late interrupt cannot hurt the next cell. The
``deadline`` of a request is the agent's own last resort: a cell still
running that long after it started ends the interpreter, so a runaway cell
stops even when its host is gone.

Trust: a program runs in the agent's own process, so it can write frames of
its own (it can reach the protocol's descriptor). A container is one trust
domain: its results are never verdicts (checks and grading decide elsewhere).
The host only makes sure that no bytes on the channel harm it:
:class:`MessageReader` refuses unknown kinds and oversized frames, payload
parsers refuse malformed or deeply nested JSON with :class:`ProtocolError`,
and output tagged with another request's id is dropped, so nothing of one
cell shows up in the next cell's result.

Pure logic, no Docker calls.
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BASE_CODE",
    "BASE_WORK",
    "KIND_DISPLAY",
    "KIND_DONE",
    "KIND_FILE",
    "KIND_GOT",
    "KIND_HELLO",
    "KIND_RUN",
    "KIND_SOURCE",
    "KIND_STDERR",
    "KIND_STDOUT",
    "MAX_FRAME",
    "CellDone",
    "FileChunk",
    "Message",
    "MessageReader",
    "ProtocolError",
    "encode_message",
    "file_frames",
    "parse_display",
    "parse_done",
    "parse_got",
    "parse_hello",
    "run_request",
    "split_output",
]

KIND_SOURCE = b"S"
KIND_FILE = b"F"
KIND_RUN = b"R"
KIND_HELLO = b"H"
KIND_STDOUT = b"O"
KIND_STDERR = b"E"
KIND_DISPLAY = b"M"
KIND_GOT = b"G"
KIND_DONE = b"D"

#: Where an ``F`` frame's file goes: the program's folder or the working directory.
BASE_CODE = b"c"
BASE_WORK = b"w"

_HEADER = struct.Struct(">cI")
_CELL_ID = struct.Struct(">I")
_FILE_HEAD = struct.Struct(">BcH")
_GOT_HEAD = struct.Struct(">IBH")
_FIRST, _LAST = 1, 2
#: Largest payload accepted from the container (agents send at most 1 MiB per frame).
MAX_FRAME = 16 * 1024**2
#: Bytes of file data per ``F`` frame.
FILE_CHUNK = 1024**2
_FROM_SERVER = frozenset({KIND_HELLO, KIND_STDOUT, KIND_STDERR, KIND_DISPLAY, KIND_GOT, KIND_DONE})


class ProtocolError(Exception):
    """The agent sent something that is not a valid frame."""


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
        id: The request's id, as sent in its ``R`` frame.
        exit_code: 0, the ``sys.exit``/``process.exit`` status, 1 for an
            uncaught exception, 130 after an interrupt.
        interrupted: Whether an interrupt (SIGINT) reached the cell.
        tasks: Processes and threads left running in the container (0: unknown).
        fds: Descriptors the interpreter holds open (0: unknown).
        cpu_seconds: CPU time (user + system) the request used, children
            included; None when the agent did not say.
        peak_memory_bytes: The interpreter's (or a child's) peak resident
            memory so far; None when the agent did not say.
        got: The files sent back (``G`` frames), relative to the working directory.
        skipped: Files that matched but were not sent: ``(path, reason)``.
    """

    id: int
    exit_code: int
    interrupted: bool
    tasks: int = 0
    fds: int = 0
    cpu_seconds: float | None = None
    peak_memory_bytes: int | None = None
    got: tuple[str, ...] = ()
    skipped: tuple[tuple[str, str], ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class FileChunk:
    """A piece of a file the agent sends back (a ``G`` frame).

    Attributes:
        cell_id: The request it belongs to.
        path: The path relative to the working directory.
        first: The first chunk (start the file anew).
        last: The last chunk.
        data: The bytes.
    """

    cell_id: int
    path: str
    first: bool
    last: bool
    data: bytes


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


def file_frames(base: bytes, path: str, data: bytes) -> Iterator[bytes]:
    """The ``F`` frames that deliver one file.

    Args:
        base: :data:`BASE_CODE` or :data:`BASE_WORK`.
        path: The relative path (already checked).
        data: The content.

    Yields:
        Encoded frames, at most :data:`FILE_CHUNK` bytes of data each.
    """
    name = path.encode("utf-8", "surrogateescape")
    offset = 0
    while True:
        chunk = data[offset : offset + FILE_CHUNK]
        offset += len(chunk)
        flags = (_FIRST if offset == len(chunk) else 0) | (_LAST if offset >= len(data) else 0)
        yield encode_message(KIND_FILE, _FILE_HEAD.pack(flags, base, len(name)) + name + chunk)
        if offset >= len(data):
            return


def run_request(
    cell_id: int,
    code: bytes,
    path: str,
    *,
    stdin: bytes | None = None,
    inputs: Mapping[str, Any] | None = None,
    deadline: float | None = None,
    script: bool = False,
    once: bool = False,
    display_last: bool = False,
    get: Sequence[str] = (),
    get_limit: int = 0,
    name: str | None = None,
    first_line: int = 1,
) -> bytes:
    """The ``R`` frame that runs a program or a cell.

    Args:
        cell_id: A number the agent's frames for this request repeat.
        code: The source.
        path: The file name tracebacks show (the program's own line numbers).
        stdin: The program's standard input; None for end-of-file at once.
        inputs: JSON values to define as variables before the code runs.
        deadline: Seconds after which the agent ends itself if the code still runs.
        script: Run as a program (a fresh ``__main__``), not a cell.
        once: End the agent after this request, with the program's status.
        display_last: Display the value of a last expression statement.
        get: Patterns of files to send back from the working directory.
        get_limit: Bytes of files to send back at most.
        name: What tracebacks call the code (``Cell In[5]``); ``path`` when None.
        first_line: The line number of the code's first line in tracebacks.

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
        "script": script,
        "once": once,
        "display_last": display_last,
        "get": {"patterns": list(get), "limit": get_limit} if get else None,
        "name": name,
        "first_line": first_line,
    }
    return encode_message(KIND_RUN, json.dumps(request, ensure_ascii=False).encode("utf-8"))


def split_output(payload: bytes) -> tuple[int, bytes]:
    """Split an ``O``/``E``/``M`` payload into the request id and the rest.

    Args:
        payload: The frame's payload.

    Returns:
        ``(request id, data)``.

    Raises:
        ProtocolError: The payload is too short to hold an id.
    """
    if len(payload) < _CELL_ID.size:
        raise ProtocolError("bad output frame: no request id")
    return _CELL_ID.unpack_from(payload)[0], payload[_CELL_ID.size :]


def _json(payload: bytes, what: str) -> Any:
    try:
        return json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"bad {what} frame: {exc}") from exc
    except RecursionError as exc:
        # json.loads recurses once per nesting level: a frame of 100,000
        # brackets must end the cell, not the host.
        raise ProtocolError(f"bad {what} frame: nested too deeply") from exc


def _json_object(payload: bytes, what: str) -> dict[str, Any]:
    value = _json(payload, what)
    if not isinstance(value, dict):
        raise ProtocolError(f"bad {what} frame: not an object")
    return value


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def parse_done(payload: bytes) -> CellDone:
    """Decode a ``D`` frame's payload.

    Args:
        payload: The JSON payload.

    Returns:
        The request's outcome.

    Raises:
        ProtocolError: The payload is not a valid ``D`` object.
    """
    value = _json_object(payload, "done")
    cell_id, exit_code = value.get("id"), value.get("exit_code")
    tasks, fds = value.get("tasks", 0), value.get("fds", 0)
    numbers = (cell_id, exit_code, tasks, fds)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in numbers):
        raise ProtocolError(f"bad done frame: {payload[:200]!r}")
    got = value.get("got") or []
    skipped = value.get("skipped") or []
    if not isinstance(got, list) or not isinstance(skipped, list):
        raise ProtocolError("bad done frame: got/skipped")
    cpu = _number(value.get("cpu"))
    peak = _number(value.get("maxrss"))
    return CellDone(
        id=int(cell_id),  # type: ignore[arg-type]  # checked above
        exit_code=int(exit_code),  # type: ignore[arg-type]
        interrupted=bool(value.get("interrupted")),
        tasks=tasks,
        fds=fds,
        cpu_seconds=cpu,
        peak_memory_bytes=int(peak) if peak is not None else None,
        got=tuple(str(name) for name in got),
        skipped=tuple(
            (str(item[0]), str(item[1]))
            for item in skipped
            if isinstance(item, list) and len(item) == 2
        ),
    )


def parse_hello(payload: bytes) -> dict[str, Any]:
    """Decode an ``H`` frame's payload.

    Args:
        payload: The JSON payload.

    Returns:
        The agent's description (language, version, pid).

    Raises:
        ProtocolError: The payload is not a JSON object.
    """
    return _json_object(payload, "hello")


def parse_display(data: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """Decode a display (the part of an ``M`` payload after the request id).

    Args:
        data: The JSON bytes.

    Returns:
        ``(data, metadata)``: MIME type -> value, and the metadata.

    Raises:
        ProtocolError: Not a display object.
    """
    value = _json_object(data, "display")
    bundle, metadata = value.get("data"), value.get("metadata") or {}
    if not isinstance(bundle, dict) or not isinstance(metadata, dict):
        raise ProtocolError("bad display frame: no data")
    return {str(k): v for k, v in bundle.items()}, metadata


def parse_got(payload: bytes) -> FileChunk:
    """Decode a ``G`` frame's payload.

    Args:
        payload: The payload.

    Returns:
        The chunk.

    Raises:
        ProtocolError: Too short for its header.
    """
    if len(payload) < _GOT_HEAD.size:
        raise ProtocolError("bad file frame: too short")
    cell_id, flags, length = _GOT_HEAD.unpack_from(payload)
    start = _GOT_HEAD.size
    if len(payload) < start + length:
        raise ProtocolError("bad file frame: path cut off")
    path = payload[start : start + length].decode("utf-8", "surrogateescape")
    return FileChunk(
        cell_id=cell_id,
        path=path,
        first=bool(flags & _FIRST),
        last=bool(flags & _LAST),
        data=payload[start + length :],
    )


class MessageReader:
    """Incremental decoder of the frames an agent sends.

    Bytes may arrive split anywhere (they come out of Docker's own stream
    frames, which follow the agent's writes, not its frames).
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> Iterator[Message]:
        """Add bytes and yield every frame they complete.

        Args:
            data: The next bytes of the agent's stdout.

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
