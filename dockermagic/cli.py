"""The ``dockermagic`` command line (also ``python -m dockermagic``).

A thin front end: each sub-command parses its options, calls the core, and
prints. Errors of the :class:`~dockermagic.errors.DockermagicError` family are
one line on stderr and exit status 2; they never show a traceback.

Exit status of ``dockermagic run``: 0 when every script succeeded, 1 when one
did not, 2 for bad input, and for a run that was stopped the shell's
convention, 128 + the signal's number: 130 for Ctrl-C (SIGINT), 143 for
SIGTERM, 129 for SIGHUP. SIGTERM and SIGHUP (a closed terminal, a cancelled CI
job) stop a run exactly as Ctrl-C does: running containers are killed and
removed, every unfinished script is reported ``cancelled`` (in the summary and
the ``--json`` report), the logs are flushed and the pool's workers stopped.
A second signal while that stop runs is ignored; SIGKILL cannot be handled,
but then the pool's workers notice that their parent is gone and stop too.

Languages, file suffixes and the ``--image-<language>`` options come from the
runner registry, so a newly registered language shows up here by itself.

``dockermagic run`` options beyond the basics:

* ``--pool N``: idle containers each worker keeps started per language
  (default 2, or ``DOCKERMAGIC_POOL_SIZE``; 0 turns the pool off). Each
  script still gets a container no code has run in; none is left afterwards.
* ``--requirements ITEM ...``: packages, overriding the folder's
  ``requirements.txt`` / ``package.json`` per language. An item is
  ``LANG:SPEC[,SPEC...]`` (``python:tabulate``, ``js:lodash@4``), ``LANG:``
  (no packages for that language), or a file: a ``package.json`` is
  JavaScript, any other file a Python ``requirements.txt`` (``LANG:FILE``
  says otherwise). The images are built once, before any script starts; a
  package that cannot be had makes that language's scripts ``error`` with
  the reason.
* ``--outputs DIR``: each script's displays (plots, tables, HTML) as files
  in DIR, one per display (``<script>-001.png``...), listed per script in the
  ``--json`` report (``outputs``).
* ``--swarm [--swarm-limit N]``: each script runs as a one-off task on any
  node of the Swarm whose manager ``DOCKER_HOST`` names, N at once (default:
  the CPUs of the ready nodes; ``--sequential``: one at a time); same
  summary, statuses, logs and ``--json``, with each script's node
  (:mod:`dockermagic.batch.swarm`).
* With ``DOCKERMAGIC_GATEWAY`` set, each script is a run through the gateway
  (no Docker socket needed; ``--parallel`` defaults to the user's quota of
  runs at once; packages only those the teacher allows), with the same
  summary, statuses, logs and ``--json`` (:mod:`dockermagic.batch.gateway`).

``dockermagic images`` also manages *derived images* (a base image plus
packages): ``--requirements ITEM ... [--language L]`` builds one ahead of
time (for a classroom: once, before the lesson), ``--list`` shows them (tag,
language, requirements, size, age), ``--prune [--older-than DAYS]`` removes
those no container uses; the engine refuses to remove one that a container
(running or stopped) uses, and the command reports it as kept.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType, TracebackType

from rich.console import Console
from rich.table import Table
from rich.text import Text

from dockermagic.batch import (
    BatchProgress,
    StopSignal,
    discover_scripts,
    front_end_pool,
    run_scripts,
)
from dockermagic.batch.requirements import parse_requirement_args
from dockermagic.cleanup import cleanup, cleanup_swarm
from dockermagic.console import ConsoleProgress, shown, summary_table, totals_line
from dockermagic.diagnose import diagnose
from dockermagic.engine import default_client
from dockermagic.errors import DockermagicError, InvalidArgumentError
from dockermagic.gatewaycli import add_gateway_commands
from dockermagic.gradecli import add_grading_commands
from dockermagic.images import prepare_images, runner_image
from dockermagic.logs import start_logging
from dockermagic.packages import (
    derived_image,
    list_derived_images,
    normalise_requirements,
    prune_derived_images,
)
from dockermagic.policy import size_text
from dockermagic.runners import RunnerClass, runner_class_for, runner_classes
from dockermagic.usage import memory_text

__all__ = ["STOP_SIGNALS", "age_text", "build_parser", "main"]

logger = logging.getLogger(__name__)

#: What a sub-command's handler looks like: parsed options in, exit status out.
Handler = Callable[[argparse.Namespace], int]
#: Signals that stop the command in order, as Ctrl-C does.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
#: Columns of the run's display when it goes to a pipe or a file.
PIPE_WIDTH = 120


def _echo(message: str) -> None:
    print(message, flush=True)


def cmd_images(args: argparse.Namespace) -> int:
    """Make the runners' images available (pull, or build offline), or manage derived images."""
    if args.language and not args.requirements:
        raise InvalidArgumentError("--language", args.language, "goes with --requirements")
    if args.older_than is not None and not args.prune:
        raise InvalidArgumentError("--older-than", args.older_than, "goes with --prune")
    if args.rebuild and (args.requirements or args.list or args.prune):
        raise InvalidArgumentError("--rebuild", True, "rebuilds the offline base images only")
    if args.requirements:
        return _build_derived(args.requirements, args.language)
    if args.list:
        return _list_derived()
    if args.prune:
        return _prune_derived(args.older_than or 0.0)
    offline: bool | None = True if args.offline else (False if args.pull else None)
    statuses = prepare_images(
        default_client(), runner_classes(), offline=offline, rebuild=args.rebuild, on_progress=_echo
    )
    for status in statuses:
        _echo(f"{status.language:<11} {status.image:<32} {status.action}")
    return 0


