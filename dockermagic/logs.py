r"""Logging set-up: application and container output in daily-rotated files.

Files in the log directory (default ``logs/`` in the working directory, or
``DOCKERMAGIC_LOG_DIR``):

* ``dockermagic.log``: the application log (what ran, when, where, outcome,
  errors), from every ``dockermagic.*`` logger at INFO and above;
* ``<name>.log``: one per script (or per notebook cell language), every line
  of the containers' output stamped with time, run id and stream::

      2026-11-24 21:03:07,412 run=5f0c1e2ab3c4 stdout | hello

Every file rotates at local midnight (``TimedRotatingFileHandler``,
``when="midnight"``): "every 24 hours" aligned to calendar days, so one file
holds one day and its rotated name (``name.log.2026-11-24``) says which day.
``backup_days`` rotated files are kept (default 14).

Many processes, one writer: Python's file handlers are not safe when several
processes write (and rotate) one file (logging cookbook; pitfall 21). So all
records go through one :class:`multiprocessing.Queue` to a single
:class:`~logging.handlers.QueueListener` thread in the process that called
:func:`start_logging`, the only one that opens the files. Worker processes call
:func:`worker_logging` with the sink's queue (e.g. in a pool initializer).

One record, one line: every record in every file is exactly one physical
line, whatever a program prints or a script is called, so no output can forge
or tear a record (nor move the terminal of whoever reads the file). Program
output is split into records on ``\n`` only; then, in the whole formatted
record (names, messages and tracebacks included), :func:`escape_line`
replaces each character that could break a line or drive a terminal:

* ``\n`` and ``\r`` become ``\n`` and ``\r`` (backslash, letter);
* every other C0 control but TAB, and DEL and every C1 control (``\x0b``,
  ``\x0c``, ``\x1b``, ``\x85``...), become ``\xHH``;
* the Unicode line and paragraph separators (U+2028, U+2029), the bidi
  overrides (U+202A-U+202E, U+2066-U+2069) and lone surrogates (a file name
  that is not valid UTF-8) become ``\uHHHH``;
* a backslash is doubled only where it would otherwise read as the start of
  one of these escapes (before another backslash, before ``n``, ``r``, ``x``
  or ``u``, or before a character that is itself escaped); every other
  backslash (``C:\temp``, a regex's ``\d``) stays as it is.

So ``print("ok\rfake record")`` is logged as ``ok\rfake record``, and the
escaping can be undone without ambiguity. The CLI shows names and output with
the same escaping.

Per-name files are called ``<safe name>.log`` (:func:`safe_log_name`): a
name that is already safe keeps it; any other (spaces, control characters,
more than :data:`MAX_NAME_CHARS` characters, the application log's own name)
gets a short hash of the original name appended, so that ``h a.py`` and
``h_a.py`` never share a file and long names are never cut into one.

Only front ends (CLI, extension, panel) call :func:`start_logging`; library
modules just use ``logging.getLogger(__name__)`` and leave the caller's
logging alone.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import logging.handlers
import multiprocessing
import os
import re
import secrets
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockermagic.errors import LogDirectoryError
from dockermagic.mphelpers import start_resource_tracker
from dockermagic.result import RunResult
from dockermagic.settings import current_settings
from dockermagic.usage import usage_fields

__all__ = [
    "APP_LOG",
    "DEFAULT_LOG_DIR",
    "LogSink",
    "OutputMirror",
    "current_sink",
    "escape_line",
    "log_directory",
    "log_result",
    "prepare_log_dir",
    "safe_log_name",
    "start_logging",
    "worker_logging",
]

DEFAULT_LOG_DIR = "logs"
APP_LOG = "dockermagic.log"
#: Records of this logger carry container output and go to per-name files.
OUTPUT_LOGGER = "dockermagic.output"
RUNS_LOGGER = "dockermagic.runs"

APP_FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"
OUTPUT_FORMAT = "%(asctime)s run=%(run_id)s %(stream)s | %(message)s"
#: Per-name files kept open at once; older ones are closed (and reopened on use).
MAX_OPEN_FILES = 64

#: Longest per-name file stem kept as it is: a file name has at most 255
#: bytes, and a rotated copy adds ``.log.YYYY-MM-DD``.
MAX_NAME_CHARS = 200

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
#: Characters escaped in a record (see the module docstring).
_ESCAPED = "\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff"
_UNSAFE = re.compile(f"[{_ESCAPED}]|\\\\(?=[\\\\nrxu{_ESCAPED}])")
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\\": "\\\\"}


def _escape_one(match: re.Match[str]) -> str:
    char = match.group()
    short = _SHORT_ESCAPES.get(char)
    if short is not None:
        return short
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_line(text: str) -> str:
    """Make text safe to write as (part of) one line of a log or a terminal.

    The escaping is described in the module docstring: line breaks, control
    characters, separators, bidi overrides and lone surrogates become
    backslash escapes; a backslash is doubled only where it would be ambiguous.

    Args:
        text: Any text (a line of output, a file name, a message).

    Returns:
        The text without any character that breaks a line or drives a terminal.
    """
    return _UNSAFE.sub(_escape_one, text)


class _OneLine(logging.Formatter):
    """Formats a record, traceback included, as exactly one escaped line."""

    def format(self, record: logging.LogRecord) -> str:
        return escape_line(super().format(record))


def log_directory(directory: str | os.PathLike[str] | None = None) -> Path:
    """The log directory that a front end should use.

    Args:
        directory: An explicit choice; else ``DOCKERMAGIC_LOG_DIR``; else ``logs``.

    Returns:
        An absolute path (not created).
    """
    chosen = directory or current_settings().log_dir or DEFAULT_LOG_DIR
    return Path(chosen).expanduser().absolute()


def prepare_log_dir(directory: str | os.PathLike[str] | None = None) -> Path:
    """Create the log directory if missing and prove it is writable.

    Call this before any work starts, so that a bad directory is one clear
    error instead of a traceback halfway through a batch.

    Args:
        directory: See :func:`log_directory`.

    Returns:
        The absolute directory.

    Raises:
        LogDirectoryError: When it cannot be created or written.
    """
    path = log_directory(directory)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise LogDirectoryError(str(path), exc.strerror or str(exc)) from exc
    return path


def safe_log_name(name: str) -> str:
    """The file stem of a name's log: the name itself when safe, else made safe and distinct.

    Args:
        name: E.g. ``"compress.py"`` or ``"h a.py"``.

    Returns:
        E.g. ``"compress.py"``, or ``"h_a.py-3f2a9c01d4"``: letters, digits,
        ``.``, ``_`` and ``-`` only, at most :data:`MAX_NAME_CHARS` characters.
        Different names give different stems (a hash of the original name is
        appended whenever the safe form differs from it, or is too long).
    """
    cleaned = _SAFE_NAME.sub("_", name).strip("._") or "output"
    reserved = cleaned.lower() == Path(APP_LOG).stem
    if cleaned == name and len(cleaned) <= MAX_NAME_CHARS and not reserved:
        return cleaned
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{cleaned[: MAX_NAME_CHARS - len(digest) - 1]}-{digest}"


def _daily_handler(path: Path, backup_days: int) -> logging.handlers.TimedRotatingFileHandler:
    return logging.handlers.TimedRotatingFileHandler(
        path, when="midnight", backupCount=backup_days, encoding="utf-8", delay=True
    )


class _OutputRouter(logging.Handler):
    """Writes each output record to ``<log_name>.log``, one rotating file each."""

    def __init__(self, directory: Path, backup_days: int) -> None:
        super().__init__()
        self.directory = directory
        self.backup_days = backup_days
        self._files: OrderedDict[str, logging.handlers.TimedRotatingFileHandler] = OrderedDict()
        self._formatter = _OneLine(OUTPUT_FORMAT)

    def filter(self, record: logging.LogRecord) -> bool:
        return hasattr(record, "log_name")

    def handler_for(self, name: str) -> logging.handlers.TimedRotatingFileHandler:
        handler = self._files.get(name)
        if handler is None:
            handler = _daily_handler(self.directory / f"{name}.log", self.backup_days)
            handler.setFormatter(self._formatter)
            self._files[name] = handler
            if len(self._files) > MAX_OPEN_FILES:
                _, oldest = self._files.popitem(last=False)
                oldest.close()
        else:
            self._files.move_to_end(name)
        return handler

    def emit(self, record: logging.LogRecord) -> None:
        self.handler_for(str(record.__dict__["log_name"])).handle(record)

    def close(self) -> None:
        for handler in self._files.values():
            handler.close()
        self._files.clear()
        super().close()


class _NotOutput(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not hasattr(record, "log_name")


@dataclass
class LogSink:
    """The running log writer of this process; returned by :func:`start_logging`.

    Attributes:
        directory: The log directory.
        queue: Where worker processes send their records (see :func:`worker_logging`).
    """

    directory: Path
    queue: Any
    backup_days: int
    _listener: logging.handlers.QueueListener
    _router: _OutputRouter
    _app: logging.Handler
    _users: int = 1
    _handlers: list[tuple[logging.Logger, logging.Handler]] = field(default_factory=list)
    _propagate: bool = True
    _level: int = logging.INFO

    def output_path(self, name: str) -> Path:
        """The file that holds a name's container output.

        Args:
            name: A script or log name.

        Returns:
            ``<directory>/<safe name>.log``.
        """
        return self.directory / f"{safe_log_name(name)}.log"

    @property
    def app_log(self) -> Path:
        """The application log file."""
        return self.directory / APP_LOG

    def force_rollover(self) -> None:
        """Rotate every file at the next record, as if midnight had passed."""
        handlers = [self._app, *self._router._files.values()]
        for handler in handlers:
            if isinstance(handler, logging.handlers.TimedRotatingFileHandler):
                handler.rolloverAt = 0

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every record queued so far (by this process) is written.

        Records of worker processes that have exited are in the queue before
        the marker this puts there, so they are written too.

        Args:
            timeout: Seconds to wait at most.

        Returns:
            True when everything was written in time.
        """
        token = secrets.token_hex(8)
        done = threading.Event()
        _flushes[token] = done
        try:
            self.queue.put_nowait(_flush_marker(token))
            return done.wait(timeout)
        finally:
            _flushes.pop(token, None)

    def _close_at_exit(self) -> None:
        with _sinks_lock:
            self._users = 1
        self.stop()

    def stop(self) -> None:
        """Release this user's hold; the last one writes what is queued and closes."""
        with _sinks_lock:
            self._users -= 1
            if self._users > 0:
                return
            _sinks.pop(self.directory, None)
            remaining = list(_sinks.values())
        for logger, handler in self._handlers:
            logger.removeHandler(handler)
        if remaining:
            # Another sink is still running (a front end moved its logs): the
            # package's records go on to the most recent one.
            latest = remaining[-1]
            latest._handlers = _attach(latest.queue, latest._level)
        else:
            logging.getLogger("dockermagic").propagate = self._propagate
        atexit.unregister(self._close_at_exit)
        self._listener.stop()
        self._router.close()
        self._app.close()


