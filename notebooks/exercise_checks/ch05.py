"""Checks for notebook 05 (a parallel file compressor)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from exercise_checks import Verdict, check_in_container

_MAKE_FILES = """
import gzip
import os
import random
from pathlib import Path


def _make_files(folder, count):
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rnd = random.Random(5)
    paths = []
    for i in range(count):
        path = folder / f"part_{i}.log"
        lines = [f"{n:05d} {rnd.choice(['GET', 'PUT', 'DEL'])} /item/{rnd.randrange(500)}" for n in range(3000)]
        path.write_text("\\n".join(lines) + "\\n")
        paths.append(str(path))
    return paths
"""

_COMPRESS_FILE = (
    _MAKE_FILES
    + """
from multiprocessing import Pool


def _check():
    paths = _make_files("/work/check", 4)
    originals = {p: Path(p).read_bytes() for p in paths}
    with Pool(2) as pool:
        returned = pool.map(compress_file, paths)
    report = {"returned": returned == [p + ".gz" for p in paths], "kept": True, "round_trip": True}
    for path, content in originals.items():
        if not Path(path).exists() or Path(path).read_bytes() != content:
            report["kept"] = False
        archive = Path(path + ".gz")
        try:
            report["round_trip"] &= gzip.decompress(archive.read_bytes()) == content
        except Exception:
            report["round_trip"] = False
    return report
"""
)


def check_compress_file(compress_file: Callable[[str], Any]) -> Verdict:
    """Check ``compress_file(path)`` through a pool: archives that decompress to the originals."""

    def judge(report: dict[str, Any]) -> Verdict:
        if not report["round_trip"]:
            return Verdict(False, "an archive is missing or does not decompress to its original")
        if not report["kept"]:
            return Verdict(False, "keep the original file as it was")
        if not report["returned"]:
            return Verdict(False, "return the archive's path: the original path + '.gz'")
        return Verdict(True)

    return check_in_container({"compress_file": compress_file}, _COMPRESS_FILE, judge)


_VERIFY = (
    _MAKE_FILES
    + """
def _check():
    first, second = _make_files("/work/check", 2)
    good = first + ".gz"
    Path(good).write_bytes(gzip.compress(Path(first).read_bytes()))
    other = "/work/check/other.gz"
    Path(other).write_bytes(gzip.compress(Path(second).read_bytes()))
    cut = "/work/check/cut.gz"
    Path(cut).write_bytes(Path(good).read_bytes()[:-200])
    garbage = "/work/check/garbage.gz"
    Path(garbage).write_bytes(b"not gzip at all")
    cases = {"good": (good, True), "other": (other, False), "cut": (cut, False),
             "garbage": (garbage, False), "missing": ("/work/check/none.gz", False)}
    report = {}
    for name, (archive, expected) in cases.items():
        try:
            answer = verify_archive(first, archive)
        except NotImplementedError:
            raise
        except Exception as exc:
            report[name] = "raised " + type(exc).__name__
            continue
        report[name] = "ok" if answer is expected else "wrong"
    return report
"""
)

_CASE_HINTS = {
    "good": "a correct archive",
    "other": "an archive of a different file",
    "cut": "an archive cut short",
    "garbage": "a file that is not gzip at all",
    "missing": "an archive that does not exist",
}


def check_verify_archive(verify_archive: Callable[[str, str], Any]) -> Verdict:
    """Check ``verify_archive(original, archive) -> bool`` on good, wrong and broken archives."""

    def judge(report: dict[str, Any]) -> Verdict:
        for name, outcome in report.items():
            if outcome != "ok":
                what = "answered wrongly" if outcome == "wrong" else outcome
                return Verdict(
                    False, f"for {_CASE_HINTS[name]}, your function {what} (return True or False)"
                )
        return Verdict(True)

    return check_in_container({"verify_archive": verify_archive}, _VERIFY, judge)