def _build_derived(items: Sequence[str], language: str | None) -> int:
    """Build the derived images that requirements ask for (each language once)."""
    wanted = {
        name: normalise_requirements(name, specs)
        for name, specs in parse_requirement_args(items, default_language=language).items()
    }
    for name, normalised in wanted.items():
        if not normalised:
            raise InvalidArgumentError("requirements", f"{name}:", "lists no package")
    client = default_client()
    for name, normalised in sorted(wanted.items()):
        base = runner_image(client, runner_class_for(name))
        tag = derived_image(client, base, name, normalised, on_progress=_echo)
        _echo(f"{name:<11} {tag:<40} {' '.join(normalised)}")
    return 0


def _list_derived() -> int:
    """Show the derived images: tag, language, requirements, size, age."""
    found = list_derived_images(default_client())
    if not found:
        _echo("no derived images (build one: dockermagic images --requirements requirements.txt)")
        return 0
    table = Table(box=None, pad_edge=False)
    for column in ("tag", "language", "requirements", "size", "age"):
        table.add_column(column, justify="right" if column in ("size", "age") else "left")
    now = time.time()
    for image in found:
        table.add_row(
            image.tag,
            image.language,
            Text(" ".join(image.requirements)),
            memory_text(image.size),
            age_text(now - image.created) if image.created else "-",
        )
    Console(highlight=False, soft_wrap=True).print(table)
    return 0


def _prune_derived(days: float) -> int:
    """Remove the derived images no container uses; report the ones the engine kept."""
    if days < 0:
        raise InvalidArgumentError("--older-than", days, "must be a number of days, 0 or more")
    client = default_client()
    cutoff = time.time() - days * 86400
    candidates = [image.tag for image in list_derived_images(client) if image.created <= cutoff]
    removed = set(prune_derived_images(client, older_than_days=days))
    # The engine refuses (without force) to remove an image a container
    # uses, running or stopped: those are the candidates still there.
    kept = [tag for tag in candidates if tag not in removed]
    for tag in candidates:
        if tag in removed:
            _echo(f"removed {tag}")
    for tag in kept:
        _echo(f"kept    {tag} (a container uses it)")
    older = f" older than {days:g} day(s)" if days else ""
    _echo(f"removed {len(removed)} derived image(s){older}, kept {len(kept)} in use")
    return 0


