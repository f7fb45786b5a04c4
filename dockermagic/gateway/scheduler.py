"""Fair queueing of programs by user: :class:`FairScheduler`.

The gateway runs at most ``capacity`` programs at once, and at most
``per_user`` of one user's. A program beyond either waits in its user's queue;
when a slot frees, the users with waiting programs take turns (round robin),
so one student's flood of 100 runs delays another student's single run by
one program at most, not by 100. A user's queue is bounded: one program more
is refused with :class:`~dockermagic.errors.QuotaExceededError`.

Pure asyncio logic (one event loop, no threads, no Docker): unit-tested
without a gateway.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator

from dockermagic.errors import QuotaExceededError

__all__ = ["FairScheduler"]


class FairScheduler:
    """Slots for programs, granted fairly between users.

    Args:
        capacity: Programs at once, every user together.
        per_user: Programs at once of one user.
        queued: Programs of one user that may wait; one more is refused.
    """

    def __init__(self, capacity: int, per_user: int, queued: int) -> None:
        self.capacity = capacity
        self.per_user = per_user
        self.queued = queued
        self.running: collections.Counter[str] = collections.Counter()
        self._waiting: dict[str, collections.deque[asyncio.Future[None]]] = {}
        # Users with waiting programs, in the order they take their next turn.
        self._turns: collections.deque[str] = collections.deque()

    @property
    def total(self) -> int:
        """Programs running now."""
        return sum(self.running.values())

    def waiting(self, user: str | None = None) -> int:
        """Programs waiting (of one user, or of all).

        Args:
            user: A user, or None for everyone.

        Returns:
            The count.
        """
        if user is not None:
            return len(self._waiting.get(user, ()))
        return sum(len(q) for q in self._waiting.values())

    @contextlib.asynccontextmanager
    async def slot(self, user: str) -> AsyncIterator[None]:
        """Hold a slot for one program of ``user`` (waiting for it if need be).

        Args:
            user: Whose program.

        Yields:
            Nothing; the slot is released on exit.

        Raises:
            QuotaExceededError: The user's queue is full.
        """
        await self.acquire(user)
        try:
            yield
        finally:
            self.release(user)

    def try_acquire(self, user: str) -> bool:
        """Take a slot if one is free for ``user`` now (nobody of theirs waits).

        Args:
            user: Whose program.

        Returns:
            Whether the slot was taken (then :meth:`release` it).
        """
        if self._free_for(user) and not self._waiting.get(user):
            self.running[user] += 1
            return True
        return False

    async def acquire(self, user: str) -> None:
        """Wait for a slot.

        Args:
            user: Whose program.

        Raises:
            QuotaExceededError: The user's queue is full.
        """
        if self.try_acquire(user):
            return
        queue = self._waiting.setdefault(user, collections.deque())
        if len(queue) >= self.queued:
            raise QuotaExceededError(
                "programs waiting",
                self.queued,
                f"{self.running[user]} of yours running, {len(queue)} waiting",
            )
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue.append(future)
        if user not in self._turns:
            self._turns.append(user)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release(user)  # granted just as it was given up: pass it on
            else:
                self._forget(user, future)
            raise

    def release(self, user: str) -> None:
        """Give a slot back and hand free slots to waiting users, in turn.

        Args:
            user: Whose program ended.
        """
        self.running[user] -= 1
        if self.running[user] <= 0:
            del self.running[user]
        self._dispatch()

    def _free_for(self, user: str) -> bool:
        return self.total < self.capacity and self.running[user] < self.per_user

    def _dispatch(self) -> None:
        # One pass over the turn order per grant: a user at their own limit
        # keeps their place and is skipped.
        while self._turns and self.total < self.capacity:
            for _ in range(len(self._turns)):
                user = self._turns[0]
                self._turns.rotate(-1)
                if self.running[user] < self.per_user:
                    break
            else:
                return
            queue = self._waiting[user]
            future = queue.popleft()
            if not queue:
                del self._waiting[user]
                self._turns.remove(user)
            self.running[user] += 1
            future.set_result(None)

    def _forget(self, user: str, future: asyncio.Future[None]) -> None:
        queue = self._waiting.get(user)
        if queue is None:
            return
        with contextlib.suppress(ValueError):
            queue.remove(future)
        if not queue:
            del self._waiting[user]
            with contextlib.suppress(ValueError):
                self._turns.remove(user)
