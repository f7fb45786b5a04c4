"""Objects made once per key and kept: the runner caches of batches and gateways.

A batch keeps one runner per (language, image); a gateway one per request's
settings, bounded (a request chooses its key, so the least recently used go
past a limit). They are asked from several threads at once (a batch's
threads, a gateway's workers), so :class:`Memo` makes each object once under
a lock.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["Memo"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Memo(Generic[K, V]):
    """A thread-safe map from keys to objects made on first use.

    Args:
        limit: Keep at most this many, dropping the least recently used
            (nothing is closed: a dropped object is only no longer reused);
            None keeps every one.
    """

    def __init__(self, limit: int | None = None) -> None:
        self._limit = limit
        self._kept: collections.OrderedDict[K, V] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K, make: Callable[[], V]) -> V:
        """The object kept for ``key``, made by ``make()`` (under the lock) the first time.

        Args:
            key: What identifies the object.
            make: Makes it; called at most once per key while it is kept.

        Returns:
            The object.
        """
        with self._lock:
            kept = self._kept.get(key)
            if kept is None:
                kept = self._kept[key] = make()
                if self._limit is not None:
                    while len(self._kept) > self._limit:
                        self._kept.popitem(last=False)
            self._kept.move_to_end(key)
            return kept

    def values(self) -> list[V]:
        """The objects kept now (a copy: safe to iterate while others are made)."""
        with self._lock:
            return list(self._kept.values())

    def clear(self) -> None:
        """Forget every object."""
        with self._lock:
            self._kept.clear()

    def __len__(self) -> int:
        return len(self._kept)
