r"""What crosses from the host into a container: file names, file contents, the tar.

Everything here treats the host's files as hostile input (pitfall 30):

* Only regular files are copied. A FIFO, socket or device is refused with a
  clear error, and opening never blocks (``O_NONBLOCK``), so a FIFO named
  ``job.py`` cannot hang a batch and ``/dev/zero`` cannot fill memory.
* A symlink is resolved, then followed only when its target stays inside the
  folder being copied (for a single script: the script's own folder). One
  that points outside (``data/key.txt -> ~/.ssh/id_rsa``) is refused, so no
  host file outside the folder reaches a sandbox or its logs. Checked on the
  opened descriptor, not the name, so swapping a file for a link after the
  check does not get around it.
* What is copied into one container is capped (``SandboxPolicy.copy_limit``,
  64 MiB by default, the size of the working-directory tmpfs), and files are
  read in bounded chunks: a huge file costs at most the cap in memory.
* Names in the sandbox are relative, without ``..``, without NUL or control
  characters, at most 255 bytes a component and 1024 bytes in all (longer
  ones were a raw engine error). Names of host files are taken literally: a
  data file named ``..\evil`` is copied as that one file name.

Pure logic apart from reading the host's files; no Docker calls.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import tarfile
import time
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from dockermagic.errors import InvalidArgumentError

__all__ = [
    "MAX_NAME_BYTES",
    "MAX_PATH_BYTES",
    "UnsafeFileError",
    "read_host_file",
    "read_tree",
    "safe_relative",
    "tar_files",
]

#: Bytes of one path component in the sandbox (Linux's NAME_MAX).
MAX_NAME_BYTES = 255
#: Bytes of a whole relative path in the sandbox.
MAX_PATH_BYTES = 1024
_CHUNK = 1024 * 1024


class UnsafeFileError(InvalidArgumentError):
    """A host file that must not be copied into a sandbox (special file, outside link, too big).

    Attributes:
        path: The host path.
    """

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = os.fspath(path)
        super().__init__("file", self.path, problem)


class CopyBudget:
    """Counts the bytes copied into one container against the cap.

    Args:
        limit: The cap in bytes.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    @property
    def left(self) -> int:
        """Bytes that may still be copied."""
        return max(self.limit - self.used, 0)

    def take(self, size: int, what: str | os.PathLike[str]) -> None:
        """Account for ``size`` more bytes.

        Args:
            size: Bytes about to be copied.
            what: Named in the error.

        Raises:
            UnsafeFileError: The cap would be exceeded.
        """
        if size > self.left:
            raise UnsafeFileError(
                what,
                f"copying it would exceed the copy limit of {_mib(self.limit)} per run "
                "(SandboxPolicy.copy_limit, DOCKERMAGIC_COPY_LIMIT)",
            )
        self.used += size


def _mib(size: int) -> str:
    return f"{size / 1024**2:.4g} MiB"


def safe_relative(rel: str, *, literal: bool = False) -> str:
    """Check a file name for the sandbox and return it normalised.

    Args:
        rel: A relative path (``data/input.txt``).
        literal: Take backslashes as part of a name (host file names); by
            default they separate folders, as a Windows-style path would.

    Returns:
        The POSIX path.

    Raises:
        InvalidArgumentError: Absolute, empty, with ``..``, with control
            characters, or too long.
    """
    text = rel if literal else rel.replace("\\", "/")
    path = PurePosixPath(text)
    if path.is_absolute() or ".." in path.parts or not path.parts or str(path) == ".":
        raise InvalidArgumentError("file name", rel, "must be a relative path inside the sandbox")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise InvalidArgumentError("file name", rel, "must not contain control characters")
    encoded = [part.encode("utf-8", "surrogateescape") for part in path.parts]
    if any(len(part) > MAX_NAME_BYTES for part in encoded):
        raise InvalidArgumentError(
            "file name", rel, f"a name may have at most {MAX_NAME_BYTES} bytes"
        )
    if len(str(path).encode("utf-8", "surrogateescape")) > MAX_PATH_BYTES:
        raise InvalidArgumentError(
            "file name", rel, f"a path may have at most {MAX_PATH_BYTES} bytes"
        )
    return str(path)


def _inside(target: Path, root: Path) -> bool:
    return target == root or root in target.parents


