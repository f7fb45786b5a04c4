"""The IPython extension: ``%load_ext dockermagic``.

Cell magics are generated from the runner registry: ``%%docker LANGUAGE`` for
any registered language, plus ``%%docker_<language>`` and
``%%docker_<first alias>`` for each (``%%docker_python``, ``%%docker_py``,
``%%docker_javascript``, ``%%docker_js``). A runner subclass registered before
the extension loads gets its magics for free. Line magics: ``%docker_status``,
``%docker_session``, ``%docker_reset`` (restart a session's interpreter),
``%docker_requirements``, ``%docker_panel`` and ``%docker_check`` (check an
exercise's answer: :mod:`dockermagic.grading`).

With ``--session NAME`` a cell runs in a warm interpreter that keeps its
variables between cells, like a kernel (:mod:`dockermagic.sessions`).

Output streams into the cell while the program runs. A failed program raises
:class:`CellFailedError`, shown as one line (the program's own traceback has
already streamed to stderr), so "Run all", nbval and papermill stop; pass
``--no-raise-error`` to carry on. Ctrl-C (the stop button) kills and removes
the container, then raises :class:`CellInterrupted`.

Defaults are traitlets on :class:`DockerMagics`: ``%config DockerMagics.timeout = 60``
or ``c.DockerMagics.timeout = 60`` in ``ipython_config.py``.

This is the only module that imports IPython; the core stays usable without it.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import logging
import secrets
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import publish_display_data
from traitlets import Dict, Float, Int, TraitError, Unicode, Union, default, observe, validate

from dockermagic.cleanup import cleanup
from dockermagic.diagnose import diagnose
from dockermagic.errors import DockermagicError, InvalidArgumentError
from dockermagic.grading import Cell, Outcome, Verdict, answer_from_cells, find_exercise
from dockermagic.grading import check as check_answer
from dockermagic.inputs import encode_inputs
from dockermagic.logs import (
    LogSink,
    OutputMirror,
    log_directory,
    log_result,
    prepare_log_dir,
    start_logging,
)
from dockermagic.packages import normalise_requirements, read_requirements
from dockermagic.policy import SandboxPolicy, size_text
from dockermagic.pool import close_pools
from dockermagic.result import RunResult
from dockermagic.runners import (
    AbstractDockerCodeRunner,
    CodeRunner,
    runner_class_for,
    runner_classes,
)
from dockermagic.sessions import Session, SessionManager
from dockermagic.settings import current_settings

__all__ = [
    "CellError",
    "CellFailedError",
    "CellInterrupted",
    "DockerMagics",
    "load_ipython_extension",
    "unload_ipython_extension",
]

logger = logging.getLogger(__name__)

#: How many of the latest cells %docker_check can find an answer in.
CELLS_KEPT = 500

RunnerClass = type[AbstractDockerCodeRunner]
MagicFunction = Callable[[str, str], None]
F = TypeVar("F", bound=Callable[..., Any])


# Typed fronts for IPython's untyped magic_arguments helpers.
def _magic_arguments(func: F) -> F:
    decorated: F = magic_arguments()(func)  # type: ignore[no-untyped-call]
    return decorated


class _Decorator(Protocol):
    def __call__(self, func: F, /) -> F: ...


def _argument(*args: Any, **kwargs: Any) -> _Decorator:
    decorator: _Decorator = argument(*args, **kwargs)  # type: ignore[no-untyped-call]
    return decorator


def _line_magic(func: F) -> F:
    return cast(F, line_magic(func))


def _cell_magic(func: F) -> F:
    return cast(F, cell_magic(func))


def _parse(func: Callable[..., Any], line: str) -> Any:
    return parse_argstring(func, line)  # type: ignore[no-untyped-call]


class CellError(DockermagicError):
    """A ``%%docker`` cell could not run; shown as one line, without a traceback.

    Attributes:
        title: The name shown before the message (an exception class name).
        result: The run's result, when the program ran.
    """

    def __init__(self, message: str, *, title: str = "", result: RunResult | None = None) -> None:
        super().__init__(message)
        self.title = title or type(self).__name__
        self.result = result

    def _render_traceback_(self) -> list[str]:
        # IPython calls this instead of formatting the stack: the frames of
        # the magic's machinery mean nothing to the notebook's user.
        return [f"{self.title}: {self}"]


class CellFailedError(CellError):
    """The program in a cell failed: non-zero exit, timeout, out of memory, output cap."""


class CellInterrupted(KeyboardInterrupt):
    """The user interrupted a cell; its container (or session program) was killed."""

    def _render_traceback_(self) -> list[str]:
        return [f"KeyboardInterrupt: {self}"]


def _run_options(func: Any) -> Any:
    """Add the options every running magic shares (applied bottom-up)."""
    options = [
        _argument("--image", metavar="IMAGE", help="the image to run (default: configured)"),
        _argument("--timeout", metavar="SECONDS", type=float, help="wall-clock limit"),
        _argument("--memory", metavar="SIZE", help="memory limit, e.g. 512m or 1g"),
        _argument("--cpus", metavar="N", type=float, help="CPUs, e.g. 0.5"),
        _argument("--network", action="store_true", help="give the container a network"),
        _argument("--out", metavar="VAR", help="store stdout in VAR instead of showing it"),
        _argument("--err", metavar="VAR", help="store stderr in VAR instead of showing it"),
        _argument("--result", metavar="VAR", help="store the whole RunResult in VAR"),
        _argument(
            "--in",
            dest="inputs",
            metavar="VAR",
            nargs="+",
            default=[],
            help="notebook variables (JSON-encodable) the code can read: variables "
            "in Python, constants in JavaScript",
        ),
        _argument(
            "--no-raise-error",
            dest="raise_error",
            action="store_false",
            help="do not raise when the program fails",
        ),
        _argument("--session", metavar="NAME", help="run in the warm container NAME"),
        _argument("--quiet", action="store_true", help="do not show the output"),
        _argument(
            "--stats",
            action="store_true",
            help="print the run's wall time, CPU time and peak memory",
        ),
        _argument(
            "--put",
            metavar="PATH",
            nargs="+",
            action="extend",
            default=[],
            help="host files or folders to copy into the working directory first",
        ),
        _argument(
            "--get",
            metavar="GLOB",
            nargs="+",
            action="extend",
            default=[],
            help="files of the working directory to copy back after the run",
        ),
        _argument("--get-to", metavar="DIR", help="where --get writes (default: here)"),
        _argument(
            "--stdin",
            metavar="VAR",
            help="a notebook variable whose text is the program's standard input",
        ),
        _argument(
            "--requirements",
            metavar="FILE_OR_SPEC",
            nargs="+",
            help="packages for this cell (specs, or a requirements.txt / package.json), "
            "instead of those of %%docker_requirements",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@magics_class
class DockerMagics(Magics):
    """Cell magics that run code in locked-down Docker containers.

    Configurable defaults (``%config DockerMagics``): :attr:`images`,
    :attr:`timeout`, :attr:`memory`, :attr:`cpus`, :attr:`output_limit`,
    :attr:`log_dir`.
    """

    images = Dict(
        key_trait=Unicode(),
        value_trait=Unicode(),
        help="Image per language, e.g. {'python': 'python:3.12-slim'}; "
        "unset languages use the runner's default.",
    ).tag(config=True)
    timeout = Float(help="Seconds a cell may run before it is killed.").tag(config=True)
    pool_size = Int(
        help="Idle containers kept started per configuration, so that a cell starts at "
        "once (each still runs one cell only); 0 turns pooling off."
    ).tag(config=True)
    memory = Union([Int(), Unicode()], help="Memory limit per container, e.g. '256m'.").tag(
        config=True
    )
    cpus = Float(help="CPUs per container (fractions allowed).").tag(config=True)
    output_limit = Union(
        [Int(), Unicode()], help="Output kept per cell before the program is killed, e.g. '1m'."
    ).tag(config=True)
    log_dir = Unicode(help="Where every cell's run is logged (default: logs/).").tag(config=True)
    head_lines = Int(200, help="Lines of a cell's output shown from its start (0: no limit).").tag(
        config=True
    )
    tail_lines = Int(50, help="Lines of a cell's output shown from its end.").tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        # Set before the traits load their configuration: a configured log_dir
        # starts the log writer from inside super().__init__.
        self._sink: LogSink | None = None
        self._sink_lock = threading.Lock()
        super().__init__(shell=shell, **kwargs)
        self.sessions = SessionManager()
        #: Language -> package specs for later cells (%docker_requirements).
        self.requirements: dict[str, tuple[str, ...]] = {}
        #: The cells run in this kernel, newest last, where %docker_check looks
        #: for answers. Kept here, not read from the history, because nbval and
        #: other front ends run cells with store_history=False.
        self.cells_run: collections.deque[str] = collections.deque(maxlen=CELLS_KEPT)
        for cls in runner_classes():
            for name in _magic_names(cls):
                self.magics["cell"][name] = self._language_magic(cls, name)
        if self._sink is None:
            self._start_logging(self.log_dir)
        # A kernel that exits without unloading still writes its last records.
        atexit.register(self.close)

    # -- configuration ------------------------------------------------------------------

    @default("timeout")
    def _default_timeout(self) -> float:
        return float(SandboxPolicy.default().timeout)

    @default("memory")
    def _default_memory(self) -> int | str:
        return SandboxPolicy.default().memory

    @default("cpus")
    def _default_cpus(self) -> float:
        return float(SandboxPolicy.default().cpus)

    @default("output_limit")
    def _default_output_limit(self) -> int | str:
        return SandboxPolicy.default().output_limit

    @default("pool_size")
    def _default_pool_size(self) -> int:
        setting = current_settings().pool_size
        return 2 if setting is None else setting

    @validate("pool_size")
    def _validate_pool_size(self, proposal: Any) -> int:
        value = int(proposal["value"])
        if value < 0:
            raise TraitError("DockerMagics.pool_size: must be 0 or more")
        return value

    @default("log_dir")
    def _default_log_dir(self) -> str:
        return str(log_directory())

    @validate("timeout", "memory", "cpus", "output_limit")
    def _validate_limit(self, proposal: Any) -> Any:
        name = proposal["trait"].name
        try:
            SandboxPolicy.default().replace(**{name: proposal["value"]})
        except InvalidArgumentError as exc:
            raise TraitError(f"DockerMagics.{name}: {exc}") from exc
        return proposal["value"]

    @validate("images")
    def _validate_images(self, proposal: Any) -> dict[str, str]:
        images: dict[str, str] = {}
        for language, image in proposal["value"].items():
            try:
                canonical = runner_class_for(language).language
            except InvalidArgumentError as exc:
                raise TraitError(f"DockerMagics.images: {exc}") from exc
            if not image.strip():
                raise TraitError(f"DockerMagics.images: empty image for {language!r}")
            images[canonical] = image.strip()
        return images

    @validate("log_dir")
    def _validate_log_dir(self, proposal: Any) -> str:
        value = str(proposal["value"]).strip()
        if not value:
            raise TraitError("DockerMagics.log_dir: must not be empty")
        try:
            prepare_log_dir(value)
        except DockermagicError as exc:
            raise TraitError(f"DockerMagics.log_dir: {exc}") from exc
        return value

    @observe("log_dir")
    def _log_dir_changed(self, change: Any) -> None:
        self._start_logging(change["new"])

    def _start_logging(self, directory: str) -> None:
        try:
            sink = start_logging(directory)
        except DockermagicError as exc:
            raise TraitError(f"DockerMagics.log_dir: {exc}") from exc
        with self._sink_lock:
            old, self._sink = self._sink, sink
        if old is not None:
            old.stop()

    def policy(self, args: Any = None) -> SandboxPolicy:
        """The sandbox policy for a cell: configured defaults, then the cell's options.

        Args:
            args: Parsed magic options, or None for the defaults alone.

        Returns:
            The policy.

        Raises:
            UsageError: When an option's value is not acceptable.
        """
        try:
            base = SandboxPolicy.default().replace(
                timeout=self.timeout,
                memory=self.memory,
                cpus=self.cpus,
                output_limit=self.output_limit,
            )
            if args is None:
                return base
            return base.replace(
                timeout=args.timeout,
                memory=args.memory,
                cpus=args.cpus,
                network=True if args.network else None,
            )
        except InvalidArgumentError as exc:
            raise UsageError(str(exc)) from exc

    def close(self) -> None:
        """Stop every session, the pools and the log writer (on unload and at exit)."""
        atexit.unregister(self.close)
        self.sessions.close()
        close_pools()
        with self._sink_lock:
            sink, self._sink = self._sink, None
        if sink is not None:
            sink.stop()

    def remember_cell(self, info: Any) -> None:
        """Note a cell about to run (IPython's ``pre_run_cell`` event).

        Args:
            info: IPython's ``ExecutionInfo``; its ``raw_cell`` is the cell as typed.
        """
        raw = getattr(info, "raw_cell", None)
        if isinstance(raw, str) and raw.strip():
            self.cells_run.append(raw)

    def warm_up(self) -> None:
        """Start filling the default pools in the background (the first cell is then warm)."""
        if not self.pool_size:
            return

        def fill() -> None:
            for cls in runner_classes():
                try:
                    runner = cls(policy=self.policy(), pool=self.pool_size)
                    pool = runner.pool
                    if pool is not None:
                        pool.warm_up()
                except DockermagicError as exc:  # no engine or image: the first cell says so
                    logger.debug("no warm pool for %s: %s", cls.language, exc)

        threading.Thread(target=fill, name="dockermagic-warm", daemon=True).start()

    # -- magics ---------------------------------------------------------------------------

    @_magic_arguments
    @_argument("language", help="python, javascript, or an alias (py, js, node...)")
    @_run_options
    @_cell_magic
    def docker(self, line: str, cell: str) -> None:
        """Run the cell in a locked-down Docker container, in the language given.

        The container has no network, a read-only root file system, a writable
        working directory, limited memory, CPUs and processes, and runs as an
        unprivileged user. It is removed when the cell ends, also on error,
        timeout or interrupt.
        """
        args = _parse(self.docker, line)
        try:
            cls = runner_class_for(args.language)
        except InvalidArgumentError as exc:
            raise UsageError(str(exc)) from exc
        self._run(cls, args, cell)

    def _language_magic(self, cls: RunnerClass, name: str) -> MagicFunction:
        def magic(line: str, cell: str) -> None:
            self._run(cls, _parse(magic, line), cell)

        magic.__name__ = magic.__qualname__ = name
        magic.__doc__ = (
            f"Run the cell as {cls.language} in a locked-down Docker container.\n\n"
            "No network, read-only root file system, a writable working directory, "
            "limited memory, CPUs and processes, an unprivileged user. The container "
            "is removed when the cell ends, also on error, timeout or interrupt."
        )
        decorated: MagicFunction = _magic_arguments(_run_options(magic))
        return decorated

    @_magic_arguments
    @_argument("name", nargs="?", help="a session, for --put or --get")
    @_argument("--stop", metavar="NAME", help="stop the session NAME (all its languages)")
    @_argument("--stop-all", action="store_true", help="stop every session")
    @_argument(
        "--get",
        metavar="GLOB",
        nargs="+",
        action="extend",
        default=[],
        help="copy files of the session's working directory here",
    )
    @_argument("--get-to", metavar="DIR", help="where --get writes (default: here)")
    @_argument(
        "--put",
        metavar="PATH",
        nargs="+",
        action="extend",
        default=[],
        help="copy these files or folders into the session's working directory",
    )
    @_argument("--language", metavar="LANG", help="the session's language, for --put/--get")
    @_line_magic
    def docker_session(self, line: str) -> None:
        """List the warm sessions of this kernel, stop them, or move files in and out."""
        args = _parse(self.docker_session, line)
        if args.put or args.get:
            session = self._named_session(args.name, args.language)
            try:
                with _warnings_to_stderr():
                    # Put first: "--put data --get out/*" is one round trip's worth.
                    result = session.run("", put=args.put, get=args.get, display_last=False)
            except DockermagicError as exc:
                raise CellError(str(exc), title=type(exc).__name__) from exc
            if args.put:
                print(f"put {', '.join(args.put)} into session {session.name!r}")
            if args.get:
                _save_files(result, args.get_to or ".")
            return
        if args.stop_all:
            count = self.sessions.stop_all()
            print(f"stopped {count} session(s)")
            return
        if args.stop:
            stopped = self.sessions.stop(args.stop)
            if not stopped:
                raise UsageError(f"no session named {args.stop!r}")
            languages = ", ".join(s.language for s in stopped)
            print(f"stopped session {args.stop!r} ({languages})")
            return
        sessions = self.sessions.sessions()
        if not sessions:
            print("no sessions (start one with %%docker_python --session NAME)")
        for session in sessions:
            print(_describe_session(session))

    def _named_session(self, name: str | None, language: str | None) -> Session:
        """The live session ``name`` (of ``language``, if given), or a usage error."""
        if not name:
            raise UsageError("--put/--get need the session's name: %docker_session NAME --get GLOB")
        try:
            wanted = runner_class_for(language).language if language else None
        except InvalidArgumentError as exc:
            raise UsageError(str(exc)) from exc
        for session in self.sessions.sessions():
            if session.name == name and wanted in (None, session.language):
                return session
        raise UsageError(f"no session named {name!r}")

    @_magic_arguments
    @_argument("language", nargs="?", help="python, javascript or an alias")
    @_argument("specs", nargs="*", help="package specs, or a requirements.txt / package.json")
    @_argument("--clear", action="store_true", help="forget the language's packages")
    @_line_magic
    def docker_requirements(self, line: str) -> None:
        """Declare the packages later cells of a language need; alone, show them.

        The first cell that needs them builds a derived image once (the
        sandbox never gets network); every later cell, session and run reuses it.
        """
        args = _parse(self.docker_requirements, line)
        if not args.language:
            if not self.requirements:
                print("no requirements (declare some: %docker_requirements python numpy)")
            for language, specs in sorted(self.requirements.items()):
                print(f"{language:<11} {' '.join(specs)}")
            return
        try:
            language = runner_class_for(args.language).language
            if args.clear:
                self.requirements.pop(language, None)
                print(f"{language}: no requirements")
                return
            if not args.specs:
                specs = self.requirements.get(language, ())
                print(f"{language:<11} {' '.join(specs) or 'no requirements'}")
                return
            self.requirements[language] = normalise_requirements(
                language, _expand_specs(args.specs)
            )
        except InvalidArgumentError as exc:
            raise UsageError(str(exc)) from exc
        print(f"{language}: {' '.join(self.requirements[language])} (built at the next cell)")

    @_magic_arguments
    @_argument("name", nargs="?", help="the session to restart (default: every session)")
    @_argument("--language", metavar="LANG", help="only this language's interpreter")
    @_line_magic
    def docker_reset(self, line: str) -> None:
        """Restart a session's interpreters: its variables and files are gone."""
        args = _parse(self.docker_reset, line)
        try:
            with _warnings_to_stderr():
                reset = self.sessions.reset(args.name, args.language)
        except InvalidArgumentError as exc:
            raise UsageError(str(exc)) from exc
        except DockermagicError as exc:
            raise CellError(str(exc), title=type(exc).__name__) from exc
        if not reset:
            raise UsageError(f"no session named {args.name!r}" if args.name else "no sessions")
        for session in reset:
            print(f"restarted session {session.name!r} ({session.language})")

    @_line_magic
    def docker_status(self, line: str) -> None:
        """Show the engine (or the gateway), the images, the live sessions and the logs."""
        sink = self._sink
        where = sink.directory if sink is not None else log_directory(self.log_dir)
        found = diagnose(images=self.images, log_dir=where, policy=self.policy())
        for label, text in found.engine_rows():
            print(f"{label:<11} {text}")
        for cls, check in zip(runner_classes(), found.images, strict=True):
            if found.version is None and not found.gateway:
                image = check.image or "default image"
                print(f"{check.language:<11} {image}  (engine not reachable)")
                continue
            if check.problem:
                state = f"unavailable: {check.problem}"
            else:
                state = "present" if check.present else "missing (pulled on use)"
            magics = ", ".join(f"%%{n}" for n in _magic_names(cls))
            print(f"{check.language:<11} {check.image:<32} {state}  [{magics}]")
        sessions = self.sessions.sessions()
        print(f"sessions    {len(sessions) or 'none'}")
        for session in sessions:
            print(f"            {_describe_session(session)}")
        problem = f"  PROBLEM: {found.log_problem}" if found.log_problem else ""
        print(f"logs        {where}{problem}")
        policy = found.policy
        print(
            f"limits      timeout {policy.timeout:g} s, memory {size_text(policy.memory)}, "
            f"cpus {policy.cpus:g}, output {size_text(policy.output_limit)}, "
            f"network {'on' if policy.network else 'off'}"
        )

    @_magic_arguments
    @_argument("exercise", help="the exercise's id, e.g. 01-subprocess/run_tool, or its function")
    @_line_magic
    def docker_check(self, line: str) -> Verdict:
        """Check the answer to an exercise: in a fresh container, judged on this host.

        The answer is the last cell run in this kernel that is the exercise's
        cell or defines its function (a ``%%docker_python`` cell too); the
        course's checks must be imported first (``import exercise_checks``).
        """
        args = _parse(self.docker_check, line)
        try:
            item = find_exercise(args.exercise)
        except InvalidArgumentError as exc:
            raise UsageError(str(exc)) from exc
        answer = answer_from_cells(item.id, [Cell(source) for source in self.cells_run])
        if answer is None:
            return Verdict(
                Outcome.MISSING,
                f"run the cell that defines `{item.function}` first, then the check",
                weight=item.weight,
            )
        return check_answer(item, answer, on_wait=lambda text: print(text, flush=True))

    @_magic_arguments
    @_argument("directory", nargs="?", default="scripts", help="the scripts folder")
    @_argument("--sequential", action="store_true", help="start in sequential mode")
    @_line_magic
    def docker_panel(self, line: str) -> Any:
        """Show the scripts panel: tick scripts, run them in containers, watch, cancel."""
        args = _parse(self.docker_panel, line)
        from dockermagic.panel import ScriptsPanel

        sink = self._sink
        return ScriptsPanel(
            args.directory,
            log_dir=sink.directory if sink is not None else log_directory(self.log_dir),
            timeout=self.policy().timeout,
            mode="sequential" if args.sequential else "parallel",
        )

    # -- running a cell ------------------------------------------------------------------

    def _run(self, cls: RunnerClass, args: Any, cell: str) -> None:
        policy = self.policy(args)
        image = args.image or self.images.get(cls.language)
        quiet = bool(args.quiet)
        try:
            requirements = (
                normalise_requirements(cls.language, _expand_specs(args.requirements))
                if args.requirements
                else self.requirements.get(cls.language, ())
            )
        except InvalidArgumentError as exc:
            raise UsageError(str(exc)) from exc
        try:
            # Checked here, so that a bad value is a usage error before any container.
            inputs = encode_inputs(self._input_values(args.inputs))
        except InvalidArgumentError as exc:
            raise UsageError(str(exc)) from exc
        stdin = None
        if args.stdin:
            (value,) = self._input_values([args.stdin]).values()
            stdin = value if isinstance(value, (str, bytes)) else str(value)

        log_name = f"cells-{cls.language}"
        run_id = secrets.token_hex(6)
        mirror = OutputMirror(log_name, run_id, cls.language)
        mirror("source", cell)
        mirror.close()
        show_out = not quiet and args.out is None
        show_err = not quiet and args.err is None
        sink = self._sink
        shown = ShownOutput(
            self.head_lines,
            self.tail_lines,
            log_file=str(sink.output_path(log_name)) if sink is not None else "",
        )

        def on_output(stream: str, text: str) -> None:
            mirror(stream, text)
            if (stream == "stdout" and show_out) or (stream == "stderr" and show_err):
                shown.write(stream, text)

        def on_display(data: dict[str, Any], metadata: dict[str, Any]) -> None:
            if quiet:
                return
            # Text written so far goes first: ipykernel sends stream output in
            # batches, a display at once.
            shown.flush()
            publish_display_data(data, metadata)  # type: ignore[no-untyped-call]

        def on_progress(message: str) -> None:
            if not quiet:
                print(message, file=sys.stderr, flush=True)

        try:
            with _warnings_to_stderr():
                target: CodeRunner
                if args.session:
                    session = self.sessions.get(
                        args.session,
                        cls.language,
                        image=image,
                        policy=policy,
                        requirements=requirements,
                    )
                    session.runner.on_progress = on_progress
                    target = session
                else:
                    target = cls(
                        image=image,
                        policy=policy,
                        on_progress=on_progress,
                        requirements=requirements,
                        pool=self.pool_size,
                    )
                result = target.run(
                    cell,
                    on_output=on_output,
                    inputs=inputs,
                    on_display=on_display,
                    display_last=True,
                    put=args.put,
                    get=args.get,
                    stdin=stdin,
                    # Tracebacks as the editor shows the cell: its name, and
                    # line 1 is the %% line.
                    name=f"Cell In[{self.shell.execution_count}]" if self.shell else None,
                    first_line=2,
                )
        except KeyboardInterrupt:
            mirror.close()
            if args.session:
                message = f"{cls.language} cell interrupted; its session {args.session!r} stays"
            else:
                message = f"{cls.language} cell interrupted; its container was killed and removed"
            raise CellInterrupted(message) from None
        except InvalidArgumentError as exc:
            mirror.close()
            raise UsageError(str(exc)) from exc
        except DockermagicError as exc:
            mirror.close()
            raise CellError(str(exc), title=type(exc).__name__) from exc
        mirror.close()
        shown.close()
        log_result(log_name, run_id, result, origin="notebook")
        if args.get:
            _save_files(result, args.get_to or ".")
        if args.stats:
            print(stats_line(result), file=sys.stderr, flush=True)

        namespace = self.shell.user_ns if self.shell is not None else {}
        if args.out:
            namespace[args.out] = result.stdout
        if args.err:
            namespace[args.err] = result.stderr
        if args.result:
            namespace[args.result] = result
        if not result.ok and args.raise_error:
            raise CellFailedError(_failure_message(result, policy), result=result)

    def _input_values(self, names: list[str]) -> dict[str, Any]:
        namespace = self.shell.user_ns if self.shell is not None else {}
        values: dict[str, Any] = {}
        for name in names:
            if name not in namespace:
                raise UsageError(f"--in {name}: no variable {name!r} in the notebook")
            values[name] = namespace[name]
        return values


def _show(stream: Any, text: str) -> None:
    stream.write(text)
    # ipykernel's streams send what was written every flush_interval (0.2 s)
    # by themselves; flushing each chunk would make one output per chunk
    # (a traceback arrives in many small pieces). Other streams need a flush
    # for a line to show while the program still runs.
    if not hasattr(stream, "flush_interval"):
        stream.flush()


class ShownOutput:
    """What of a cell's output the notebook shows: its head and its tail.

    A flooding cell would otherwise turn the notebook file into megabytes:
    past ``head`` lines (or 100 characters a line on average), output is held
    back, and at the end one line says how much was left out and where all of
    it is, followed by the last ``tail`` lines. Streams are shown as they come.

    Args:
        head: Lines shown from the start; 0 shows everything.
        tail: Lines shown from the end.
        log_file: The file that holds all of it, named in the note.
    """

    def __init__(self, head: int, tail: int, *, log_file: str = "") -> None:
        self.head = head
        self.tail = tail
        self.log_file = log_file
        self._lines = 0
        self._chars = 0
        self._held: collections.deque[tuple[str, str]] = collections.deque()
        self._partial: dict[str, str] = {}
        self._elided = 0

    def _full(self) -> bool:
        return bool(self.head) and (self._lines >= self.head or self._chars >= self.head * 100)

    def write(self, stream: str, text: str) -> None:
        """Show or hold back one chunk of a stream."""
        while text and not self._full():
            cut = text.find("\n")
            piece = text if cut == -1 else text[: cut + 1]
            room = self.head * 100 - self._chars if self.head else len(piece)
            if len(piece) > room:
                piece = piece[:room]
            _show(sys.stdout if stream == "stdout" else sys.stderr, piece)
            self._chars += len(piece)
            self._lines += piece.endswith("\n")
            text = text[len(piece) :]
        if text:
            self._hold(stream, text)

    def _hold(self, stream: str, text: str) -> None:
        pending = self._partial.pop(stream, "") + text
        *lines, rest = pending.split("\n")
        if rest:
            self._partial[stream] = rest[-10_000:]
        for line in lines:
            self._held.append((stream, line[-10_000:] + "\n"))
            if len(self._held) > self.tail:
                self._held.popleft()
                self._elided += 1

    def flush(self) -> None:
        """Send what was written so far (before a display)."""
        for stream in (sys.stdout, sys.stderr):
            stream.flush()

    def close(self) -> None:
        """Show the note of what was left out, then the tail."""
        for stream, rest in self._partial.items():
            self._held.append((stream, rest))
            if len(self._held) > self.tail:
                self._held.popleft()
                self._elided += 1
        self._partial = {}
        if self._elided:
            where = f" (all of it is in {self.log_file})" if self.log_file else ""
            _show(
                sys.stderr,
                f"\n[dockermagic] {self._elided} line(s) of output not shown{where}\n",
            )
        for stream, line in self._held:
            _show(sys.stdout if stream == "stdout" else sys.stderr, line)
        self._held.clear()
        self.flush()


def stats_line(result: RunResult) -> str:
    """One line of what a run cost, e.g. ``0.21 s wall · 0.78 s CPU (3.7 cores) · 41 MiB peak``.

    Args:
        result: The run's result.

    Returns:
        The line ("CPU unknown" where the runner cannot tell).
    """
    parts = [f"{result.duration:.2f} s wall"]
    if result.cpu_seconds is None:
        parts.append("CPU unknown")
    else:
        cores = result.cpu_seconds / result.duration if result.duration > 0 else 0.0
        parts.append(f"{result.cpu_seconds:.2f} s CPU ({cores:.1f} cores)")
    if result.peak_memory_bytes is not None:
        parts.append(f"{result.peak_memory_bytes / 2**20:.0f} MiB peak")
    return " · ".join(parts)


def _expand_specs(items: list[str]) -> list[str]:
    """Specs from the command line: a file name stands for its specs."""
    specs: list[str] = []
    for item in items:
        if item.endswith((".txt", ".json")) and Path(item).is_file():
            specs += read_requirements(item)
        else:
            specs += [part for part in item.split(",") if part.strip()]
    return specs


def _save_files(result: RunResult, folder: str) -> None:
    """Write the files a run brought back into a folder, never outside it."""
    root = Path(folder).resolve()
    written, skipped = [], [f"{name} ({why})" for name, why in result.files_skipped]
    for name, data in sorted(result.files.items()):
        target = (root / name).resolve()
        if root != target and root not in target.parents:
            skipped.append(f"{name} (outside {root})")
            continue
        if target.is_symlink() or (target.exists() and not target.is_file()):
            skipped.append(f"{name} (not a regular file here)")
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        written.append(name)
    if written:
        print(f"got {len(written)} file(s) into {folder}: {', '.join(written)}", file=sys.stderr)
    if skipped:
        print(f"not copied: {'; '.join(skipped)}", file=sys.stderr)
    if not written and not skipped:
        print("no file matched --get", file=sys.stderr)


def _magic_names(cls: RunnerClass) -> list[str]:
    """``docker_<language>`` and ``docker_<first alias>`` (both valid identifiers)."""
    names = [f"docker_{cls.language}"]
    names += [f"docker_{alias}" for alias in cls.aliases[:1]]
    return [n for n in dict.fromkeys(names) if n.isidentifier()]


def _failure_message(result: RunResult, policy: SandboxPolicy) -> str:
    what = f"{result.language} cell {result.describe(policy)}"
    # Say how to raise the limit the cell hit.
    if result.timed_out:
        return f"{what}; raise the limit with --timeout or %config DockerMagics.timeout"
    if result.oom_killed:
        return f"{what}; raise the limit with --memory 1g or %config DockerMagics.memory"
    if result.output_truncated:
        return f"{what}; raise the limit with %config DockerMagics.output_limit"
    return what


def _describe_session(session: Any) -> str:
    state = "running" if session.alive else "not running"
    container = session.container_name or "no container yet"
    return (
        f"{session.name} ({session.language}): {state}, {container}, "
        f"{session.runs} cell(s), image {session.runner.image}"
    )


@contextmanager
def _warnings_to_stderr() -> Iterator[None]:
    """Show the core's warnings (a recreated session...) as one line each."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for warning in caught:
                print(f"Warning: {warning.message}", file=sys.stderr, flush=True)


_loaded: dict[int, DockerMagics] = {}


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics (``%load_ext dockermagic``) and remove dead leftovers.

    Args:
        ipython: The running ``InteractiveShell``.
    """
    if id(ipython) in _loaded:
        unload_ipython_extension(ipython)
    try:
        removed = cleanup()
    except DockermagicError as exc:
        # Still load: %docker_status then explains what is wrong.
        print(f"Warning: dockermagic: {exc}", file=sys.stderr)
    else:
        # Logged, not printed: a notebook's first output must not depend on
        # what another kernel left behind.
        if removed:
            logger.info("removed %d leftover container(s)", len(removed))
    magics = DockerMagics(shell=ipython)
    ipython.register_magics(magics)
    ipython.events.register("pre_run_cell", magics.remember_cell)
    _loaded[id(ipython)] = magics
    magics.warm_up()


def unload_ipython_extension(ipython: Any) -> None:
    """Stop every session, close the logs and remove the magics (``%unload_ext``).

    Args:
        ipython: The running ``InteractiveShell``.
    """
    magics = _loaded.pop(id(ipython), None)
    if magics is None:
        return
    magics.close()
    with contextlib.suppress(ValueError):
        ipython.events.unregister("pre_run_cell", magics.remember_cell)
    manager = ipython.magics_manager
    for kind, table in magics.magics.items():
        for name, function in table.items():
            if manager.magics[kind].get(name) is function:
                del manager.magics[kind][name]
    if manager.registry.get(type(magics).__name__) is magics:
        del manager.registry[type(magics).__name__]
    if magics in ipython.configurables:
        ipython.configurables.remove(magics)
