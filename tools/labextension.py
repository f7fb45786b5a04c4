"""The JupyterLab extension: built from labextension/ into dockermagic/labextension/.

Usage (``make labextension`` runs ``build``; ``make venv`` runs ``link``):

    python tools/labextension.py build [--force]   build when the sources changed
    python tools/labextension.py check             exit 1 when the bundle is stale
    python tools/labextension.py link              editable installs: link the bundle

The bundle is committed, so that no one needs Node.js to install dockermagic.
It records the SHA-256 of the sources it was built from (``sources.sha256``);
``build`` compares that with the sources and does nothing when they match, so
a fresh clone, whatever its files' times, never rebuilds. When they differ it
runs ``npm ci`` (only when node_modules is older than package-lock.json),
``tsc`` and JupyterLab's builder, then copies ``install.json`` in and records
the new hash. Under CI (``CI`` set) a stale bundle is an error, not a build:
the bundle is built and committed on a developer's machine.

``link`` points ``share/jupyter/labextensions/jupyterlab-dockermagic`` of this
Python's environment at the bundle, as ``jupyter labextension develop`` does:
an editable install (``pip install -e``) has no data files of its own, while
``pip install .`` copies the bundle there (``[tool.setuptools.data-files]``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "labextension"
BUNDLE = REPO / "dockermagic" / "labextension"
NAME = "jupyterlab-dockermagic"
HASH_FILE = "sources.sha256"
#: What the bundle is built from, beside src/ (node_modules/ and lib/ are not sources).
SOURCE_FILES = ("package.json", "package-lock.json", "tsconfig.json", "install.json")


def source_files() -> list[Path]:
    """The files the bundle is built from, in a fixed order."""
    files = [SOURCE / name for name in SOURCE_FILES]
    files += sorted(p for p in (SOURCE / "src").rglob("*") if p.is_file())
    return files


def source_hash() -> str:
    """SHA-256 over the sources' relative paths and contents."""
    digest = hashlib.sha256()
    for path in source_files():
        digest.update(path.relative_to(SOURCE).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def recorded_hash() -> str | None:
    """The hash the committed bundle was built from, if it has one."""
    path = BUNDLE / HASH_FILE
    return path.read_text().split()[0] if path.is_file() else None


def is_current() -> bool:
    """Whether the bundle is built from the present sources."""
    return (BUNDLE / "package.json").is_file() and recorded_hash() == source_hash()


def say(message: str) -> None:
    """One line of this tool's output."""
    print(f"[labextension] {message}", flush=True)


def run(command: list[str]) -> None:
    """Run a command in labextension/, failing on a non-zero status."""
    say("$ " + " ".join(command))
    subprocess.run(command, cwd=SOURCE, check=True)


def builder_command() -> list[str]:
    """JupyterLab's extension builder, from this Python's environment."""
    scripts = Path(sys.executable).parent
    if (scripts / "jupyter-builder").exists():
        return [str(scripts / "jupyter-builder"), "build", "."]
    return [str(scripts / "jupyter"), "labextension", "build", "."]


def build(force: bool = False) -> int:
    """Build the bundle when its sources changed (or when forced)."""
    if is_current() and not force:
        say(f"up to date ({BUNDLE.relative_to(REPO)} is built from these sources)")
        return 0
    if os.environ.get("CI") and not force:
        say(
            f"{BUNDLE.relative_to(REPO)} is stale: its sources changed since it was built; "
            "run `make labextension` and commit the bundle"
        )
        return 1
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            say(f"{tool} is missing: Node.js 20.19+ and npm build the extension")
            return 1
    started = time.monotonic()
    installed = SOURCE / "node_modules" / ".package-lock.json"
    lock = SOURCE / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"])
    run([str(SOURCE / "node_modules" / ".bin" / "tsc")])
    run(builder_command())
    shutil.copy2(SOURCE / "install.json", BUNDLE / "install.json")
    (BUNDLE / HASH_FILE).write_text(
        f"{source_hash()}  sha256 of labextension/ sources (tools/labextension.py)\n"
    )
    size = sum(p.stat().st_size for p in BUNDLE.rglob("*") if p.is_file())
    took = time.monotonic() - started
    say(f"built {BUNDLE.relative_to(REPO)} ({size / 1024:.1f} KiB) in {took:.1f} s")
    return 0


def check() -> int:
    """Exit status 1 when the bundle is not built from the present sources."""
    if is_current():
        say("up to date")
        return 0
    say("stale: run `make labextension` and commit dockermagic/labextension")
    return 1


def link() -> int:
    """Point this environment's labextension directory at the bundle (idempotent)."""
    target = Path(sys.prefix) / "share" / "jupyter" / "labextensions" / NAME
    if target.exists() and not target.is_symlink():
        say(f"{target} is an installed copy (pip install .); left as it is")
        return 0
    if target.is_symlink() and target.resolve() == BUNDLE.resolve():
        return 0
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink():
        target.unlink()
    target.symlink_to(BUNDLE, target_is_directory=True)
    say(f"{target} -> {BUNDLE}")
    return 0


def main(argv: list[str]) -> int:
    """The command line: build, check or link."""
    if argv[:1] == ["build"]:
        return build(force="--force" in argv[1:])
    if argv == ["check"]:
        return check()
    if argv == ["link"]:
        return link()
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