def read_host_file(path: str | os.PathLike[str], *, root: Path, budget: CopyBudget) -> bytes:
    """Read one host file for a sandbox, by the rules of the module docstring.

    Args:
        path: The file.
        root: The folder its real path must stay in (resolved).
        budget: The copy budget it counts against.

    Returns:
        The content.

    Raises:
        UnsafeFileError: Not a regular file, a link out of ``root``, too big.
        InvalidArgumentError: It does not exist or cannot be read.
    """
    name = os.fspath(path)
    try:
        real = Path(os.path.realpath(name))
    except (OSError, ValueError) as exc:
        raise InvalidArgumentError("file", name, str(exc)) from exc
    if not _inside(real, root):
        raise UnsafeFileError(name, f"is a link to {real}, outside {root}: not copied")
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer. The descriptor
        # is checked, not the name: what is read is what was checked.
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeFileError(name, "changed into a link while being read") from exc
        raise InvalidArgumentError("file", name, exc.strerror or str(exc)) from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeFileError(name, f"is {_kind(info.st_mode)}, not a regular file: not copied")
        budget.take(info.st_size, name)
        os.set_blocking(fd, True)
        # Never read more than the budget allows, even if the file grows meanwhile.
        allowed = info.st_size + budget.left
        parts: list[bytes] = []
        size = 0
        while True:
            chunk = os.read(fd, min(_CHUNK, allowed - size + 1))
            if not chunk:
                break
            size += len(chunk)
            if size > allowed:
                budget.take(size - info.st_size, name)  # raises: over the cap
            parts.append(chunk)
        if size > info.st_size:
            budget.take(size - info.st_size, name)
        return b"".join(parts)
    except OSError as exc:
        raise InvalidArgumentError("file", name, exc.strerror or str(exc)) from exc
    finally:
        os.close(fd)


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "a special file"


def read_tree(top: str | os.PathLike[str], *, budget: CopyBudget) -> dict[str, bytes]:
    """Read a host file or folder for a sandbox; a folder keeps its name.

    Symlinks are followed only when they resolve inside ``top``; a link to a
    folder inside is copied as that folder (a link loop is not followed).

    Args:
        top: The file or folder.
        budget: The copy budget.

    Returns:
        Sandbox path (``data/input.txt``) -> content, sorted by path.

    Raises:
        UnsafeFileError: A special file, a link out of ``top``, too much data.
        InvalidArgumentError: ``top`` does not exist.
    """
    given = Path(top)
    if not given.exists() and not given.is_symlink():
        raise InvalidArgumentError("include", os.fspath(top), "no such file or folder")
    root = Path(os.path.realpath(given))
    if not given.is_dir():
        return {
            safe_relative(given.name, literal=True): read_host_file(
                given, root=root.parent, budget=budget
            )
        }
    files: dict[str, bytes] = {}

    def walk(folder: Path, prefix: PurePosixPath, ancestors: frozenset[Path]) -> None:
        real = Path(os.path.realpath(folder))
        if real in ancestors:
            return  # a link loop: a folder inside itself
        ancestors = ancestors | {real}
        with os.scandir(folder) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                rel = prefix / entry.name
                path = Path(entry.path)
                target = Path(os.path.realpath(path))
                if entry.is_symlink() and not _inside(target, root):
                    raise UnsafeFileError(
                        path, f"is a link to {target}, outside {root}: not copied"
                    )
                if entry.is_dir(follow_symlinks=True):
                    walk(path, rel, ancestors)
                else:
                    files[safe_relative(str(rel), literal=True)] = read_host_file(
                        path, root=root, budget=budget
                    )

    walk(given, PurePosixPath(given.name), frozenset())
    return dict(sorted(files.items()))


def tar_files(files: Mapping[str, bytes], *, folder: str = "") -> bytes:
    """A tar archive of files for the code folder: root-owned, read-only.

    Args:
        files: Sandbox path -> content (paths already checked by :func:`safe_relative`
            or checked here).
        folder: A folder name the archive puts the files in, as an entry of
            its own (root-owned, ``0755``): extracted into the folder's parent,
            it also sets the folder's owner and mode. '' for none.

    Returns:
        The archive.

    Raises:
        InvalidArgumentError: A path that is not a safe relative path.
    """
    buffer = io.BytesIO()
    now = time.time()
    dirs: set[str] = set()
    top = PurePosixPath(safe_relative(folder, literal=True)) if folder else None
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        if top is not None:
            # The root-owned folder comes first: Podman hands a new volume's
            # folder to the container's user when it first mounts it, and
            # only an entry for the folder itself gives it back to root.
            info = tarfile.TarInfo(str(top))
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, now
            archive.addfile(info)
        for rel, content in sorted(files.items()):
            clean = PurePosixPath(safe_relative(rel, literal=True))
            for parent in reversed(clean.parents[:-1]):
                if str(parent) not in dirs:
                    dirs.add(str(parent))
                    info = tarfile.TarInfo(str(top / parent if top else parent))
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o555, now
                    archive.addfile(info)
            info = tarfile.TarInfo(str(top / clean if top else clean))
            info.size, info.mode, info.mtime = len(content), 0o444, now
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()
