"""DemuxDecoder and OutputCollector: pure logic."""

from __future__ import annotations

import struct

from dockermagic.streams import DemuxDecoder, OutputCollector


def frame(stream: int, payload: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(payload)) + payload


def test_frames_split_at_every_byte_boundary() -> None:
    data = frame(1, b"hello ") + frame(2, b"oops\n") + frame(1, b"") + frame(1, b"world\n")
    for cut in range(len(data) + 1):
        decoder = DemuxDecoder()
        frames = [*decoder.feed(data[:cut]), *decoder.feed(data[cut:])]
        assert frames == [
            ("stdout", b"hello "),
            ("stderr", b"oops\n"),
            ("stdout", b""),
            ("stdout", b"world\n"),
        ]
        assert decoder.pending == 0


def test_byte_by_byte_feeding() -> None:
    data = frame(1, b"abc") + frame(2, b"def")
    decoder = DemuxDecoder()
    frames = [f for byte in data for f in decoder.feed(bytes([byte]))]
    assert frames == [("stdout", b"abc"), ("stderr", b"def")]


def test_stdin_frames_are_ignored() -> None:
    assert list(DemuxDecoder().feed(frame(0, b"echo") + frame(1, b"x"))) == [("stdout", b"x")]


def test_collector_keeps_a_split_utf8_character_whole() -> None:
    seen: list[tuple[str, str]] = []
    collector = OutputCollector(1000, lambda s, t: seen.append((s, t)))
    euro = "€".encode()
    collector.add("stdout", b"a" + euro[:1])
    collector.add("stdout", euro[1:] + b"b")
    collector.finish()
    assert collector.text("stdout") == "a€b"
    assert seen == [("stdout", "a"), ("stdout", "€b")]


def test_collector_replaces_invalid_bytes_and_a_dangling_tail() -> None:
    collector = OutputCollector(1000)
    collector.add("stderr", b"\xff ok \xe2\x82")
    collector.finish()
    assert collector.text("stderr") == "\ufffd ok \ufffd"


def test_cap_counts_both_streams_and_keeps_exactly_the_limit() -> None:
    collector = OutputCollector(10)
    assert collector.add("stdout", b"12345")
    assert collector.add("stderr", b"678")
    assert not collector.add("stdout", b"90abc")
    assert collector.truncated
    assert not collector.add("stdout", b"more")
    collector.finish()
    assert collector.text("stdout") == "1234590"
    assert collector.text("stderr") == "678"
    assert collector.total_bytes == 10


def test_exactly_the_limit_is_not_truncation() -> None:
    collector = OutputCollector(4)
    assert collector.add("stdout", b"abcd")
    assert not collector.truncated
