"""multiprocessing's helper processes, started so that terminal signals leave them alone.

The log writer's queue needs multiprocessing's *resource tracker*, and the
batch pool its *fork server*: long-lived helper processes that the first user
starts, in the caller's process group. A signal sent to the whole group (a
terminal that closes sends SIGHUP; ``systemd`` and ``kill -- -PGID`` send
SIGTERM) would kill them with the command they serve, and a dead fork server
breaks every worker of the pool at once ("terminated abruptly") before the
command can stop in order. So they are started with SIGHUP and SIGTERM
blocked; the blocked mask is inherited through ``fork`` and ``exec``, so they
never see those signals, while the command and its pool workers (which unblock
them, see :mod:`dockermagic.batch.pool`) stop as they should. Either helper
still exits by itself once the last process using it is gone.

No Docker calls.
"""

from __future__ import annotations

import contextlib
import multiprocessing.forkserver
import multiprocessing.resource_tracker
import os
import signal
from collections.abc import Iterator, Sequence

__all__ = ["SHIELDED_SIGNALS", "start_fork_server", "start_resource_tracker", "unshield"]

#: Signals that the helper processes never receive.
SHIELDED_SIGNALS = frozenset({signal.SIGHUP, signal.SIGTERM})


#: Where there are signal masks and these helpers (POSIX); elsewhere nothing to do.
_POSIX = os.name == "posix" and hasattr(signal, "pthread_sigmask")


@contextlib.contextmanager
def _blocked() -> Iterator[None]:
    # Blocked in this thread only: the process still receives them in others.
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, SHIELDED_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def start_resource_tracker() -> None:
    """Start multiprocessing's resource tracker, shielded, unless it runs."""
    if not _POSIX:
        return
    with _blocked():
        multiprocessing.resource_tracker.ensure_running()


def start_fork_server(preload: Sequence[str]) -> None:
    """Start the fork server (and the resource tracker), shielded, unless it runs.

    Args:
        preload: Modules the server imports once, before it forks any worker.
    """
    start_resource_tracker()
    multiprocessing.forkserver.set_forkserver_preload(list(preload))
    if not _POSIX:
        return
    with _blocked():
        # The tracker runs already, so this does not touch the signal mask.
        multiprocessing.forkserver.ensure_running()


def unshield() -> None:
    """Receive SIGHUP and SIGTERM again (a process forked from a shielded helper)."""
    if _POSIX:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, SHIELDED_SIGNALS)
