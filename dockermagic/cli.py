"""The ``dockermagic`` command line (also ``python -m dockermagic``).

A thin front end: each sub-command parses its options, calls the core, and
prints. Errors of the :class:`~dockermagic.errors.DockermagicError` family are
one line on stderr and exit status 2; they never show a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from dockermagic.cleanup import cleanup, list_containers
from dockermagic.engine import default_client, engine_version
from dockermagic.errors import DockermagicError
from dockermagic.images import image_present, prepare_images, resolve_image
from dockermagic.runners import runner_classes

__all__ = ["build_parser", "main"]

logger = logging.getLogger(__name__)

#: Sub-command name -> handler; other modules add theirs with :func:`command`.
Handler = Callable[[argparse.Namespace], int]


def _echo(message: str) -> None:
    print(message, flush=True)


def cmd_images(args: argparse.Namespace) -> int:
    """Make the runners' images available (pull, or build offline)."""
    offline: bool | None = True if args.offline else (False if args.pull else None)
    statuses = prepare_images(
        default_client(), runner_classes(), offline=offline, rebuild=args.rebuild, on_progress=_echo
    )
    for status in statuses:
        _echo(f"{status.language:<11} {status.image:<32} {status.action}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    """Report the engine, the images and leftover containers."""
    client = default_client()
    version = engine_version(client)
    _echo(
        f"engine      Docker {version['version']} (API {version['api_version']}, "
        f"{version['os']}/{version['arch']})"
    )
    problems = 0
    for cls in runner_classes():
        image = resolve_image(
            client,
            explicit=None,
            env_var=cls.image_env_var,
            default=cls.default_image,
            offline=cls.offline_image,
        )
        present = image_present(client, image)
        problems += not present
        state = "present" if present else "MISSING (run `dockermagic images`)"
        _echo(f"{cls.language:<11} {image:<32} {state}")
    containers = list_containers(client)
    _echo(f"containers  {len(containers)} dockermagic container(s) exist")
    return 1 if problems else 0


def cmd_cleanup(args: argparse.Namespace) -> int:
    """Remove leftover containers."""
    removed = cleanup(everything=args.all)
    _echo(f"removed {len(removed)} container(s)" + (f": {', '.join(removed)}" if removed else ""))
    return 0


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

    images = commands.add_parser("images", help="pull the runners' images, or build them offline")
    mode = images.add_mutually_exclusive_group()
    mode.add_argument(
        "--offline",
        action="store_true",
        help="build local images from Debian packages (no registry)",
    )
    mode.add_argument("--pull", action="store_true", help="only pull; never build")
    images.add_argument("--rebuild", action="store_true", help="rebuild offline images that exist")
    images.set_defaults(handler=cmd_images)

    doctor = commands.add_parser("doctor", help="check the engine, images and leftovers")
    doctor.set_defaults(handler=cmd_doctor)

    clean = commands.add_parser("cleanup", help="remove containers whose owner has exited")
    clean.add_argument("--all", action="store_true", help="also remove live owners' containers")
    clean.set_defaults(handler=cmd_cleanup)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: Arguments without the program name; ``sys.argv[1:]`` when None.

    Returns:
        The exit status.
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    handler: Handler = args.handler
    try:
        return handler(args)
    except DockermagicError as exc:
        print(f"dockermagic: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dockermagic: interrupted", file=sys.stderr)
        return 130
