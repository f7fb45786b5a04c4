"""What a run produces, kept within caps: text, displays, files.

Pure logic, no Docker calls: :class:`DemuxDecoder` splits Docker's multiplexed
attach stream into ``(stream, payload)`` chunks; :class:`OutputCollector`
decodes text incrementally (a UTF-8 character split across frames stays whole;
invalid bytes become U+FFFD) and stops keeping output past a byte cap;
:class:`DisplayCollector` keeps MIME bundles within a cap of their own;
:class:`FileCollector` puts together files sent back in chunks.
"""

from __future__ import annotations

import codecs
import struct
from collections.abc import Callable, Iterator
from typing import Any

__all__ = [
    "STDERR",
    "STDOUT",
    "DemuxDecoder",
    "DisplayCallback",
    "DisplayCollector",
    "FileCollector",
    "OutputCallback",
    "OutputCollector",
]

STDOUT = "stdout"
STDERR = "stderr"
_STREAM_NAMES = {1: STDOUT, 2: STDERR}
_HEADER = struct.Struct(">BxxxL")

#: ``on_output(stream, text)``: ``stream`` is ``"stdout"`` or ``"stderr"``.
OutputCallback = Callable[[str, str], None]


class DemuxDecoder:
    """Incremental parser of Docker's stream multiplexing format.

    Each frame is an 8-byte header (stream id, three zero bytes, big-endian
    payload length) followed by the payload. Bytes may arrive split anywhere.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> Iterator[tuple[str, bytes]]:
        """Add bytes and yield every frame they complete.

        Args:
            data: The next bytes read from the socket.

        Yields:
            ``(stream, payload)`` pairs; stdin echo frames (id 0) are skipped.
        """
        self._buffer += data
        while len(self._buffer) >= _HEADER.size:
            stream_id, length = _HEADER.unpack_from(self._buffer)
            end = _HEADER.size + length
            if len(self._buffer) < end:
                return
            payload = bytes(self._buffer[_HEADER.size : end])
            del self._buffer[:end]
            name = _STREAM_NAMES.get(stream_id)
            if name is not None:
                yield name, payload

    @property
    def pending(self) -> int:
        """Bytes received but not yet part of a complete frame."""
        return len(self._buffer)


class OutputCollector:
    """Keeps stdout and stderr as text, up to a byte cap, and forwards chunks.

    Args:
        limit: Bytes (stdout and stderr together) to keep; the rest is dropped.
        on_output: Called with each decoded chunk, in arrival order.
    """

    def __init__(self, limit: int, on_output: OutputCallback | None = None) -> None:
        self.limit = limit
        self.on_output = on_output
        self.total_bytes = 0
        self.truncated = False
        self._parts: dict[str, list[str]] = {STDOUT: [], STDERR: []}
        self._decoders = {
            name: codecs.getincrementaldecoder("utf-8")(errors="replace")
            for name in (STDOUT, STDERR)
        }

    def add(self, stream: str, payload: bytes) -> bool:
        """Take one frame's payload.

        Args:
            stream: ``"stdout"`` or ``"stderr"``.
            payload: The raw bytes.

        Returns:
            False once the cap has been exceeded (the caller should stop the
            program); True otherwise.
        """
        if self.truncated:
            return False
        room = self.limit - self.total_bytes
        if len(payload) > room:
            payload = payload[: max(room, 0)]
            self.truncated = True
        self.total_bytes += len(payload)
        self._emit(stream, self._decoders[stream].decode(payload))
        return not self.truncated

    def finish(self) -> None:
        """Flush incomplete UTF-8 sequences (as U+FFFD) at end of stream."""
        for stream, decoder in self._decoders.items():
            self._emit(stream, decoder.decode(b"", final=True))

    def text(self, stream: str) -> str:
        """Everything kept of one stream.

        Args:
            stream: ``"stdout"`` or ``"stderr"``.

        Returns:
            The decoded text.
        """
        return "".join(self._parts[stream])

    def _emit(self, stream: str, text: str) -> None:
        if not text:
            return
        self._parts[stream].append(text)
        if self.on_output is not None:
            self.on_output(stream, text)


#: ``on_display(data, metadata)``: a MIME bundle as Jupyter's ``display_data`` has it.
DisplayCallback = Callable[[dict[str, Any], dict[str, Any]], None]


class DisplayCollector:
    """Keeps a run's displays (MIME bundles), up to a byte cap of their own.

    Counted apart from the text cap: a plot must not push the program's
    output out, nor the reverse. Past the cap, displays are dropped and
    counted (the result says how many).

    Args:
        limit: Bytes of displays (their JSON size) to keep.
        on_display: Called with each kept display, in order.
    """

    def __init__(self, limit: int, on_display: DisplayCallback | None = None) -> None:
        self.limit = limit
        self.on_display = on_display
        self.total_bytes = 0
        self.dropped = 0
        self.bundles: list[dict[str, Any]] = []

    def add(self, data: dict[str, Any], metadata: dict[str, Any], size: int) -> bool:
        """Take one display.

        Args:
            data: MIME type -> value (text as str, binary as base64 str).
            metadata: Its metadata.
            size: Its size in bytes, as it came.

        Returns:
            False when it was dropped (over the cap).
        """
        if self.dropped or self.total_bytes + size > self.limit:
            self.dropped += 1
            return False
        self.total_bytes += size
        self.bundles.append(data)
        if self.on_display is not None:
            self.on_display(data, metadata)
        return True


class FileCollector:
    """Puts together the files an agent sends back, up to a byte cap.

    Args:
        limit: Bytes of files to keep in all.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total_bytes = 0
        self.files: dict[str, bytes] = {}
        self.skipped: dict[str, str] = {}
        self._parts: dict[str, list[bytes]] = {}

    def add(self, path: str, data: bytes, *, first: bool, last: bool) -> None:
        """Take one chunk of a file.

        Args:
            path: The file's path relative to the working directory.
            data: The chunk.
            first: The first chunk of the file.
            last: The last chunk.
        """
        if path in self.skipped:
            return
        if first:
            self._parts[path] = []
        if self.total_bytes + len(data) > self.limit:
            self._parts.pop(path, None)
            self.skipped[path] = f"over the limit of {self.limit} bytes"
            return
        self.total_bytes += len(data)
        self._parts.setdefault(path, []).append(data)
        if last:
            self.files[path] = b"".join(self._parts.pop(path))