#: Flush tokens waiting for the listener; records cross processes pickled, so
#: the event itself cannot travel with the marker record.
_flushes: dict[str, threading.Event] = {}


def _flush_marker(token: str) -> logging.LogRecord:
    record = logging.LogRecord("dockermagic.flush", logging.DEBUG, "", 0, "", None, None)
    record.flush_token = token
    return record


class _Listener(logging.handlers.QueueListener):
    def handle(self, record: logging.LogRecord) -> None:
        token = getattr(record, "flush_token", None)
        if token is not None:
            event = _flushes.get(token)
            if event is not None:
                event.set()
            return
        super().handle(record)


_sinks_lock = threading.Lock()
_sinks: dict[Path, LogSink] = {}


def start_logging(
    directory: str | os.PathLike[str] | None = None,
    *,
    backup_days: int = 14,
    level: int = logging.INFO,
) -> LogSink:
    """Start writing dockermagic's logs into a directory (idempotent).

    A second call for the same directory returns the same sink (and must be
    paired with its own :meth:`LogSink.stop`).

    Args:
        directory: See :func:`log_directory`.
        backup_days: Rotated files to keep per log.
        level: Minimum level for the application log.

    Returns:
        The sink.

    Raises:
        LogDirectoryError: When the directory is unusable.
    """
    path = prepare_log_dir(directory)
    with _sinks_lock:
        sink = _sinks.get(path)
        if sink is not None and sink.queue is not None:
            sink._users += 1
            return sink
        # A spawn-context queue can be handed to workers of any start method
        # (a fork-context one refuses spawn and forkserver children). Its lock
        # needs the resource tracker: start that one shielded from SIGHUP.
        start_resource_tracker()
        queue: Any = multiprocessing.get_context("spawn").Queue(-1)
        app = _daily_handler(path / APP_LOG, backup_days)
        app.setFormatter(_OneLine(APP_FORMAT))
        app.addFilter(_NotOutput())
        app.setLevel(level)
        router = _OutputRouter(path, backup_days)
        listener = _Listener(queue, app, router, respect_handler_level=True)
        listener.start()
        sink = LogSink(path, queue, backup_days, listener, router, app, _level=level)
        # With another sink running, the package's records already skip the
        # root logger; what to restore at the end is what the first one found.
        sink._propagate = (
            next(iter(_sinks.values()))._propagate
            if _sinks
            else logging.getLogger("dockermagic").propagate
        )
        sink._handlers = _attach(queue, level)
        # While the files take the package's records, keep them out of the root
        # logger's handlers too: in a notebook those print into the cell.
        logging.getLogger("dockermagic").propagate = False
        # A listener still running at interpreter exit dies mid-write; stop it first.
        atexit.register(sink._close_at_exit)
        _sinks[path] = sink
        return sink


