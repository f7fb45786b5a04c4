"""No container of a batch outlives it: :func:`sweep_batch`.

Every container a batch makes carries its id (:data:`dockermagic.labels.BATCH`):
the scripts' containers, and the idle containers of its pools. The runners
remove their containers, pooled runs and closed pools in the background (the
caller has its result; the engine's work goes on), and a worker that exits
leaves its pool's containers to end when their attach hangs up. So when the
batch is over, the parent asks the engine for the batch's containers, waits
(briefly) while those removals finish, and removes whatever is still there.
After :func:`~dockermagic.batch.run_scripts` returns, the engine holds no
container of the batch: cancelled, interrupted and ``SIGTERM``-ed batches
included.
"""

from __future__ import annotations

import logging
import time

import docker

from dockermagic.container import list_containers, remove_containers
from dockermagic.errors import DockermagicError
from dockermagic.labels import BATCH

__all__ = ["SWEEP_WAIT", "sweep_batch"]

logger = logging.getLogger(__name__)

#: Seconds the sweep waits for removals already under way before it removes
#: what is left itself.
SWEEP_WAIT = 5.0
_POLL = 0.05


def sweep_batch(client: docker.DockerClient, run_id: str, *, wait: float = SWEEP_WAIT) -> int:
    """Make sure no container of a batch is left; never raises.

    Args:
        client: The Docker client.
        run_id: The batch's id.
        wait: Seconds to let removals under way finish first.

    Returns:
        How many containers the sweep removed itself (0 when the runners and
        pools had removed everything).
    """
    label = [f"{BATCH}={run_id}"]
    deadline = time.monotonic() + wait
    try:
        left = list_containers(client, label)
        while left and time.monotonic() < deadline:
            time.sleep(_POLL)
            left = list_containers(client, label)
        if not left:
            return 0
        removed = remove_containers(client, [container.id for container in left])
    except DockermagicError as exc:  # no engine: cleanup removes them later
        logger.warning("could not check batch %s for leftover containers: %s", run_id, exc)
        return 0
    if removed:
        logger.info("batch %s: removed %d container(s) left behind", run_id, len(removed))
    return len(removed)