def age_text(seconds: float) -> str:
    """An age for people: ``"40 s"``, ``"12 min"``, ``"5 h"``, ``"3 d"``.

    Args:
        seconds: The age.

    Returns:
        The text, in the largest unit that makes it at least 1.
    """
    for unit, scale in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= scale:
            return f"{seconds / scale:.0f} {unit}"
    return f"{max(seconds, 0):.0f} s"


def cmd_doctor(args: argparse.Namespace) -> int:
    """Report the engine, the images, leftover containers, the logs and the limits."""
    found = diagnose(log_dir=args.logs)
    for label, text in found.engine_rows():
        _echo(f"{label:<11} {text}")
    for check in found.images:
        if check.present:
            state = "present"
        elif check.problem:
            state = f"UNAVAILABLE: {check.problem}"
        else:
            state = "MISSING (run `dockermagic images`)"
        _echo(f"{check.language:<11} {check.image or 'default image':<32} {state}")
    if found.containers is not None:
        _echo(f"containers  {found.containers} dockermagic container(s) exist")
    if found.log_problem:
        _echo(f"logs        PROBLEM: {found.log_problem}")
    else:
        _echo(f"logs        {found.log_dir} is writable")
    policy = found.policy
    _echo(
        f"limits      timeout {policy.timeout:g} s, memory {size_text(policy.memory)}, "
        f"cpus {policy.cpus:g}, output {size_text(policy.output_limit)}, "
        f"network {'on' if policy.network else 'off'}"
    )
    return 1 if found.problems else 0


def cmd_run(args: argparse.Namespace) -> int:
    """Run every script of a folder; see the module docstring for the exit status."""
    parallel = args.parallel is not None
    workers = None if args.parallel in (None, "auto") else int(args.parallel)
    if args.swarm:
        if args.parallel is not None:
            raise InvalidArgumentError(
                "--parallel", args.parallel, "with --swarm, --swarm-limit N sets the tasks at once"
            )
        if args.pool is not None:
            raise InvalidArgumentError("--pool", args.pool, "Swarm tasks are not pooled")
        if args.swarm_limit is not None and args.swarm_limit < 1:
            raise InvalidArgumentError("--swarm-limit", args.swarm_limit, "must be at least 1")
        parallel, workers = not args.sequential, args.swarm_limit
    elif args.swarm_limit is not None:
        raise InvalidArgumentError("--swarm-limit", args.swarm_limit, "goes with --swarm")
    # With the JSON report on stdout, the human-readable display goes to stderr.
    console = Console(highlight=False, stderr=args.json == "-")
    if not console.is_terminal and "COLUMNS" not in os.environ:
        # A pipe or a CI log has no width; rich's 80 columns would squeeze
        # the summary's nine columns into wrapped names.
        console.width = PIPE_WIDTH
    # Bad input (folder, workers, timeout, log directory) fails here, in one
    # line, before any container starts.
    if workers is not None and workers < 1:
        raise InvalidArgumentError("worker count", workers, "must be at least 1")
    progress = BatchProgress.of(discover_scripts(args.directory))
    images = {cls.language: getattr(args, _image_dest(cls)) or "" for cls in runner_classes()}
    requirements = parse_requirement_args(args.requirements) if args.requirements else None
    sink = start_logging(args.logs)
    try:
        with ConsoleProgress(console, progress) as display:
            report = run_scripts(
                args.directory,
                mode="parallel" if parallel else "sequential",
                workers=workers,
                timeout=args.timeout,
                fail_fast=args.fail_fast,
                on_event=display,
                log_sink=sink,
                images=images,
                pool=front_end_pool(args.pool),
                requirements=requirements,
                outputs_dir=args.outputs,
                backend="swarm" if args.swarm else "local",
            )
    finally:
        sink.stop()  # every record written before anything else is shown
    if args.json and args.json != "-":
        # Written before the display: after SIGHUP the terminal may be gone.
        Path(args.json).write_text(report.to_json() + "\n", encoding="utf-8")
    console.print(summary_table(report))
    console.print(totals_line(report))
    if report.ignored:
        console.print(f"ignored (no runner): {', '.join(shown(name) for name in report.ignored)}")
    for language, specs in report.requirements.items():
        console.print(f"packages ({language}): {shown(' '.join(specs))}")
    if report.outputs_dir:
        written = sum(len(result.outputs) for result in report.results)
        console.print(f"displays: {written} file(s) in {shown(report.outputs_dir)}")
    console.print(f"logs: {shown(report.log_dir)}")
    if args.json == "-":
        print(report.to_json(), flush=True)
    if report.cancelled:
        return 128 + signal.SIGINT
    return 0 if report.ok else 1


