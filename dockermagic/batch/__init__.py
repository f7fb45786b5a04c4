"""Running a folder of scripts, one after another or in a process pool.

:func:`run_scripts` is the batch runner behind ``dockermagic run`` and the
widget panel. Each script runs in its own locked-down container, with the
runner its file suffix selects, and the outcome is a :class:`BatchReport`.

Folder convention (:mod:`~dockermagic.batch.discovery`):

* Every file directly in the folder whose suffix a registered runner claims
  (``.py``, ``.js``, ``.mjs``, ``.cjs``) is a script; scripts run in name order.
  Other files are ignored and listed in :attr:`BatchReport.ignored`.
  Subfolders are never scripts.
* A subfolder named ``data`` (:data:`DATA_DIR`), when present, is copied next
  to *every* script, read-only. A script reads its inputs from its own folder:
  ``Path(__file__).parent / "data" / "input.txt"`` in Python,
  ``path.join(__dirname, "data", "input.txt")`` in CommonJS. The working
  directory (``/work``) and ``/tmp`` are the writable places for outputs.
* Only regular files are copied in, and links only when they stay inside the
  folder (:mod:`dockermagic.transfer`): a script that is a FIFO, a device or a
  link out of the folder, or a ``data`` folder holding one, makes that
  script's result an ``error`` naming the file; the other scripts run.
* A ``requirements.txt`` (Python) and a ``package.json`` (JavaScript, its
  ``dependencies``) list the packages of the folder's scripts
  (:mod:`~dockermagic.batch.requirements`; ``requirements=`` overrides per
  language). Each language's derived image is built once, before any script
  starts; packages that cannot be had make that language's scripts ``error``.

What comes back per script (:class:`ScriptResult`): status, exit code, time,
the end of its output, how many displays it made (with ``outputs_dir``, each
written to a file: :mod:`~dockermagic.batch.displays`), CPU seconds and peak
memory. Displays themselves reach the caller live, as ``display`` events.

Containers: with ``pool=N`` each process that runs scripts keeps N idle
containers per language started (every script still gets a container no code
has run in); when the batch ends its pools are closed and its containers swept
(:mod:`~dockermagic.batch.sweep`), so nothing of it is left.

Modes: ``sequential`` runs the scripts in the calling thread
(:mod:`~dockermagic.batch.sequential`); ``parallel`` in a pool of worker
processes (:mod:`~dockermagic.batch.pool`). Both run each script through
:func:`~dockermagic.batch.script.run_task`, take runners from one
:class:`~dockermagic.batch.cache.RunnerCache` per process, and stop under one
:class:`~dockermagic.batch.stop.StopPolicy`.

Statuses (:data:`STATUSES`, members of :class:`~dockermagic.status.Status`):
``ok``, ``failed`` (non-zero exit, or output flood), ``timed_out``, ``oom``,
``error`` (an infrastructure problem around the script: engine, image,
container, a file that may not be copied in) and ``cancelled`` (Ctrl-C, a
termination signal turned into :class:`~dockermagic.batch.stop.StopSignal`,
the ``cancel`` event, or ``fail_fast`` after another script failed).

Cancelling (``cancel.set()`` or Ctrl-C in the calling thread) starts no further
script and kills the running containers, which the runners then remove; the
report marks those scripts ``cancelled`` and :attr:`BatchReport.cancelled` is
true. ``run_scripts`` returns the report rather than raising
:class:`KeyboardInterrupt`.

Backends (:mod:`~dockermagic.batch.backend`): ``backend="local"`` runs each
script in a container of the engine the client talks to; ``backend="swarm"``
as a one-off task on any node of the Swarm whose manager the client talks to
(:mod:`~dockermagic.batch.swarm`, :mod:`dockermagic.swarm`): same events,
statuses, report and logs, each result naming its node; parallel mode runs
up to ``workers`` tasks at once from threads of the calling process
(:mod:`~dockermagic.batch.threads`). ``backend="gateway"`` (what ``"local"``
becomes when ``DOCKERMAGIC_GATEWAY`` is set) sends each script as a one-shot
run to the gateway, from threads the same way (:mod:`~dockermagic.batch.gateway`).

Progress for a display: :class:`~dockermagic.batch.progress.BatchProgress`
reduces the events to per-script state that front ends draw.
"""

from __future__ import annotations

from dockermagic.batch.backend import BACKENDS, Backend
from dockermagic.batch.discovery import DATA_DIR, Discovery, discover_scripts
from dockermagic.batch.progress import BatchProgress, ScriptProgress
from dockermagic.batch.report import (
    STATUSES,
    TAIL_CHARS,
    TAIL_LINES,
    BatchEvent,
    BatchReport,
    EventCallback,
    OutputTail,
    ScriptResult,
    batch_status,
)
from dockermagic.batch.run import (
    FRONT_END_POOL,
    Mode,
    default_workers,
    front_end_pool,
    run_scripts,
)
from dockermagic.batch.stop import StopSignal
from dockermagic.batch.swarm import swarm_available

__all__ = [
    "BACKENDS",
    "DATA_DIR",
    "FRONT_END_POOL",
    "STATUSES",
    "TAIL_CHARS",
    "TAIL_LINES",
    "Backend",
    "BatchEvent",
    "BatchProgress",
    "BatchReport",
    "Discovery",
    "EventCallback",
    "Mode",
    "OutputTail",
    "ScriptProgress",
    "ScriptResult",
    "StopSignal",
    "batch_status",
    "default_workers",
    "discover_scripts",
    "front_end_pool",
    "run_scripts",
    "swarm_available",
]
