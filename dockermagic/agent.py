"""The host's end of a container's agent: boot it, hand it files and requests, read it.

Python and JavaScript containers run an agent (:mod:`dockermagic.interpreters`)
that frames everything on one stream (:mod:`dockermagic.protocol`). One-shot
runs (:mod:`dockermagic.runners`) and sessions (:mod:`dockermagic.sessions`)
both talk to it through :class:`Agent`, and both have the supervisor watch a
request through :class:`AgentRequest`; they differ only in how a request is
stopped (a one-shot container is killed, a session's cell interrupted).

Pure logic over the container layer's :class:`~dockermagic.container.Channel`;
no Docker API call of its own.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from dockermagic.container import Channel
from dockermagic.errors import SandboxError
from dockermagic.interpreters import Interpreter
from dockermagic.protocol import (
    KIND_DISPLAY,
    KIND_DONE,
    KIND_GOT,
    KIND_HELLO,
    KIND_STDERR,
    KIND_STDOUT,
    CellDone,
    Message,
    MessageReader,
    ProtocolError,
    file_frames,
    parse_display,
    parse_done,
    parse_got,
    parse_hello,
    split_output,
)
from dockermagic.streams import DemuxDecoder, FileCollector
from dockermagic.supervisor import Display, Event, Exited, Output, StopReason, StreamEnded

__all__ = ["Agent", "AgentRequest"]

logger = logging.getLogger(__name__)


class Agent:
    """A container's agent as the host sees it: one attached channel, framed.

    Args:
        channel: The container's attached stdin/stdout/stderr.
        interpreter: The language's agent (its boot frame).
    """

    def __init__(self, channel: Channel, interpreter: Interpreter) -> None:
        self.channel = channel
        self.interpreter = interpreter
        self._demux = DemuxDecoder()
        self._messages = MessageReader()
        #: Messages read but not yet taken (what came after a request's done frame).
        self.backlog: collections.deque[Message] = collections.deque()

    def frames_to_boot(self) -> list[bytes]:
        """The frames that start the agent (its own source).

        Returns:
            Encoded frames.
        """
        return [self.interpreter.boot_frame()]

    @staticmethod
    def file_frames(files: Mapping[str, bytes], base: bytes) -> list[bytes]:
        """The frames that deliver files.

        Args:
            files: Relative path (checked) -> content.
            base: ``protocol.BASE_CODE`` or ``protocol.BASE_WORK``.

        Returns:
            Encoded frames.
        """
        return [frame for rel, data in files.items() for frame in file_frames(base, rel, data)]

    def send(self, frames: Iterable[bytes], *, timeout: float) -> None:
        """Write frames now (blocking, bounded).

        Args:
            frames: Encoded frames.
            timeout: Seconds the write may take.

        Raises:
            OSError: The stream broke.
        """
        self.channel.send(b"".join(frames), timeout=timeout)

    def send_soon(self, frames: Iterable[bytes], *, timeout: float) -> None:
        """Write frames from a helper thread while the caller reads.

        A large request would otherwise deadlock against an agent that
        already writes output; a broken stream is noticed by the reader.

        Args:
            frames: Encoded frames.
            timeout: Seconds the write may take.
        """
        data = b"".join(frames)

        def write() -> None:
            try:
                self.channel.send(data, timeout=timeout)
            except (OSError, ValueError):
                logger.debug("sending to the agent failed", exc_info=True)

        threading.Thread(target=write, name="dockermagic-send", daemon=True).start()

    def read(self, timeout: float) -> list[Message]:
        """Messages that arrive within ``timeout`` seconds (maybe none).

        Raises:
            StreamEnded: The stream ended.
            ProtocolError: The agent sent garbage.
        """
        if self.backlog:
            messages = list(self.backlog)
            self.backlog.clear()
            return messages
        data = self.channel.recv(timeout)
        if data is None:
            return []
        if not data:
            raise StreamEnded()
        decoded: list[Message] = []
        for stream, payload in self._demux.feed(data):
            if stream == "stdout":
                decoded.extend(self._messages.feed(payload))
            else:
                # The container's own fd 2 (a bootstrap that failed, the
                # interpreter's fatal errors): shown as stderr of any request.
                decoded.append(Message(KIND_STDERR, b"\0\0\0\0" + payload))
        return decoded

    def await_hello(self, timeout: float, clock: Callable[[], float]) -> dict[str, Any]:
        """Wait for the agent's hello.

        Args:
            timeout: Seconds to wait.
            clock: The monotonic clock.

        Returns:
            What the agent said about itself.

        Raises:
            SandboxError: It did not say hello in time (with what it printed).
            StreamEnded: The stream ended first.
            ProtocolError: It sent garbage.
        """
        deadline = clock() + timeout
        said: list[bytes] = []
        while clock() < deadline:
            for message in self.read(0.1):
                if message.kind == KIND_HELLO:
                    return parse_hello(message.payload)
                said.append(message.payload[4:])
        text = b"".join(said).decode("utf-8", "replace").strip()
        raise SandboxError(
            f"the agent did not answer within {timeout:g} s" + (f": {text[-2000:]}" if text else "")
        )


class AgentRequest:
    """One request to an agent, as the supervisor sees it (a ``supervisor.Program``).

    Args:
        agent: The agent.
        request_id: The request's id (its output carries it).
        stop: Asks the program to stop; returns True to keep reading (see
            :meth:`supervisor.Program.stop`).
        force: Ends it for good.
        files: Takes the files the agent sends back.
    """

    def __init__(
        self,
        agent: Agent,
        request_id: int,
        *,
        stop: Callable[[StopReason], bool],
        force: Callable[[], None],
        files: FileCollector | None = None,
    ) -> None:
        self.agent = agent
        self.id = request_id
        self._stop = stop
        self._force = force
        self.files = files
        self.reason: StopReason | None = None
        self.forced = False
        #: The agent's done frame, once it came.
        self.done: CellDone | None = None
        #: Why the stream broke, if it did (StreamEnded or ProtocolError).
        self.broken: BaseException | None = None

    def receive(self, timeout: float) -> list[Event]:
        """Translate the agent's messages into the supervisor's events."""
        try:
            messages = self.agent.read(timeout)
            return self._translate(messages)
        except (StreamEnded, ProtocolError) as exc:
            self.broken = exc
            raise StreamEnded() from exc

    def _translate(self, messages: list[Message]) -> list[Event]:
        events: list[Event] = []
        for index, message in enumerate(messages):
            kind = message.kind
            if kind in (KIND_STDOUT, KIND_STDERR, KIND_DISPLAY):
                owner, data = split_output(message.payload)
                # Output of another request (its threads, or frames it forged)
                # is dropped: nothing of one cell shows up in another's result.
                if owner not in (self.id, 0):
                    continue
                if kind == KIND_DISPLAY:
                    bundle, metadata = parse_display(data)
                    events.append(Display(bundle, metadata, len(data)))
                else:
                    events.append(Output("stdout" if kind == KIND_STDOUT else "stderr", data))
            elif kind == KIND_GOT:
                chunk = parse_got(message.payload)
                if chunk.cell_id == self.id and self.files is not None:
                    self.files.add(chunk.path, chunk.data, first=chunk.first, last=chunk.last)
            elif kind == KIND_DONE:
                done = parse_done(message.payload)
                if done.id == self.id:
                    self.done = done
                    # Anything after the done frame is for whoever reads next.
                    self.agent.backlog.extend(messages[index + 1 :])
                    events.append(Exited(done.exit_code))
                    return events
        return events

    def stop(self, reason: StopReason) -> bool:
        """Ask the program to stop (the caller's way: kill or interrupt)."""
        if self.reason is None:
            self.reason = reason
        return self._stop(reason)

    def force_stop(self) -> None:
        """End it for good."""
        self.forced = True
        self._force()