def current_sink() -> LogSink | None:
    """The sink this process's front end started and that receives the package's records.

    A library call (e.g. :func:`~dockermagic.batch.run_scripts` without a sink)
    logs where the application already logs, and nowhere else.

    Returns:
        The most recently started running sink, or None when none runs.
    """
    with _sinks_lock:
        running = list(_sinks.values())
    return running[-1] if running else None


def _attach(queue: Any, level: int) -> list[tuple[logging.Logger, logging.Handler]]:
    """Send the package's records (application and output) into the queue."""
    attached: list[tuple[logging.Logger, logging.Handler]] = []
    app_logger = logging.getLogger("dockermagic")
    output_logger = logging.getLogger(OUTPUT_LOGGER)
    for logger, logger_level in ((app_logger, level), (output_logger, logging.INFO)):
        for old in [h for h in logger.handlers if isinstance(h, logging.handlers.QueueHandler)]:
            logger.removeHandler(old)
        handler = logging.handlers.QueueHandler(queue)
        logger.addHandler(handler)
        if logger.level == logging.NOTSET or logger.level > logger_level:
            logger.setLevel(logger_level)
        attached.append((logger, handler))
    # Output lines belong in their own files only, not in the root logger's
    # console handlers (or the application log, via the parent logger).
    output_logger.propagate = False
    return attached


