"""Memo: made once per key, under threads; bounded by recent use. Pure logic."""

from __future__ import annotations

import threading
import time

from dockermagic.memo import Memo


def test_made_once_per_key_while_threads_ask_at_once() -> None:
    made: list[str] = []

    def make(key: str) -> object:
        made.append(key)
        time.sleep(0.01)  # long enough for the other threads to ask meanwhile
        return object()

    memo: Memo[str, object] = Memo()
    got: list[object] = []
    threads = [
        threading.Thread(target=lambda: got.append(memo.get("a", lambda: make("a"))))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert made == ["a"]
    assert len({id(value) for value in got}) == 1


def test_the_least_recently_used_go_past_the_limit() -> None:
    memo: Memo[int, str] = Memo(limit=2)
    memo.get(1, lambda: "one")
    memo.get(2, lambda: "two")
    memo.get(1, lambda: "not made")  # 1 is now the most recent
    memo.get(3, lambda: "three")
    assert sorted(memo.values()) == ["one", "three"]
    assert memo.get(2, lambda: "two again") == "two again"
    memo.clear()
    assert len(memo) == 0
