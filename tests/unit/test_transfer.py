"""What crosses into a sandbox: names, links, special files, the copy budget (pure logic)."""

from __future__ import annotations

import io
import os
import tarfile
import threading
import time
from pathlib import Path

import pytest

from dockermagic.errors import InvalidArgumentError
from dockermagic.transfer import (
    CopyBudget,
    UnsafeFileError,
    read_host_file,
    read_tree,
    safe_relative,
    tar_files,
)

MIB = 1024**2


def budget(limit: int = 64 * MIB) -> CopyBudget:
    return CopyBudget(limit)


def test_a_link_inside_the_folder_is_followed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "sub" / "real.txt").write_text("inside")
    (data / "alias.txt").symlink_to("sub/real.txt")
    (data / "folder-alias").symlink_to("sub")
    files = read_tree(data, budget=budget())
    assert files == {
        "data/alias.txt": b"inside",
        "data/folder-alias/real.txt": b"inside",
        "data/sub/real.txt": b"inside",
    }


def test_a_link_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "id_rsa"
    secret.write_text("PRIVATE KEY")
    data = tmp_path / "data"
    data.mkdir()
    (data / "key.txt").symlink_to(secret)
    with pytest.raises(UnsafeFileError, match="outside") as info:
        read_tree(data, budget=budget())
    assert "PRIVATE KEY" not in str(info.value)
    (data / "key.txt").unlink()
    (data / "environ").symlink_to("/proc/self/environ")
    with pytest.raises(UnsafeFileError, match="outside"):
        read_tree(data, budget=budget())


def test_a_script_that_links_out_of_its_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "job.py").symlink_to("/etc/shadow")
    with pytest.raises(UnsafeFileError, match="outside"):
        read_host_file(tmp_path / "job.py", root=tmp_path, budget=budget())


def test_a_link_loop_is_not_followed_forever(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("a")
    (data / "loop").symlink_to(".")
    assert read_tree(data, budget=budget()) == {"data/a.txt": b"a"}


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "b.py"
    os.mkfifo(fifo)
    done = threading.Event()
    errors: list[BaseException] = []

    def read() -> None:
        try:
            read_host_file(fifo, root=tmp_path, budget=budget())
        except BaseException as exc:
            errors.append(exc)
        done.set()

    threading.Thread(target=read, daemon=True).start()
    assert done.wait(5), "reading a FIFO blocked"
    assert isinstance(errors[0], UnsafeFileError)
    assert "FIFO" in str(errors[0])


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null", "/dev/urandom"])
def test_devices_are_refused(tmp_path: Path, device: str) -> None:
    (tmp_path / "b.py").symlink_to(device)
    with pytest.raises(UnsafeFileError):
        read_host_file(tmp_path / "b.py", root=Path("/"), budget=budget())


def test_the_budget_caps_what_is_read(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        (data / f"{i}.bin").write_bytes(b"x" * MIB)
    copy = budget(2 * MIB + 10)
    with pytest.raises(UnsafeFileError, match="copy limit of 2 MiB"):
        read_tree(data, budget=copy)
    assert copy.used <= 2 * MIB + 10
    assert len(read_tree(data, budget=budget(3 * MIB))) == 3


def test_a_sparse_giant_file_costs_no_memory(tmp_path: Path) -> None:
    big = tmp_path / "huge.bin"
    with big.open("wb") as stream:
        stream.truncate(50 * 1024**3)  # 50 GiB, sparse
    started = time.monotonic()
    with pytest.raises(UnsafeFileError, match="copy limit"):
        read_host_file(big, root=tmp_path, budget=budget())
    assert time.monotonic() - started < 1


@pytest.mark.parametrize(
    "bad",
    ["../x.py", "/etc/passwd", "", ".", "a/../../b", "a\nb.py", "a\rb", "x" * 256, "d/" * 600],
)
def test_bad_sandbox_names_are_refused(bad: str) -> None:
    with pytest.raises(InvalidArgumentError):
        safe_relative(bad)


def test_host_names_are_taken_literally() -> None:
    assert safe_relative("..\\evil", literal=True) == "..\\evil"
    assert safe_relative("a\\b.py") == "a/b.py"  # an API caller's Windows-style path
    with pytest.raises(InvalidArgumentError):
        safe_relative("..\\evil")


def test_a_data_file_named_like_an_escape_is_copied_as_itself(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "..\\evil").write_text("odd")
    files = read_tree(data, budget=budget())
    assert files == {"data/..\\evil": b"odd"}
    with tarfile.open(fileobj=io.BytesIO(tar_files(files))) as archive:
        assert "data/..\\evil" in archive.getnames()


def test_tar_is_read_only_and_root_owned() -> None:
    with tarfile.open(fileobj=io.BytesIO(tar_files({"a/b.txt": b"hi", "c.py": b""}))) as archive:
        members = {m.name: m for m in archive.getmembers()}
    assert members["a"].isdir()
    assert members["a"].mode == 0o555
    assert members["a/b.txt"].mode == 0o444
    assert {m.uid for m in members.values()} == {0}
