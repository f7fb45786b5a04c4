"""``dockermagic grade`` and ``dockermagic handout``: the teacher's commands.

A thin front end over :mod:`dockermagic.grading`: it loads the course, finds
the submissions, shows live progress, prints the student-by-exercise table
and the per-exercise summary, and writes the files asked for (``--csv``,
``--json``, ``--html``). Exit status 0 when grading ran, whatever the grades;
2 when it could not (no engine, no image, no course, no submissions folder, a
gateway that does not answer). With ``DOCKERMAGIC_GATEWAY`` set, the checks run
on that gateway as the token's user and the verdicts are still decided here.
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape as markup_escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from dockermagic.engine import default_client, engine_version
from dockermagic.errors import InvalidArgumentError
from dockermagic.grading.course import handout, load_course, select
from dockermagic.grading.grade import Record, grade, submissions
from dockermagic.grading.report import (
    html_report,
    records_csv,
    records_json,
    summary_lines,
    table,
)
from dockermagic.images import ensure_image, runner_image
from dockermagic.logs import escape_line, start_logging
from dockermagic.pool import close_pools
from dockermagic.runners import PythonDockerRunner
from dockermagic.settings import current_settings

__all__ = ["add_grading_commands", "cmd_grade", "cmd_handout"]


def cmd_grade(args: argparse.Namespace) -> int:
    """Grade a folder of submissions against a course; 0 when grading ran."""
    console = Console(highlight=False, stderr=args.json == "-")
    if args.workers < 1:
        raise InvalidArgumentError("worker count", args.workers, "must be at least 1")
    course = select(load_course(args.course), notebooks=args.notebook, exercises=args.exercise)
    if not course.exercises:
        raise InvalidArgumentError("course", args.course, "no exercises to grade")
    try:
        entries = submissions(args.submissions)
    except NotADirectoryError as exc:
        raise InvalidArgumentError("submissions", args.submissions, str(exc)) from None
    if not entries:
        raise InvalidArgumentError("submissions", args.submissions, "no notebooks, .py or folders")
    # Fail in one line before any check when nothing could run. Through a
    # gateway (DOCKERMAGIC_GATEWAY) the students' code runs there, as this
    # token's user, and the gateway keeps the images; the verdicts are still
    # decided here, from the reports the checks print.
    settings = current_settings()
    if settings.gateway:
        # Imported here: grading without a gateway never loads the client.
        from dockermagic.gateway.client import gateway_backend

        gateway_backend(settings.gateway, settings.token, ca=settings.gateway_ca).info()
    else:
        engine_version()
        client = default_client()
        ensure_image(client, runner_image(client, PythonDockerRunner))
    sink = start_logging(args.logs)
    total = len(entries) * len(course.exercises)
    # Plain text: names and hints are the students', never rich markup.
    say = functools.partial(console.print, markup=False, soft_wrap=True, highlight=False)
    say(
        f"grading {len(entries)} submission(s) on {len(course.exercises)} exercise(s) "
        f"({args.workers} at once, up to {args.student_timeout:g} s of checks per student)"
    )
    try:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(complete_style="blue", finished_style="blue"),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as progress:
            task = progress.add_task("checking", total=total)

            def show(record: Record) -> None:
                what = f"{escape_line(record.student)} · {record.exercise.rpartition('/')[2]}"
                progress.update(task, advance=1, description=f"checked {markup_escape(what)}")

            records = grade(
                course,
                entries,
                workers=args.workers,
                student_timeout=args.student_timeout,
                on_record=show,
            )
    finally:
        close_pools(wait=5.0)
        sink.stop()
    _write_outputs(args, records)
    say(table(records))
    say()
    for line in summary_lines(records):
        say(escape_line(line))
    say(f"logs: {escape_line(str(sink.directory))} (grade-<student>.log)")
    if args.json == "-":
        print(records_json(records), end="", flush=True)
    return 0


def _write_outputs(args: argparse.Namespace, records: list[Record]) -> None:
    if args.csv:
        Path(args.csv).write_text(records_csv(records), encoding="utf-8")
    if args.json and args.json != "-":
        Path(args.json).write_text(records_json(records), encoding="utf-8")
    if args.html:
        Path(args.html).write_text(html_report(records), encoding="utf-8")


def cmd_handout(args: argparse.Namespace) -> int:
    """Write the students' copy of a course."""
    course = load_course(args.course)
    written = handout(course, args.out)
    print(
        f"wrote {len(written)} notebook(s) with {len(course.exercises)} exercise(s) "
        f"to {args.out} (exercise outputs cleared, no solutions)"
    )
    return 0


def add_grading_commands(commands: Any) -> None:
    """Add ``grade`` and ``handout`` to the CLI's sub-command parsers.

    Args:
        commands: The ``add_subparsers()`` object of the main parser.
    """
    grade_parser = commands.add_parser(
        "grade",
        help="grade students' submissions in containers",
        description=(
            "Check every exercise of every submission (a notebook, a .py or a folder per "
            "student) in fresh containers; the verdicts are decided on this host. Exit "
            "status 0 when grading ran, whatever the grades; 2 when it could not."
        ),
    )
    grade_parser.add_argument("submissions", metavar="SUBMISSIONS", help="one entry per student")
    grade_parser.add_argument(
        "--course", default="notebooks", metavar="DIR", help="the course folder (notebooks)"
    )
    grade_parser.add_argument(
        "--notebook",
        action="append",
        metavar="NAME",
        help="only this notebook's exercises: its name or a prefix, e.g. 01 (repeatable)",
    )
    grade_parser.add_argument(
        "--exercise", action="append", metavar="ID", help="only this exercise (repeatable)"
    )
    grade_parser.add_argument(
        "--workers", type=int, default=4, metavar="N", help="checks at once (4)"
    )
    grade_parser.add_argument(
        "--student-timeout",
        type=float,
        default=120.0,
        metavar="S",
        help="seconds of checks one student may use (120)",
    )
    grade_parser.add_argument("--csv", metavar="FILE", help="write the records as CSV")
    grade_parser.add_argument(
        "--json", metavar="FILE", help="write the records as JSON ('-': stdout)"
    )
    grade_parser.add_argument("--html", metavar="FILE", help="write a self-contained HTML report")
    grade_parser.add_argument("--logs", metavar="DIR", help="log directory (default: logs)")
    grade_parser.set_defaults(handler=cmd_grade)

    handout_parser = commands.add_parser(
        "handout", help="write the students' copy of a course (no solutions, no outputs)"
    )
    handout_parser.add_argument("out", metavar="OUT", help="a new folder")
    handout_parser.add_argument(
        "--course", default="notebooks", metavar="DIR", help="the course folder (notebooks)"
    )
    handout_parser.set_defaults(handler=cmd_handout)
