"""An ipywidgets panel over a scripts folder: pick, run, watch, cancel.

``ScriptsPanel("scripts")`` (or ``%docker_panel scripts``) shows the folder's
scripts with checkboxes, a sequential/parallel toggle with a worker count, a
timeout, Run and Cancel, an overall progress bar, a row per script with its
status, duration, displays, CPU seconds and peak memory, and the selected
script's stdout, stderr and last displays (plots, tables) while it runs.
While a batch gets its images ready (a pull, a package build for the
folder's ``requirements.txt`` / ``package.json``) the panel shows the
progress line. Batches keep a pool of idle containers (``pool``, default 2),
all removed when the batch ends.

How it stays responsive and correct (pitfalls 17-20):

* The batch runs in a background thread through :func:`~dockermagic.batch.run_scripts`
  (a process pool in parallel mode), so the kernel keeps answering and Cancel
  works while a batch runs; Run is disabled meanwhile.
* The panel only draws: per-script state is the core's progress model
  (:class:`~dockermagic.batch.progress.BatchProgress`), which the event
  callback feeds under a lock. Widgets are written in one method,
  :meth:`ScriptsPanel.render`, at most ``RENDER_HZ`` times a second and once
  more at the end; nothing is ever printed from a thread.
* Output kept per script is bounded (``OUTPUT_CHARS`` per stream, by the model)
  and shown in an ``HTML`` widget, not an ``Output`` widget whose appends grow
  quadratically. Displays too: the model keeps a script's last
  ``DISPLAYS_KEPT`` (and at most ``DISPLAY_CHARS``), and the panel draws a
  script's displays again only when they changed.
* A script's displays are untrusted. The ``HTML`` widget puts its value into
  the page as it is (``innerHTML``: an ``<img onerror=...>`` would run in the
  notebook's page, with the kernel's and the server's credentials), so
  nothing of a display goes there raw: images become ``<img>`` from a base64
  ``data:`` URI the panel encoded itself (an SVG too: a browser runs no
  script of an SVG shown as an image); HTML goes into an
  ``<iframe sandbox srcdoc=...>`` (no scripts, no forms, an opaque origin that
  cannot reach the page) with a Content Security Policy that allows no
  network either; Markdown, JSON and text are shown escaped.
* The panel is a front end: it starts the log writer for each batch
  (:func:`~dockermagic.logs.start_logging`) and hands it to the batch.
* ``repr(panel)`` is a text table, for places where widgets do not render.
* Where the engine is a Swarm manager, a toggle chooses where the scripts run:
  this engine, or one-off tasks on the swarm's nodes (``backend="swarm"`` of
  :func:`~dockermagic.batch.run_scripts`; the worker count is then the tasks
  at once). Elsewhere the toggle is hidden.
"""

from __future__ import annotations

import base64
import html
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import ipywidgets as widgets

from dockermagic.batch import (
    BatchEvent,
    BatchProgress,
    BatchReport,
    ScriptProgress,
    default_workers,
    discover_scripts,
    front_end_pool,
    run_scripts,
    swarm_available,
)
from dockermagic.batch.displays import BINARY_TYPES
from dockermagic.batch.progress import DISPLAYS_KEPT, OUTPUT_CHARS, ShownDisplay
from dockermagic.cleanup import cleanup
from dockermagic.errors import DockermagicError
from dockermagic.logs import escape_line, log_directory, start_logging
from dockermagic.status import Status
from dockermagic.usage import cpu_text, memory_text

__all__ = ["DISPLAYS_KEPT", "OUTPUT_CHARS", "ScriptsPanel", "display_html"]

logger = logging.getLogger(__name__)

#: Widget refreshes per second at most while a batch runs.
RENDER_HZ = 6

_STATUS_COLOURS = {
    Status.QUEUED: "#6b7280",
    Status.RUNNING: "#2563eb",
    Status.OK: "#15803d",
    Status.FAILED: "#b91c1c",
    Status.TIMED_OUT: "#b45309",
    Status.OOM: "#b45309",
    Status.ERROR: "#7c2d12",
    Status.CANCELLED: "#6b7280",
}


