"""Exercises of notebook 05 (a parallel file compressor).

Each exercise is checked by :func:`dockermagic.grading.check`: the student's
cell runs in a fresh container on inputs drawn on the host; the right answers
are known on the host by construction and never enter the container. The
files are made on the host too and travel as data; the container sends back
SHA-256 digests of what it finds, which the host compares with its own.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import random
from collections.abc import Mapping, Sequence
from typing import Any

from dockermagic.grading import Case, Exercise, describe_observation, register_exercise
from exercise_checks import kind_words

NOTEBOOK = "05-parallel-compressor"

_WORDS = ["GET", "PUT", "POST", "DELETE", "login", "logout", "upload", "error", "retry", "ok"]


def _log_text(rng: random.Random, lines: int) -> bytes:
    rows = [
        f"2024-05-{rng.randint(1, 28):02d} {n:06d} {rng.choice(_WORDS):<8} "
        f"user={rng.randrange(1000):03d} {' '.join(rng.choices(_WORDS, k=4))}"
        for n in range(lines)
    ]
    return ("\n".join(rows) + "\n").encode()


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _folder(rng: random.Random) -> str:
    return f"/work/{rng.choice(['logs', 'data', 'input', 'server'])}_{rng.randrange(1000):03d}"


# -- compress_file ------------------------------------------------------------------------


def _compress_file_cases(rng: random.Random) -> list[Case]:
    folder = _folder(rng)
    tag = rng.randrange(100)
    groups = [
        (
            "two log files",
            [
                (f"access_{tag}.log", _log_text(rng, rng.randint(800, 1500))),
                (f"error_{tag}.log", _log_text(rng, rng.randint(100, 300))),
            ],
        ),
        (
            "a binary file and an empty one",
            [
                (f"dump_{tag}.bin", rng.randbytes(rng.randint(3_000, 9_000))),
                (f"empty_{tag}.txt", b""),
            ],
        ),
    ]
    return [
        Case(
            ([[f"{folder}/{name}", _b64(content)] for name, content in files],),
            f"{label} compressed by a pool",
            [_digest(content) for _, content in files],
        )
        for label, files in groups
    ]


def _compare_compressed(path: str, digest: str, seen: Mapping[str, Any]) -> str:
    name, archive = f"`{path.rsplit('/', 1)[-1]}`", path + ".gz"
    found = seen.get("archive")
    if not isinstance(found, dict) or not found.get("exists"):
        return f"{name}: no archive was written next to it (its path + '.gz')"
    if seen.get("original") != digest:
        return f"{name}: keep the original file as it was"
    if "error" in found:
        return (
            f"{name}: the archive is not a gzip file that reads to its end "
            f"({found['error']}); write it through gzip.open(..., 'wb')"
        )
    if found.get("digest") != digest:
        return f"{name}: the archive does not decompress to the original's bytes"
    value, kind = seen.get("value"), str(seen.get("type", ""))
    if value != archive:
        if kind != "str":
            return f"{name}: return the archive's path (a str), not {kind_words(kind)}"
        return f"{name}: the archive is right, but return its path: the original's + '.gz'"
    return ""


def _compress_problem(case: Case, seen: Mapping[str, Any]) -> str:
    files = seen.get("files")
    if not isinstance(files, list) or len(files) != len(case.expected):
        return describe_observation(case, seen) or f"{case.label}: the check's report was damaged"
    for (path, _), digest, found in zip(case.args[0], case.expected, files, strict=True):
        problem = _compare_compressed(path, digest, found)
        if problem:
            return problem
    return ""


def _judge_compress_file(
    cases: Sequence[Case], observations: Sequence[Mapping[str, Any]]
) -> tuple[int, str]:
    right, first = 0, ""
    for case, seen in zip(cases, observations, strict=True):
        problem = _compress_problem(case, seen)
        if problem:
            first = first or problem
        else:
            right += 1
    return right, first


compress_file = register_exercise(
    Exercise(
        id=f"{NOTEBOOK}/compress_file",
        function="compress_file",
        cases=_compress_file_cases,
        probe="""
        import base64 as _base64
        import functools as _functools
        import gzip as _gzip
        import hashlib as _hashlib
        import os as _os
        from multiprocessing import Pool as _Pool


        def _call(function, path):
            # In a worker: an exception is seen where it happened, with its line.
            return observe(lambda: function(path))


        def _look(path, seen):
            if _os.path.isfile(path):
                with open(path, "rb") as stream:
                    seen["original"] = _hashlib.sha256(stream.read()).hexdigest()
            archive = {"exists": _os.path.isfile(path + ".gz")}
            if archive["exists"]:
                try:
                    with _gzip.open(path + ".gz", "rb") as stream:
                        archive["digest"] = _hashlib.sha256(stream.read()).hexdigest()
                except Exception as exc:
                    archive["error"] = f"{type(exc).__name__}: {exc}"[:200]
            seen["archive"] = archive
            return seen


        def probe(function, case, observe):
            (files,) = case
            for path, content in files:
                _os.makedirs(_os.path.dirname(path), exist_ok=True)
                with open(path, "wb") as stream:
                    stream.write(_base64.b64decode(content))
            paths = [path for path, _ in files]
            with _Pool(2) as pool:
                seen = observe(lambda: pool.map(_functools.partial(_call, function), paths))
            if "value" not in seen:
                return seen
            for found in seen["value"]:
                if "value" not in found:
                    return found  # an exception (or a stub) in a worker
            return {"files": [_look(path, dict(found)) for path, found in zip(paths, seen["value"])]}
        """,
        judge=_judge_compress_file,
        cpus=2,
    )
)

# -- verify_archive -----------------------------------------------------------------------


def _cut(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randint(len(data) // 3, len(data) - 20)]


def _verify_archive_cases(rng: random.Random) -> list[Case]:
    folder = _folder(rng)
    original = _log_text(rng, rng.randint(300, 800))
    other = _log_text(rng, rng.randint(300, 800))
    changed = bytearray(original)
    where = rng.randrange(len(changed) - 1)
    changed[where] = ord("#") if changed[where] != ord("#") else ord("@")
    archive = gzip.compress(original)
    name = f"server_{rng.randrange(100)}.log"
    cases = [
        ("a correct archive", archive, True),
        ("an archive of a different file", gzip.compress(other), False),
        ("an archive of the original with one byte changed", gzip.compress(bytes(changed)), False),
        ("an archive cut short", _cut(archive, rng), False),
        ("a file that is not gzip at all", other[: rng.randint(50, 500)], False),
        ("an archive that does not exist", None, False),
    ]
    return [
        Case(
            (
                f"{folder}/{name}",
                _b64(original),
                f"{folder}/{number}_{name}.gz",
                None if data is None else _b64(data),
            ),
            label,
            expected,
        )
        for number, (label, data, expected) in enumerate(cases)
    ]


def _compare_verify_archive(case: Case, value: Any, kind: str) -> str:
    if kind != "bool":
        return f"{case.label}: return True or False, not {kind_words(kind)}"
    if value is not case.expected:
        return f"{case.label}: your function's answer is wrong"
    return ""


def _judge_verify_archive(
    cases: Sequence[Case], observations: Sequence[Mapping[str, Any]]
) -> tuple[int, str]:
    right, first = 0, ""
    for case, seen in zip(cases, observations, strict=True):
        problem = describe_observation(case, seen)
        if "raised" in seen:
            problem += "; your function must not raise, it answers False instead"
        problem = problem or _compare_verify_archive(
            case, seen.get("value"), str(seen.get("type", ""))
        )
        if problem:
            first = first or problem
        else:
            right += 1
    return right, first


verify_archive = register_exercise(
    Exercise(
        id=f"{NOTEBOOK}/verify_archive",
        function="verify_archive",
        cases=_verify_archive_cases,
        probe="""
        import base64 as _base64
        import os as _os


        def _write(path, content):
            _os.makedirs(_os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as stream:
                stream.write(_base64.b64decode(content))


        def probe(function, case, observe):
            original, original_content, archive, archive_content = case
            _write(original, original_content)
            if archive_content is not None:
                _write(archive, archive_content)
            return observe(lambda: function(original, archive))
        """,
        judge=_judge_verify_archive,
    )
)
