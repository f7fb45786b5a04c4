"""The session frame protocol and the FIFO lock: pure logic."""

from __future__ import annotations

import base64
import json
import threading
import time

import pytest

from dockermagic.protocol import (
    KIND_DONE,
    KIND_RUN,
    KIND_STDOUT,
    MAX_FRAME,
    Message,
    MessageReader,
    ProtocolError,
    encode_message,
    parse_done,
    parse_hello,
    run_request,
)
from dockermagic.sessions import _FifoLock


def test_frames_round_trip_split_anywhere() -> None:
    frames = [
        Message(KIND_STDOUT, b"hello"),
        Message(b"E", "☃\n".encode()),
        Message(KIND_DONE, b"{}"),
    ]
    data = b"".join(encode_message(f.kind, f.payload) for f in frames)
    for size in (1, 2, 3, 5, 7, len(data)):
        reader = MessageReader()
        got = [f for i in range(0, len(data), size) for f in reader.feed(data[i : i + size])]
        assert got == frames
        assert reader.pending == 0


def test_empty_payload_and_partial_header() -> None:
    reader = MessageReader()
    assert list(reader.feed(encode_message(KIND_STDOUT, b"")[:3])) == []
    assert reader.pending == 3
    assert list(reader.feed(encode_message(KIND_STDOUT, b"")[3:])) == [Message(KIND_STDOUT, b"")]


def test_many_frames_in_one_chunk_are_linear() -> None:
    data = encode_message(KIND_STDOUT, b"y" * 99) * 20000
    started = time.perf_counter()
    assert sum(1 for _ in MessageReader().feed(data)) == 20000
    assert time.perf_counter() - started < 2


@pytest.mark.parametrize(
    "data",
    [b"Zxxxx", encode_message(KIND_RUN, b"{}"), b"O" + (MAX_FRAME + 1).to_bytes(4, "big")],
)
def test_garbage_is_refused(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        list(MessageReader().feed(data))


def test_encode_rejects_long_kinds() -> None:
    with pytest.raises(ValueError, match="one byte"):
        encode_message(b"OK", b"")


def test_run_request() -> None:
    frame = run_request(3, b"print(1)", "/code/cell-3/main.py", stdin=b"\x00in", inputs={"n": 1})
    assert frame[:1] == KIND_RUN
    assert int.from_bytes(frame[1:5], "big") == len(frame) - 5
    body = json.loads(frame[5:])
    assert body["id"] == 3
    assert base64.b64decode(body["code"]) == b"print(1)"
    assert base64.b64decode(body["stdin"]) == b"\x00in"
    assert body["path"] == "/code/cell-3/main.py"
    assert body["inputs"] == {"n": 1}
    plain = json.loads(run_request(1, b"", "/x")[5:])
    assert plain["stdin"] is None
    assert plain["inputs"] is None


def test_parse_done_and_hello() -> None:
    done = parse_done(b'{"id": 2, "exit_code": 130, "interrupted": true}')
    assert (done.id, done.exit_code, done.interrupted) == (2, 130, True)
    assert parse_hello(b'{"language": "python"}') == {"language": "python"}
    for bad in (b"[]", b"{", b'{"id": "2", "exit_code": 0}', b"\xff"):
        with pytest.raises(ProtocolError):
            parse_done(bad)


def test_fifo_lock_grants_in_request_order_and_is_reentrant() -> None:
    lock = _FifoLock()
    order: list[int] = []
    lock.acquire()
    lock.acquire()  # reentrant
    lock.release()

    def worker(i: int) -> None:
        with lock:
            order.append(i)

    threads = []
    for i in range(8):
        thread = threading.Thread(target=worker, args=(i,))
        thread.start()
        threads.append(thread)
        # Wait until this thread is queued before starting the next one.
        while len(lock._waiters) < i + 1:
            time.sleep(0.001)
    lock.release()
    for thread in threads:
        thread.join()
    assert order == list(range(8))
    assert not lock.locked()