class ScriptsPanel:
    """A widget panel that runs a folder's scripts in containers.

    Args:
        directory: The scripts folder.
        log_dir: Where logs go (see :func:`dockermagic.logs.log_directory`).
        timeout: Initial per-script timeout in seconds.
        mode: Initial mode, ``"sequential"`` or ``"parallel"``.
        workers: Initial worker count for parallel mode.
        pool: Idle containers a batch keeps per worker and language (0:
            none); ``DOCKERMAGIC_POOL_SIZE``, else 2, when None.
        backend: Where batches run at first, ``"local"`` or ``"swarm"``
            (the latter only offered where the engine is a Swarm manager).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] = "scripts",
        *,
        log_dir: str | os.PathLike[str] | None = None,
        timeout: float = 30.0,
        mode: str = "parallel",
        workers: int | None = None,
        pool: int | None = None,
        backend: str = "local",
    ) -> None:
        self.directory = Path(directory)
        self.log_dir = log_directory(log_dir)
        self.pool = front_end_pool(pool)
        #: Which displays the panel drew last: (script, its display count, batch number).
        self._drawn_displays: tuple[str, int, int] = ("", -1, -1)
        self._batch_number = 0
        self.report: BatchReport | None = None
        self.error: str = ""
        self._lock = threading.RLock()
        #: Every script of the folder -> its language (the rows).
        self._languages: dict[str, str] = {}
        #: The current (or last) batch's progress; None before the first Run.
        self.batch_progress: BatchProgress | None = None
        self._ignored: tuple[str, ...] = ()
        self._thread: threading.Thread | None = None
        self._cancel = threading.Event()
        self._last_render = 0.0
        self._pending: threading.Timer | None = None
        self._started = 0.0
        # The output view follows the running script until the user picks one
        # (in the menu or by clicking a name); after a run with failures it
        # shows the first failure, unless the user picked a script meanwhile.
        self._follow = True
        self._picked_during_run = False
        self._selecting = False  # True while the panel itself moves the selection
        self._build(timeout, mode, workers, backend)
        with self._lock:
            self.refresh()
        # Front ends clear leftovers of dead owners at start-up.
        try:
            cleanup()
        except DockermagicError as exc:
            self.error = str(exc)
            self.render(force=True)
        #: The engine is a Swarm manager: the backend toggle is shown.
        self.swarm = swarm_available()
        self.backend.layout.display = "" if self.swarm else "none"
        if not self.swarm:
            self.backend.value = "local"

    # -- building the widgets ----------------------------------------------------------

    def _build(self, timeout: float, mode: str, workers: int | None, backend: str) -> None:
        self.title = widgets.HTML()
        self.refresh_button = widgets.Button(
            description="Refresh",
            icon="refresh",
            tooltip="Rescan the folder",
            layout=widgets.Layout(width="110px"),
        )
        self.mode = widgets.ToggleButtons(
            options=[("sequential", "sequential"), ("parallel", "parallel")],
            value=mode,
            tooltips=["One script after another", "Scripts in a process pool"],
            style={"button_width": "90px"},
        )
        self.backend = widgets.ToggleButtons(
            options=[("this engine", "local"), ("swarm", "swarm")],
            value=backend if backend in ("local", "swarm") else "local",
            tooltips=[
                "Each script in a container of the engine DOCKER_HOST names",
                "Each script as a one-off task on any node of the swarm",
            ],
            style={"button_width": "90px"},
        )
        self.workers = widgets.BoundedIntText(
            value=workers or default_workers(8),
            min=1,
            max=64,
            description="workers",
            layout=widgets.Layout(width="150px"),
        )
        self.timeout = widgets.BoundedFloatText(
            value=timeout,
            min=0.5,
            max=3600,
            step=1,
            description="timeout (s)",
            layout=widgets.Layout(width="190px"),
        )
        self.run_button = widgets.Button(
            description="Run",
            icon="play",
            button_style="success",
            layout=widgets.Layout(width="100px"),
        )
        self.cancel_button = widgets.Button(
            description="Cancel",
            icon="stop",
            button_style="danger",
            disabled=True,
            layout=widgets.Layout(width="100px"),
        )
        self.progress = widgets.IntProgress(
            value=0, min=0, max=1, layout=widgets.Layout(width="240px")
        )
        self.counts = widgets.HTML()
        self.rows_box = widgets.VBox()
        self.selected = widgets.Dropdown(
            description="output of", layout=widgets.Layout(width="45%")
        )
        self.log_path = widgets.HTML()
        self.stdout_view = widgets.HTML()
        self.stderr_view = widgets.HTML()
        self.displays_title = widgets.HTML("<b>displays</b>")
        self.displays_view = widgets.HTML()
        self.message = widgets.HTML()
        self._checkboxes: dict[str, widgets.Checkbox] = {}
        self._status_cells: dict[str, widgets.HTML] = {}
        self._duration_cells: dict[str, widgets.HTML] = {}
        self._usage_cells: dict[str, widgets.HTML] = {}

        self.refresh_button.on_click(lambda _: self.refresh())
        self.run_button.on_click(lambda _: self.run())
        self.cancel_button.on_click(lambda _: self.cancel())
        self.selected.observe(self._on_select, names="value")
        self.mode.observe(lambda _: self._sync_controls(), names="value")

        self.widget = widgets.VBox(
            [
                widgets.HBox(
                    [self.title, self.refresh_button],
                    layout=widgets.Layout(justify_content="space-between"),
                ),
                widgets.HBox([self.mode, self.workers, self.timeout]),
                self.backend,
                widgets.HBox([self.run_button, self.cancel_button, self.progress, self.counts]),
                self.message,
                self.rows_box,
                widgets.HBox([self.selected, self.log_path]),
                widgets.HTML("<b>stdout</b>"),
                self.stdout_view,
                widgets.HTML("<b>stderr</b>"),
                self.stderr_view,
                self.displays_title,
                self.displays_view,
            ],
            layout=widgets.Layout(border="1px solid #d1d5db", padding="8px"),
        )
        self.widget.add_class("dockermagic-panel")
        self._sync_controls()

    # -- actions -----------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True while a batch runs."""
        return self._thread is not None and self._thread.is_alive()

    def refresh(self) -> None:
        """Rescan the folder (keeps the checkbox choices of known scripts)."""
        if self.running:
            return
        try:
            found = discover_scripts(self.directory)
            languages = {path.name: found.language_of(path) for path in found.scripts}
            self._ignored = tuple(found.ignored)
            self.error = ""
        except DockermagicError as exc:
            languages, self._ignored = {}, ()
            self.error = str(exc)
        with self._lock:
            chosen = {name: box.value for name, box in self._checkboxes.items()}
            self._languages = languages
            self.batch_progress = None
            # The checkbox only ticks; the name is a button that shows the output.
            self._checkboxes = {
                name: widgets.Checkbox(
                    value=chosen.get(name, True),
                    indent=False,
                    tooltip=f"include {name} in the next run",
                    layout=widgets.Layout(width="28px"),
                )
                for name in self._languages
            }
            self._name_buttons = {name: self._name_button(name) for name in self._languages}
            self._status_cells = {
                name: widgets.HTML(layout=widgets.Layout(width="130px")) for name in self._languages
            }
            self._duration_cells = {
                name: widgets.HTML(layout=widgets.Layout(width="80px")) for name in self._languages
            }
            self._usage_cells = {
                name: widgets.HTML(layout=widgets.Layout(width="260px")) for name in self._languages
            }
            rows = [
                widgets.HBox(
                    [
                        self._checkboxes[name],
                        self._name_buttons[name],
                        widgets.HTML(
                            f"<code>{language}</code>", layout=widgets.Layout(width="110px")
                        ),
                        self._status_cells[name],
                        self._duration_cells[name],
                        self._usage_cells[name],
                    ],
                )
                for name, language in self._languages.items()
            ]
            self.rows_box.children = rows
            names = list(self._languages)
            self.selected.options = names
            self.selected.value = names[0] if names else None
            self._follow = True
        self.render(force=True)

    def run(self) -> None:
        """Start a batch of the checked scripts in a background thread."""
        if self.running:
            return
        chosen = [name for name, box in self._checkboxes.items() if box.value]
        if not chosen:
            self.error = "Tick at least one script."
            self.render(force=True)
            return
        self.error = ""
        self.report = None
        self._cancel = threading.Event()
        with self._lock:
            self.batch_progress = BatchProgress((name, self._languages[name]) for name in chosen)
            self._batch_number += 1
            self._picked_during_run = False
            self._started = time.monotonic()
        mode = self.mode.value
        workers = self.workers.value if mode == "parallel" else None
        timeout = float(self.timeout.value)
        backend = self.backend.value if self.swarm else "local"
        self._thread = threading.Thread(
            target=self._run_batch,
            args=(chosen, mode, workers, timeout, backend),
            name="dockermagic-panel",
            daemon=True,
        )
        self._thread.start()
        self.render(force=True)

    def cancel(self) -> None:
        """Cancel the running batch: no new script starts; running ones are killed."""
        if self.running:
            self._cancel.set()
            self.render(force=True)

    def wait(self, timeout: float | None = None) -> BatchReport | None:
        """Block until the running batch (if any) is done; for scripts and tests.

        Args:
            timeout: Seconds to wait at most.

        Returns:
            The batch's report (None when it failed to start or is still running).
        """
        if self._thread is not None:
            self._thread.join(timeout)
        return self.report

    def _run_batch(
        self, chosen: list[str], mode: str, workers: int | None, timeout: float, backend: str
    ) -> None:
        try:
            sink = start_logging(self.log_dir)
            try:
                self.report = run_scripts(
                    self.directory,
                    mode="parallel" if mode == "parallel" else "sequential",
                    workers=workers,
                    timeout=timeout,
                    only=chosen,
                    on_event=self._on_event,
                    cancel=self._cancel,
                    log_sink=sink,
                    pool=self.pool,
                    backend="swarm" if backend == "swarm" else "local",
                )
            finally:
                sink.stop()
            with self._lock:
                if self.batch_progress is not None:
                    self.batch_progress.finish(self.report)
                    self._show_first_failure()
        except DockermagicError as exc:
            self.error = str(exc)
            with self._lock:
                if self.batch_progress is not None:
                    self.batch_progress.abandon(Status.ERROR)
        except Exception as exc:  # never let a bug kill the thread silently
            logger.exception("panel batch failed")
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.render(force=True, finished=True)

    def _on_event(self, event: BatchEvent) -> None:
        with self._lock:
            if self.batch_progress is None:
                return
            if event.kind != "prepare" and event.script not in self.batch_progress.scripts:
                return
            self.batch_progress.apply(event)
            if event.kind == "start" and self._follow:
                self._select_quietly(event.script)
        self.render()

    def _on_select(self, change: dict[str, Any]) -> None:
        # The lock: the batch thread's own moves set ``_selecting`` while they hold it,
        # so a user's change on another thread is never mistaken for one of them.
        with self._lock:
            if not self._selecting:
                self._user_chose()
        self.render(force=True)

    def _user_chose(self) -> None:
        self._follow = False  # the user chose: stop following the running script
        self._picked_during_run = self.running

    def _name_button(self, name: str) -> widgets.Button:
        button = widgets.Button(
            description=name,
            tooltip=f"show the output of {name}",
            layout=widgets.Layout(width="230px"),
        )
        button.add_class("dockermagic-name")
        button.on_click(lambda _: self.show(name))
        return button

    def show(self, name: str) -> None:
        """Show a script's output (as clicking its name does); the view stays on it.

        Args:
            name: The script's file name.
        """
        if name in self._languages:
            with self._lock:
                # Recorded here, not by the observer: clicking the name already shown
                # changes no value, and is still the user's choice.
                self._user_chose()
                self._select_quietly(name)
            self.render(force=True)

    def _show_first_failure(self) -> None:
        batch = self.batch_progress
        if batch is None or self._picked_during_run:
            return
        failed = [s for s in batch.finished if s.status.is_failure]
        if failed:
            self._select_quietly(failed[0].name)

    def _select_quietly(self, name: str) -> None:
        self._selecting = True
        try:
            self.selected.value = name
        finally:
            self._selecting = False

    def _sync_controls(self) -> None:
        busy = self.running
        self.run_button.disabled = busy
        self.cancel_button.disabled = not busy or self._cancel.is_set()
        self.refresh_button.disabled = busy
        self.mode.disabled = busy
        self.backend.disabled = busy
        self.timeout.disabled = busy
        self.workers.disabled = busy or self.mode.value != "parallel"
        for box in self._checkboxes.values():
            box.disabled = busy

    # -- the one place that writes widgets ---------------------------------------------

    def render(self, *, force: bool = False, finished: bool = False) -> None:
        """Copy the current state into the widgets (throttled unless forced).

        Args:
            force: Render even if the last render was very recent.
            finished: The batch thread is ending (controls are re-enabled).
        """
        now = time.monotonic()
        with self._lock:
            wait = 1 / RENDER_HZ - (now - self._last_render)
            if not force and wait > 0:
                # Trailing edge: what changed now is shown at the next slot
                # even when no further event arrives to trigger a render.
                if self._pending is None:
                    self._pending = threading.Timer(wait, self._render_pending)
                    self._pending.daemon = True
                    self._pending.start()
                return
            self._last_render = now
            if finished:
                self._thread = None  # still alive for a moment; it is done
            batch = self.batch_progress if self.batch_progress is not None else BatchProgress()
            folder = html.escape(str(self.directory))
            ignored = f" · {len(self._ignored)} other file(s) ignored" if self._ignored else ""
            self.title.value = (
                f"<b>Scripts in</b> <code>{folder}</code> · "
                f"{len(self._languages)} script(s){ignored}"
            )
            finished_scripts = batch.finished
            self.progress.max = max(batch.total, 1)
            self.progress.value = batch.done
            # Neutral while it runs: a red bar mid-run reads as "the run failed".
            ended = not self.running and bool(finished_scripts) and batch.done == batch.total
            failed = any(s.status is not Status.OK for s in finished_scripts)
            self.progress.bar_style = ("danger" if failed else "success") if ended else ""
            parts = [f"{batch.done}/{batch.total} done"] if batch.total else ["ready"]
            parts += [f"{n} {status.label}" for status, n in batch.totals.items()]
            if self.running:
                parts.append(f"{now - self._started:.1f} s")
            elif self.report is not None:
                parts.append(f"wall time {self.report.wall_time:.1f} s")
            self.counts.value = " · ".join(parts)
            for name, cell in self._status_cells.items():
                script = batch.scripts.get(name)
                cell.value = _badge(script.status) if script is not None else ""
                seconds = script.elapsed(batch.clock()) if script is not None else None
                self._duration_cells[name].value = "" if seconds is None else f"{seconds:.1f} s"
                self._usage_cells[name].value = _usage(script)
            if self.error:
                self.message.value = f"<span style='color:#b91c1c'>{html.escape(self.error)}</span>"
            elif batch.preparing and self.running:
                self.message.value = (
                    "<span class='dockermagic-preparing' style='color:#2563eb'>preparing "
                    f"{html.escape(escape_line(batch.preparing))}</span>"
                )
            else:
                self.message.value = ""
            chosen = batch.scripts.get(self.selected.value or "")
            if chosen is None:
                self.stdout_view.value = self.stderr_view.value = _pre("")
                self.log_path.value = ""
            else:
                self.stdout_view.value = _pre(chosen.stdout, chosen.dropped["stdout"])
                self.stderr_view.value = _pre(chosen.stderr, chosen.dropped["stderr"])
                note = f" — {html.escape(chosen.message)}" if chosen.message else ""
                self.log_path.value = (
                    f"log: <code>{html.escape(chosen.log_file)}</code>{note}"
                    if chosen.log_file
                    else note
                )
            self._render_displays(chosen)
            self._sync_controls()

    def _render_displays(self, script: ScriptProgress | None) -> None:
        """Draw the selected script's displays, only when they changed (they can be large)."""
        name = script.name if script is not None else ""
        count = script.display_count if script is not None else 0
        key = (name, count, self._batch_number)
        if key == self._drawn_displays:
            return
        self._drawn_displays = key
        if script is None or not script.displays:
            self.displays_title.value = "<b>displays</b>"
            self.displays_view.value = (
                "<div style='color:#9ca3af'>(none: plots, tables and display() appear here)</div>"
            )
            return
        shown = len(script.displays)
        older = f", the last {shown} shown" if shown < script.display_count else ""
        self.displays_title.value = f"<b>displays</b> ({script.display_count}{older})"
        self.displays_view.value = (
            "<div class='dockermagic-displays' style='max-height:40em;overflow:auto'>"
            + "".join(display_html(display) for display in script.displays)
            + "</div>"
        )

    def _render_pending(self) -> None:
        with self._lock:
            self._pending = None
        self.render(force=True)

    # -- display -----------------------------------------------------------------------

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)  # type: ignore[no-untyped-call]

    def __repr__(self) -> str:
        with self._lock:
            batch = self.batch_progress
            lines = [
                f"ScriptsPanel({str(self.directory)!r}): {len(self._languages)} script(s)"
                + (", running" if self.running else "")
            ]
            for name, language in self._languages.items():
                script: ScriptProgress | None = batch.scripts.get(name) if batch else None
                status = script.status.label if script is not None else "-"
                duration = script.duration if script is not None else None
                seconds = f"{duration:.1f} s" if duration is not None else ""
                usage = ""
                if script is not None and script.status.is_final:
                    cpu = cpu_text(script.cpu_seconds)
                    usage = f" cpu {cpu}, peak {memory_text(script.peak_memory_bytes)}"
                lines.append(
                    f"  {escape_line(name):<28} {language:<11} {status:<14} {seconds:>7}{usage}"
                )
            if self.error:
                lines.append(f"  error: {escape_line(self.error)}")
            return "\n".join(lines)