def worker_logging(queue: Any, level: int = logging.INFO) -> None:
    """Route this (worker) process's dockermagic records to a parent's sink.

    Call it in a process pool's initializer with :attr:`LogSink.queue`. Safe to
    call again; replaces any queue handler inherited through fork.

    Args:
        queue: The parent's :attr:`LogSink.queue`.
        level: Minimum level for application records.
    """
    _attach(queue, level)


class OutputMirror:
    """Mirrors a run's output, line by line, into ``<name>.log``.

    Usable directly as a runner's ``on_output``; chain it with a display::

        mirror = OutputMirror("job.py", run_id)
        runner.run(code, on_output=lambda s, t: (mirror(s, t), show(s, t)))
        mirror.close()

    Args:
        name: The log name (script file name, ``cells-python``...).
        run_id: Identifies this run in the shared file.
        language: Recorded with each line, for the application log's readers.
    """

    def __init__(self, name: str, run_id: str, language: str = "") -> None:
        self.name = safe_log_name(name)
        self.run_id = run_id
        self.language = language
        self._logger = logging.getLogger(OUTPUT_LOGGER)
        self._partial: dict[str, str] = {}
        self._lock = threading.Lock()

    def __call__(self, stream: str, text: str) -> None:
        """Take one chunk of output.

        Args:
            stream: ``"stdout"`` or ``"stderr"``.
            text: The chunk; complete lines are logged now, the rest later.
        """
        with self._lock:
            pending = self._partial.pop(stream, "") + text
            *lines, rest = pending.split("\n")
            if rest:
                self._partial[stream] = rest
        for line in lines:
            self._write(stream, line)

    def close(self) -> None:
        """Log what remains of unterminated last lines."""
        with self._lock:
            partial, self._partial = self._partial, {}
        for stream, line in partial.items():
            self._write(stream, line)

    def _write(self, stream: str, line: str) -> None:
        self._logger.info(
            "%s",
            line,
            extra={"log_name": self.name, "run_id": self.run_id, "stream": stream},
        )


def log_result(name: str, run_id: str, result: RunResult, *, origin: str = "") -> None:
    """Write one summary line for a finished run into the application log.

    The line ends with what the run cost, ``cpu=0.123s peak=41MiB`` (``cpu=-
    peak=-`` where the runner could not tell), so that the log answers "which
    script ate the memory" without a rerun.

    Args:
        name: The script or log name.
        run_id: The run's id (matches the output file's lines).
        result: What happened.
        origin: Where it ran from (``cli``, ``notebook``, ``panel``...).
    """
    logger = logging.getLogger(RUNS_LOGGER)
    level = logging.INFO if result.ok else logging.WARNING
    logger.log(
        level,
        "%s run=%s %s image=%s status=%s exit=%d duration=%.3fs %s%s%s",
        name,
        run_id,
        result.language,
        result.image,
        result.status,
        result.exit_code,
        result.duration,
        usage_fields(result.cpu_seconds, result.peak_memory_bytes),
        f" node={result.node}" if result.node else "",
        f" from={origin}" if origin else "",
    )
