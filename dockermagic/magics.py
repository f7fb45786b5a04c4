"""The IPython extension: ``%load_ext dockermagic``.

Cell magics are generated from the runner registry: ``%%docker LANGUAGE`` for
any registered language, plus ``%%docker_<language>`` and
``%%docker_<first alias>`` for each (``%%docker_python``, ``%%docker_py``,
``%%docker_javascript``, ``%%docker_js``). A runner subclass registered before
the extension loads gets its magics for free. Line magics: ``%docker_status``,
``%docker_session`` and ``%docker_reset`` (restart a session's interpreter).

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
import secrets
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar, cast

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from traitlets import Dict, Float, Int, TraitError, Unicode, Union, default, observe, validate

from dockermagic.cleanup import cleanup
from dockermagic.diagnose import diagnose
from dockermagic.errors import DockermagicError, InvalidArgumentError
from dockermagic.inputs import encode_inputs
from dockermagic.logs import (
    LogSink,
    OutputMirror,
    log_directory,
    log_result,
    prepare_log_dir,
    start_logging,
)
from dockermagic.policy import SandboxPolicy, size_text
from dockermagic.result import RunResult
from dockermagic.runners import (
    AbstractDockerCodeRunner,
    CodeRunner,
    runner_class_for,
    runner_classes,
)
from dockermagic.sessions import SessionManager

__all__ = [
    "CellError",
    "CellFailedError",
    "CellInterrupted",
    "DockerMagics",
    "load_ipython_extension",
    "unload_ipython_extension",
]

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
    memory = Union([Int(), Unicode()], help="Memory limit per container, e.g. '256m'.").tag(
        config=True
    )
    cpus = Float(help="CPUs per container (fractions allowed).").tag(config=True)
    output_limit = Union(
        [Int(), Unicode()], help="Output kept per cell before the program is killed, e.g. '1m'."
    ).tag(config=True)
    log_dir = Unicode(help="Where every cell's run is logged (default: logs/).").tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        # Set before the traits load their configuration: a configured log_dir
        # starts the log writer from inside super().__init__.
        self._sink: LogSink | None = None
        self._sink_lock = threading.Lock()
        super().__init__(shell=shell, **kwargs)
        self.sessions = SessionManager()
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
        """Stop every session and the log writer (called on unload and at exit)."""
        atexit.unregister(self.close)
        self.sessions.close()
        with self._sink_lock:
            sink, self._sink = self._sink, None
        if sink is not None:
            sink.stop()

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
    @_argument("--stop", metavar="NAME", help="stop the session NAME (all its languages)")
    @_argument("--stop-all", action="store_true", help="stop every session")
    @_line_magic
    def docker_session(self, line: str) -> None:
        """List the warm sessions of this kernel, or stop them."""
        args = _parse(self.docker_session, line)
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
        """Show the engine, the images, the live sessions and where the logs are."""
        sink = self._sink
        where = sink.directory if sink is not None else log_directory(self.log_dir)
        found = diagnose(images=self.images, log_dir=where, policy=self.policy())
        if found.version is None:
            print(f"engine      NOT REACHABLE: {found.engine_error}")
        else:
            version = found.version
            print(
                f"engine      Docker {version['version']} (API {version['api_version']}, "
                f"{version['os']}/{version['arch']}) at {found.address}"
            )
        for cls, check in zip(runner_classes(), found.images, strict=True):
            if found.version is None:
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
            # Checked here, so that a bad value is a usage error before any container.
            inputs = encode_inputs(self._input_values(args.inputs))
        except InvalidArgumentError as exc:
            raise UsageError(str(exc)) from exc

        log_name = f"cells-{cls.language}"
        run_id = secrets.token_hex(6)
        mirror = OutputMirror(log_name, run_id, cls.language)
        mirror("source", cell)
        mirror.close()
        show_out = not quiet and args.out is None
        show_err = not quiet and args.err is None

        def on_output(stream: str, text: str) -> None:
            mirror(stream, text)
            if stream == "stdout" and show_out:
                _show(sys.stdout, text)
            elif stream == "stderr" and show_err:
                _show(sys.stderr, text)

        def on_progress(message: str) -> None:
            if not quiet:
                print(message, file=sys.stderr, flush=True)

        try:
            with _warnings_to_stderr():
                target: CodeRunner
                if args.session:
                    session = self.sessions.get(
                        args.session, cls.language, image=image, policy=policy
                    )
                    session.runner.on_progress = on_progress
                    target = session
                else:
                    target = cls(image=image, policy=policy, on_progress=on_progress)
                result = target.run(cell, on_output=on_output, inputs=inputs)
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
        log_result(log_name, run_id, result, origin="notebook")

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


def _magic_names(cls: RunnerClass) -> list[str]:
    """``docker_<language>`` and ``docker_<first alias>`` (both valid identifiers)."""
    names = [f"docker_{cls.language}"]
    names += [f"docker_{alias}" for alias in cls.aliases[:1]]
    return [n for n in dict.fromkeys(names) if n.isidentifier()]


def _failure_message(result: RunResult, policy: SandboxPolicy) -> str:
    return f"{result.language} cell {result.describe(policy)}"


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
        if removed:
            print(f"dockermagic: removed {len(removed)} leftover container(s)", file=sys.stderr)
    magics = DockerMagics(shell=ipython)
    ipython.register_magics(magics)
    _loaded[id(ipython)] = magics


def unload_ipython_extension(ipython: Any) -> None:
    """Stop every session, close the logs and remove the magics (``%unload_ext``).

    Args:
        ipython: The running ``InteractiveShell``.
    """
    magics = _loaded.pop(id(ipython), None)
    if magics is None:
        return
    magics.close()
    manager = ipython.magics_manager
    for kind, table in magics.magics.items():
        for name, function in table.items():
            if manager.magics[kind].get(name) is function:
                del manager.magics[kind][name]
    if manager.registry.get(type(magics).__name__) is magics:
        del manager.registry[type(magics).__name__]
    if magics in ipython.configurables:
        ipython.configurables.remove(magics)