def _badge(status: Status) -> str:
    colour = _STATUS_COLOURS.get(status, "#374151")
    return (
        f"<span class='dockermagic-status dockermagic-status-{status}' "
        f"style='color:white;background:{colour};padding:1px 8px;border-radius:8px'>"
        f"{html.escape(status.label)}</span>"
    )


def _usage(script: ScriptProgress | None) -> str:
    """A row's figures once the script finished: displays, CPU seconds, peak memory."""
    if script is None or not script.status.is_final:
        return ""
    parts = [f"cpu {cpu_text(script.cpu_seconds)}", f"peak {memory_text(script.peak_memory_bytes)}"]
    if script.display_count:
        parts.append(f"{script.display_count} display(s)")
    return f"<span class='dockermagic-usage' style='color:#374151'>{' · '.join(parts)}</span>"


#: Put first in a display's sandboxed frame: no network, no script, inline styles only.
_FRAME_POLICY = (
    "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; "
    "img-src data:; style-src 'unsafe-inline'; font-src data:\">"
)


def display_html(display: ShownDisplay) -> str:
    """One display of a script as HTML that is safe to put into the notebook's page.

    See the module docstring: images from a ``data:`` URI the panel encodes,
    HTML in a sandboxed frame without scripts or network, the rest escaped.

    Args:
        display: The display as the progress model keeps it.

    Returns:
        The HTML.
    """
    mime, value = display.mime, display.value
    if not mime:
        body = "<i>(a display of a type the panel does not show)</i>"
    elif not value:
        size = display.size // 1024
        body = f"<i>(too large to show here: {size} KiB; `dockermagic run --outputs` keeps it)</i>"
    elif mime in BINARY_TYPES:
        # The model keeps base64 it encoded itself: only [A-Za-z0-9+/=].
        body = (
            f"<img class='dockermagic-display-image' src='data:{mime};base64,{value}' "
            "style='max-width:100%;max-height:24em'>"
        )
    elif mime == "image/svg+xml":
        encoded = base64.b64encode(value.encode("utf-8", "surrogatepass")).decode("ascii")
        body = (
            "<img class='dockermagic-display-image' "
            f"src='data:image/svg+xml;base64,{encoded}' style='max-width:100%;max-height:24em'>"
        )
    elif mime == "text/html":
        document = html.escape(_FRAME_POLICY + value, quote=True)
        body = (
            f"<iframe class='dockermagic-display-html' sandbox='' srcdoc=\"{document}\" "
            "referrerpolicy='no-referrer' "
            "style='width:100%;height:16em;border:1px solid #e5e7eb;background:white'></iframe>"
        )
    else:  # Markdown, JSON and text: as text
        body = _pre(value)
    return (
        f"<div class='dockermagic-display' style='margin:4px 0'>"
        f"<div style='color:#6b7280;font-size:85%'>#{display.number} {html.escape(mime)}</div>"
        f"{body}</div>"
    )


def _pre(text: str, dropped: int = 0) -> str:
    note = (
        f"<div style='color:#6b7280'>… {dropped} earlier characters are in the log file</div>"
        if dropped
        else ""
    )
    body = html.escape(text) if text else "<span style='color:#9ca3af'>(nothing yet)</span>"
    return (
        f"{note}<pre style='max-height:16em;overflow:auto;margin:0;padding:4px;"
        f"background:#f9fafb;border:1px solid #e5e7eb'>{body}</pre>"
    )