def cmd_cleanup(args: argparse.Namespace) -> int:
    """Remove leftover containers."""
    removed = cleanup(everything=args.all, swarm=False)
    _echo(f"removed {len(removed)} container(s)" + (f": {', '.join(removed)}" if removed else ""))
    services = cleanup_swarm(everything=args.all)
    if services:
        _echo(f"removed {len(services)} Swarm service(s): {', '.join(services)}")
    return 0


def _worker_count(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of workers: {text!r}") from None


def _image_dest(cls: RunnerClass) -> str:
    return f"image_{cls.language}"


def _image_options(cls: RunnerClass) -> list[str]:
    """``--image-<language>``, and ``--image-<first alias>`` when there is one."""
    options = [f"--image-{cls.language}"]
    if cls.aliases and cls.aliases[0] != cls.language:
        options.append(f"--image-{cls.aliases[0]}")
    return options


def _suffix_list() -> str:
    suffixes = [suffix for cls in runner_classes() for suffix in cls.suffixes]
    if len(suffixes) < 2:
        return "".join(suffixes)
    return f"{', '.join(suffixes[:-1])} and {suffixes[-1]}"


class _QuietRuns(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith("dockermagic.runs")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command.

    Returns:
        The parser.
    """
    parser = argparse.ArgumentParser(
        prog="dockermagic", description="Run code in locked-down Docker containers."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    images = commands.add_parser(
        "images",
        help="pull the runners' images, build them offline, or manage derived images",
        description=(
            "Without options: pull each runner's image, or build it offline when no "
            "registry answers. Derived images (a base image plus packages, built "
            "without network in any container): --requirements builds one ahead of "
            "time, --list shows them, --prune removes those no container uses."
        ),
    )
    mode = images.add_mutually_exclusive_group()
    mode.add_argument(
        "--offline",
        action="store_true",
        help="build local images from Debian packages (no registry)",
    )
    mode.add_argument("--pull", action="store_true", help="only pull; never build")
    mode.add_argument(
        "--requirements",
        nargs="+",
        metavar="ITEM",
        help="build the derived image for a requirements.txt, a package.json, "
        "or LANG:SPEC[,SPEC] (python:tabulate, js:lodash@4)",
    )
    mode.add_argument("--list", action="store_true", help="show the derived images")
    mode.add_argument(
        "--prune", action="store_true", help="remove derived images no container uses"
    )
    images.add_argument("--rebuild", action="store_true", help="rebuild offline images that exist")
    images.add_argument(
        "--language", metavar="LANG", help="the language of bare specs given to --requirements"
    )
    images.add_argument(
        "--older-than",
        type=float,
        metavar="DAYS",
        help="with --prune: only images built more than DAYS days ago",
    )
    images.set_defaults(handler=cmd_images)

    doctor = commands.add_parser("doctor", help="check the engine, images, leftovers and logs")
    doctor.add_argument("--logs", metavar="DIR", help="the log directory to check")
    doctor.set_defaults(handler=cmd_doctor)

    run = commands.add_parser(
        "run",
        help="run every script of a folder, each in its own container",
        description=(
            f"Run the {_suffix_list()} files of a folder (sorted by name), each in "
            "a fresh locked-down container; a data/ subfolder is copied next to every "
            "script. Exit status 0 only when every script succeeded; 1 when one did "
            "not; 130 after Ctrl-C, 143 after SIGTERM, 129 after SIGHUP (each stops "
            "the run in order)."
        ),
    )
    run.add_argument("directory", nargs="?", default="scripts", metavar="DIR", help="(scripts)")
    how = run.add_mutually_exclusive_group()
    how.add_argument("--sequential", action="store_true", help="one script at a time (default)")
    how.add_argument(
        "--parallel",
        nargs="?",
        const="auto",
        type=_worker_count,
        metavar="N",
        help="N worker processes at once (default: one per CPU)",
    )
    run.add_argument("--timeout", type=float, metavar="S", help="seconds per script")
    run.add_argument("--logs", metavar="DIR", help="log directory (default: logs)")
    run.add_argument(
        "--json", metavar="FILE", help="write a JSON report ('-': stdout, display on stderr)"
    )
    run.add_argument("--fail-fast", action="store_true", help="stop after the first failure")
    run.add_argument(
        "--pool",
        type=int,
        metavar="N",
        help="idle containers kept started per worker and language "
        "(default 2, or DOCKERMAGIC_POOL_SIZE; 0: none)",
    )
    run.add_argument(
        "--requirements",
        nargs="+",
        metavar="ITEM",
        help="packages, instead of the folder's requirements.txt / package.json: "
        "LANG:SPEC[,SPEC] (python:tabulate, js:lodash@4), LANG: for none, or a file",
    )
    run.add_argument(
        "--outputs",
        metavar="DIR",
        help="write each script's displays (plots, tables, HTML) to files in DIR",
    )
    run.add_argument(
        "--swarm",
        action="store_true",
        help="run each script as a one-off task on any node of the Swarm whose manager "
        "DOCKER_HOST names (nodes need --bridge=none --no-new-privileges and the images)",
    )
    run.add_argument(
        "--swarm-limit",
        type=int,
        metavar="N",
        help="with --swarm: tasks at once (default: the CPUs of the ready nodes)",
    )
    for cls in runner_classes():
        run.add_argument(
            *_image_options(cls),
            dest=_image_dest(cls),
            metavar="IMG",
            help=f"image for {cls.language} scripts ({', '.join(cls.suffixes)})",
        )
    run.set_defaults(handler=cmd_run)

    clean = commands.add_parser("cleanup", help="remove containers whose owner has exited")
    clean.add_argument("--all", action="store_true", help="also remove live owners' containers")
    clean.set_defaults(handler=cmd_cleanup)

    add_grading_commands(commands)
    add_gateway_commands(commands)
    return parser


class _StopOnSignals:
    """While active, SIGTERM and SIGHUP raise :class:`StopSignal` (once) in the main thread.

    The first signal takes Ctrl-C's path through the command; later ones are
    ignored, so that they cannot break off the orderly stop they asked for.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> _StopOnSignals:
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)  # type: ignore[arg-type]

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:
            return
        self.received = signum
        raise StopSignal(signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: Arguments without the program name; ``sys.argv[1:]`` when None.

    Returns:
        The exit status (see the module docstring).
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        # A failed script's summary line belongs in the log file; the terminal
        # already shows the outcome in the summary table.
        for console in logging.getLogger().handlers:
            if not any(isinstance(f, _QuietRuns) for f in console.filters):
                console.addFilter(_QuietRuns())
    handler: Handler = args.handler
    with _StopOnSignals() as signals:
        try:
            # Containers of owners that died (killed shells, crashed kernels);
            # not before doctor, which must report an engine that does not answer.
            if args.command not in ("cleanup", "doctor", "gateway"):
                cleanup()
            status = handler(args)
        except DockermagicError as exc:
            print(f"dockermagic: error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt as exc:
            how = f" ({exc.name})" if isinstance(exc, StopSignal) else ""
            with contextlib.suppress(OSError):  # after SIGHUP, stderr may be gone
                print(f"dockermagic: interrupted{how}", file=sys.stderr)
            status = 128 + signal.SIGINT
        except OSError:
            if signals.received != signal.SIGHUP:
                raise
            status = 0  # the terminal went away while we were writing to it
        return 128 + signals.received if signals.received is not None else status
