"""Every exercise's hints name what really went wrong, and never the right answer.

For each exercise of the course, wrong answers of each kind a student writes
— a typo (AttributeError, NameError), a wrong value, a wrong type, the stub,
a syntax error, an exception inside the function, an answer that leaves
something out — are checked as a notebook's ``%docker_check`` would check
them (each cell under its ``%%docker_python`` line, so line numbers count
that line). Each hint must hold the expected words; for an exception, its
type and the student's own line; and none may hold an expected value that
the student was not shown (a value that is also an input may appear).

The checks run in parallel threads, once for the module, with fixed seeds
so that the expected values are known here too.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dockermagic.grading import STUB_HINT, Cell, Exercise, Verdict, answer_from_cells, check
from dockermagic.grading.course import load_course

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
COURSE = load_course(NOTEBOOKS)
EXERCISES = {item.id: item for item in COURSE.exercises}
HEADER = "%%docker_python --session exercises\n"
SEED = 20_261_126


@dataclass(frozen=True)
class Wrong:
    """A wrong answer and what its hint must say.

    Attributes:
        exercise: The exercise's id.
        kind: What kind of mistake (the test's id).
        body: The cell's code under the ``%%docker_python`` line.
        hint: Words the hint must hold.
        line: The student's line an exception must be named with.
    """

    exercise: str
    kind: str
    body: str
    hint: str
    line: int | None = None


def _raised(kind: str, message: str) -> str:
    return f"raised {kind}: {message}"


SYNTAX = "raised SyntaxError: "
RUN_TOOL = "01-subprocess/run_tool"
SORT_WORDS = "01-subprocess/sort_words"
EXIT_CODES = "02-processes-and-pools/exit_codes"
POOL_MAP = "02-processes-and-pools/pool_map"
SAFE_INCREMENT = "03-shared-state/safe_increment"
COUNT_EVENS = "03-shared-state/count_evens"
ADD_TAG = "04-managers-and-proxies/add_tag"
SQUARES = "04-managers-and-proxies/squares"
COMPRESS_FILE = "05-parallel-compressor/compress_file"
VERIFY_ARCHIVE = "05-parallel-compressor/verify_archive"
TEST_PARALLEL_SUM = "06-testing-parallel-code/test_parallel_sum"
SHELL_RUNNER = "07-assignment/ShellRunner"
EXPLAIN = "07-assignment/explain"

# -- 01 ---------------------------------------------------------------------------------

_RUN_TOOL = """import subprocess


def run_tool(argv):
    done = subprocess.run(argv, capture_output=True, text=True)
    return done.returncode, done.stdout
"""
_SORT_WORDS = """import subprocess


def sort_words(words):
    text = "".join(f"{word}\\n" for word in words)
    done = subprocess.run(["sort", "-u"], input=text, capture_output=True, text=True)
    return done.stdout.splitlines()
"""

WRONG = [
    Wrong(
        RUN_TOOL,
        "typo",
        _RUN_TOOL.replace("done.stdout", "done.stdot"),
        _raised("AttributeError", "'CompletedProcess' object has no attribute 'stdot'"),
        7,
    ),
    Wrong(
        RUN_TOOL,
        "wrong value",
        _RUN_TOOL.replace("done.stdout\n", "done.stdout + done.stderr\n"),
        "the output holds standard error too; return only standard output",
    ),
    Wrong(
        RUN_TOOL,
        "wrong type",
        _RUN_TOOL.replace("done.returncode, done.stdout", 'f"{done.returncode} {done.stdout}"'),
        "return a tuple of two things: (exit code, standard output text), not a str",
    ),
    Wrong(
        RUN_TOOL,
        "stub",
        "import subprocess\n\n\ndef run_tool(argv):\n    raise NotImplementedError\n",
        STUB_HINT,
    ),
    Wrong(RUN_TOOL, "syntax error", "def run_tool(argv)\n    return 0, ''\n", SYNTAX, 2),
    Wrong(
        RUN_TOOL,
        "exception",
        _RUN_TOOL.replace("text=True)", "text=True, check=True)"),
        _raised("CalledProcessError", "Command '['sh', '-c'"),
        6,
    ),
    Wrong(
        RUN_TOOL,
        "leaves out",
        _RUN_TOOL.replace("capture_output=True, ", ""),
        "the second item should be the standard output as text (str)",
    ),
    Wrong(
        RUN_TOOL,
        "too many items",
        _RUN_TOOL.replace("done.returncode, done.stdout", "done.returncode, done.stdout, ''"),
        "your tuple has 3 items; return two: (exit code, standard output text)",
    ),
    Wrong(
        SORT_WORDS,
        "typo",
        _SORT_WORDS.replace("splitlines()", "splitline()"),
        _raised("AttributeError", "'str' object has no attribute 'splitline'"),
        8,
    ),
    Wrong(
        SORT_WORDS,
        "wrong value",
        _SORT_WORDS.replace('["sort", "-u"]', '["sort"]'),
        "a short list with a repeated word: the list has the wrong number of words",
    ),
    Wrong(
        SORT_WORDS,
        "wrong type",
        _SORT_WORDS.replace("done.stdout.splitlines()", "done.stdout"),
        "return a list of strings (split the program's output), not a str",
    ),
    Wrong(
        SORT_WORDS,
        "stub",
        "import subprocess\n\n\ndef sort_words(words):\n    raise NotImplementedError\n",
        STUB_HINT,
    ),
    Wrong(
        SORT_WORDS,
        "syntax error",
        _SORT_WORDS.replace("for word in words)\n", "for word in words\n"),
        _raised("SyntaxError", "'(' was never closed"),
        6,
    ),
    Wrong(
        SORT_WORDS,
        "exception",
        _SORT_WORDS.replace("input=text", "input=words"),
        _raised("AttributeError", "'list' object has no attribute 'encode'"),
        7,
    ),
    Wrong(
        SORT_WORDS,
        "leaves out",
        "def sort_words(words):\n    return sorted(set(words))\n",
        "the lists are right, but the sorting must be done by the `sort` program",
    ),
    Wrong(
        SORT_WORDS,
        "newlines kept",
        _SORT_WORDS.replace("splitlines()", "splitlines(keepends=True)"),
        "the words are not the words given, as they were",
    ),
]

# -- 02 ---------------------------------------------------------------------------------

_EXIT_CODES = """from multiprocessing import Process


def exit_codes(targets):
    processes = [Process(target=target) for target in targets]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    return [process.exitcode for process in processes]
"""
_SEQUENTIAL = """from multiprocessing import Process


def exit_codes(targets):
    codes = []
    for target in targets:
        process = Process(target=target)
        process.start()
        process.join()
        codes.append(process.exitcode)
    return codes
"""
_POOL_MAP = """from multiprocessing import Pool


def pool_map(func, items, workers):
    with Pool(workers) as pool:
        return pool.map(func, items)
"""

WRONG += [
    Wrong(
        EXIT_CODES,
        "typo",
        _EXIT_CODES.replace("process.exitcode for", "process.exit_code for"),
        _raised("AttributeError", "'Process' object has no attribute 'exit_code'"),
        11,
    ),
    Wrong(
        EXIT_CODES,
        "wrong value",
        _SEQUENTIAL,
        "the targets did not all run at the same time (each one waits until all of them "
        "have started): start every process before joining any",
    ),
    Wrong(
        EXIT_CODES,
        "wrong type",
        _EXIT_CODES.replace(
            "return [process.exitcode for process in processes]",
            "return tuple(p.exitcode for p in processes)",
        ),
        "return a list of exit codes, not a tuple",
    ),
    Wrong(
        EXIT_CODES,
        "stub",
        "from multiprocessing import Process\n\n\n"
        "def exit_codes(targets):\n    raise NotImplementedError\n",
        STUB_HINT,
    ),
    Wrong(
        EXIT_CODES,
        "syntax error",
        _EXIT_CODES.replace(
            "for process in processes:\n        process.join()",
            "for process in processes\n        process.join()",
        ),
        _raised("SyntaxError", "expected ':'"),
        9,
    ),
    Wrong(
        EXIT_CODES,
        "exception",
        _EXIT_CODES.replace("Process(target=target)", "Process(target=target())"),
        _raised("RuntimeError", "a target ran in the checking process itself"),
        6,
    ),
    Wrong(
        EXIT_CODES,
        "leaves out",
        _EXIT_CODES.replace("    for process in processes:\n        process.join()\n", ""),
        "some exit codes are None: a process has one only once it has ended, "
        "so join() every process",
    ),
    Wrong(
        EXIT_CODES,
        "spawn is fine",
        _EXIT_CODES.replace(
            "from multiprocessing import Process", "import multiprocessing"
        ).replace(
            "Process(target=target)",
            'multiprocessing.get_context("spawn").Process(target=target)',
        ),
        "",
    ),
    Wrong(
        POOL_MAP,
        "typo",
        _POOL_MAP.replace("pool.map(", "pool.mapp("),
        _raised("AttributeError", "'Pool' object has no attribute 'mapp'"),
        7,
    ),
    Wrong(
        POOL_MAP,
        "wrong value",
        _POOL_MAP.replace("return pool.map(func, items)", "return sorted(pool.map(func, items))"),
        "the results are not in the order of the items (pool.map keeps that order)",
    ),
    Wrong(
        POOL_MAP,
        "wrong type",
        _POOL_MAP.replace("pool.map(", "pool.imap("),
        "return a list of the results, not an IMapIterator",
    ),
    Wrong(
        POOL_MAP,
        "stub",
        "from multiprocessing import Pool\n\n\n"
        "def pool_map(func, items, workers):\n    raise NotImplementedError\n",
        STUB_HINT,
    ),
    Wrong(POOL_MAP, "syntax error", _POOL_MAP.replace("workers):", "workers)"), SYNTAX, 5),
    Wrong(
        POOL_MAP,
        "exception",
        _POOL_MAP.replace("Pool(workers)", "Pool(workers=workers)"),
        _raised("TypeError", ""),
        6,
    ),
    Wrong(
        POOL_MAP,
        "leaves out",
        "def pool_map(func, items, workers):\n    return [func(item) for item in items]\n",
        "the results are right, but some were computed in the calling process",
    ),
    Wrong(
        POOL_MAP,
        "too many workers",
        _POOL_MAP.replace("Pool(workers)", "Pool(workers + 3)").replace(
            "items)\n", "items, chunksize=1)\n"
        ),
        "the results are right, but more processes than workers=",
    ),
]

# -- 03 ---------------------------------------------------------------------------------

_SAFE_INCREMENT = """def safe_increment(counter, n):
    for _ in range(n):
        with counter.get_lock():
            counter.value += 1
"""
_COUNT_EVENS = """def count_evens(counter, numbers):
    evens = sum(1 for number in numbers if number % 2 == 0)
    with counter.get_lock():
        counter.value += evens
"""
_LOST = "increments were lost while the processes ran your function at once"

WRONG += [
    Wrong(
        SAFE_INCREMENT,
        "typo",
        _SAFE_INCREMENT.replace("get_lock", "get_lok"),
        _raised("AttributeError", "'Synchronized' object has no attribute 'get_lok'"),
        4,
    ),
    Wrong(
        SAFE_INCREMENT,
        "wrong value",
        _SAFE_INCREMENT.replace("+= 1", "+= 2"),
        "the counter went up by more than n for each call",
    ),
    Wrong(
        SAFE_INCREMENT,
        "wrong type",
        _SAFE_INCREMENT.replace("+= 1", "+= 0.5 * 2"),
        _raised("TypeError", "'float' object cannot be interpreted as an integer"),
        5,
    ),
    Wrong(
        SAFE_INCREMENT,
        "stub",
        "def safe_increment(counter, n):\n    for _ in range(n):\n        counter.value += 1\n",
        _LOST,
    ),
    Wrong(
        SAFE_INCREMENT, "syntax error", _SAFE_INCREMENT.replace("range(n):", "range(n)"), SYNTAX, 3
    ),
    Wrong(
        SAFE_INCREMENT,
        "exception",
        _SAFE_INCREMENT.replace("get_lock()", "get_lock"),
        _raised("TypeError", "'method' object does not support the context manager protocol"),
        4,
    ),
    Wrong(
        SAFE_INCREMENT,
        "leaves out",
        "def safe_increment(counter, n):\n"
        "    for _ in range(n):\n"
        "        with counter.get_lock():\n"
        "            value = counter.value\n"
        "        counter.value = value + 1\n",
        _LOST,
    ),
    Wrong(
        COUNT_EVENS,
        "typo",
        _COUNT_EVENS.replace("counter.value +=", "counter.valeu +="),
        _raised("AttributeError", "'Synchronized' object has no attribute 'valeu'"),
        5,
    ),
    Wrong(
        COUNT_EVENS,
        "wrong value",
        _COUNT_EVENS.replace("number % 2 == 0", "number % 2 == 1"),
        "the total is wrong: add how many of the numbers are even",
    ),
    Wrong(
        COUNT_EVENS,
        "wrong type",
        _COUNT_EVENS.replace("+= evens", "+= evens / 1"),
        _raised("TypeError", "'float' object cannot be interpreted as an integer"),
        5,
    ),
    Wrong(
        COUNT_EVENS,
        "stub",
        "def count_evens(counter, numbers):\n"
        "    for number in numbers:\n"
        "        if number % 2 == 0:\n"
        "            with counter.get_lock():\n"
        "                counter.value += 1\n",
        "the total is right, but your function took the counter's lock more than once per call",
    ),
    Wrong(COUNT_EVENS, "syntax error", _COUNT_EVENS.replace("== 0)", "== 0"), SYNTAX, 3),
    Wrong(
        COUNT_EVENS,
        "exception",
        _COUNT_EVENS.replace("number % 2 == 0", "numbers % 2 == 0"),
        _raised("TypeError", "unsupported operand type(s) for %: 'list' and 'int'"),
        3,
    ),
    Wrong(
        COUNT_EVENS,
        "leaves out",
        _COUNT_EVENS.replace("    with counter.get_lock():\n        counter", "    counter"),
        "the total is right, but your function never took the counter's lock",
    ),
]

# -- 04 ---------------------------------------------------------------------------------

_ADD_TAG = """def add_tag(shared, key, tag):
    tags = shared[key]
    tags.append(tag)
    shared[key] = tags
"""
_SQUARES = """from multiprocessing import Manager, Process


def store_square(shared, n):
    shared[n] = n * n


def squares(numbers):
    with Manager() as manager:
        shared = manager.dict()
        workers = [Process(target=store_square, args=(shared, n)) for n in numbers]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        return dict(shared)
"""
_EVERY_TAG_LOST = (
    "every tag was lost: shared[key] hands you a copy of the list, and changing the copy "
    "sends nothing to the manager"
)

WRONG += [
    Wrong(
        ADD_TAG,
        "typo",
        _ADD_TAG.replace("tags.append", "tags.apend"),
        _raised("AttributeError", "'list' object has no attribute 'apend'"),
        4,
    ),
    Wrong(
        ADD_TAG,
        "wrong value",
        "def add_tag(shared, key, tag):\n    shared[key] = [tag] + shared[key]\n",
        "the lists hold the right tags, but append each at the end",
    ),
    Wrong(
        ADD_TAG,
        "wrong type",
        "def add_tag(shared, key, tag):\n    shared[key] = tuple(shared[key]) + (tag,)\n",
        "shared[key] should stay a list of tags, not a tuple",
    ),
    Wrong(
        ADD_TAG,
        "stub",
        "def add_tag(shared, key, tag):\n    shared[key].append(tag)\n",
        _EVERY_TAG_LOST,
    ),
    Wrong(
        ADD_TAG,
        "syntax error",
        _ADD_TAG.replace("tags.append(tag)", "tags.append(tag))"),
        SYNTAX,
        4,
    ),
    Wrong(
        ADD_TAG,
        "exception",
        "def add_tag(shared, key, tag):\n    shared[key] = shared[key] + tag\n",
        _raised("TypeError", 'can only concatenate list (not "str") to list'),
        3,
    ),
    Wrong(
        ADD_TAG,
        "leaves out",
        _ADD_TAG.replace("    shared[key] = tags\n", ""),
        _EVERY_TAG_LOST,
    ),
    Wrong(
        ADD_TAG,
        "old tags dropped",
        "def add_tag(shared, key, tag):\n    shared[key] = [tag]\n",
        "tags that were already in a list went missing",
    ),
    Wrong(
        SQUARES,
        "typo",
        _SQUARES.replace("return dict(shared)", "return dict(shraed)"),
        _raised("NameError", "name 'shraed' is not defined"),
        17,
    ),
    Wrong(
        SQUARES,
        "wrong value",
        _SQUARES.replace("shared[n] = n * n", "shared[n] = n + n"),
        "the dict is not right: one entry per number, number -> its square",
    ),
    Wrong(
        SQUARES,
        "wrong type",
        _SQUARES.replace("return dict(shared)", "return list(shared.items())"),
        "return a dict, not a list",
    ),
    Wrong(
        SQUARES,
        "stub",
        _SQUARES.replace("return dict(shared)", "return shared"),
        "you returned the DictProxy itself; it stops working when its manager shuts down",
    ),
    Wrong(SQUARES, "syntax error", _SQUARES.replace("(numbers):", "(numbers)"), SYNTAX, 9),
    Wrong(
        SQUARES,
        "exception",
        _SQUARES.replace("        return dict(shared)", "    return dict(shared)"),
        # BrokenPipeError or FileNotFoundError, as the manager's end goes.
        "(line 17 of your cell); was a proxy used after its manager's `with` block ended?",
        17,
    ),
    Wrong(
        SQUARES,
        "leaves out",
        _SQUARES.replace("for n in numbers]", "for n in numbers[1:]]"),
        "a few numbers: some numbers are missing from the dict: every number needs its entry",
    ),
    Wrong(
        SQUARES,
        "string keys",
        _SQUARES.replace("return dict(shared)", "return {str(n): v for n, v in shared.items()}"),
        "the keys should be the numbers themselves (int)",
    ),
]

# -- 05 ---------------------------------------------------------------------------------

_COMPRESS_FILE = """import gzip
import shutil


def compress_file(path):
    with open(path, "rb") as source, gzip.open(path + ".gz", "wb") as target:
        shutil.copyfileobj(source, target)
    return path + ".gz"
"""
_VERIFY_ARCHIVE = """import gzip
import zlib


def verify_archive(original, archive):
    try:
        with gzip.open(archive, "rb") as compressed:
            restored = compressed.read()
    except (OSError, EOFError, zlib.error):
        return False
    with open(original, "rb") as source:
        return restored == source.read()
"""

WRONG += [
    Wrong(
        COMPRESS_FILE,
        "typo",
        _COMPRESS_FILE.replace("copyfileobj", "copyfileobject"),
        _raised("AttributeError", "module 'shutil' has no attribute 'copyfileobject'"),
        8,
    ),
    Wrong(
        COMPRESS_FILE,
        "wrong value",
        _COMPRESS_FILE.replace(
            "shutil.copyfileobj(source, target)", "target.write(source.read(1024))"
        ),
        "the archive does not decompress to the original's bytes",
    ),
    Wrong(
        COMPRESS_FILE,
        "wrong type",
        "from pathlib import Path\n"
        + _COMPRESS_FILE.replace('return path + ".gz"', 'return Path(path + ".gz")'),
        "return the archive's path (a str), not a PosixPath",
    ),
    Wrong(
        COMPRESS_FILE,
        "stub",
        "import gzip\nimport shutil\n\n\ndef compress_file(path):\n    raise NotImplementedError\n",
        STUB_HINT,
    ),
    Wrong(COMPRESS_FILE, "syntax error", _COMPRESS_FILE.replace('"wb") as', '"wb" as'), SYNTAX, 7),
    Wrong(
        COMPRESS_FILE,
        "exception",
        _COMPRESS_FILE.replace('"wb")', '"wb", encoding="utf-8")'),
        _raised("ValueError", "Argument 'encoding' not supported in binary mode"),
        7,
    ),
    Wrong(
        COMPRESS_FILE,
        "leaves out",
        _COMPRESS_FILE.replace('    return path + ".gz"\n', ""),
        "return the archive's path (a str), not None",
    ),
    Wrong(
        COMPRESS_FILE,
        "not gzip",
        "import shutil\n\n\ndef compress_file(path):\n"
        "    shutil.copy(path, path + '.gz')\n    return path + '.gz'\n",
        "the archive is not a gzip file that reads to its end",
    ),
    Wrong(
        COMPRESS_FILE,
        "original removed",
        "import os\n"
        + _COMPRESS_FILE.replace(
            '    return path + ".gz"', '    os.remove(path)\n    return path + ".gz"'
        ),
        "keep the original file as it was",
    ),
    Wrong(
        VERIFY_ARCHIVE,
        "typo",
        _VERIFY_ARCHIVE.replace("gzip.open", "gzip.opne"),
        _raised("AttributeError", "module 'gzip' has no attribute 'opne'"),
        8,
    ),
    Wrong(
        VERIFY_ARCHIVE,
        "wrong value",
        _VERIFY_ARCHIVE.replace("restored == source.read()", "len(restored) == len(source.read())"),
        "an archive of the original with one byte changed: your function's answer is wrong",
    ),
    Wrong(
        VERIFY_ARCHIVE,
        "wrong type",
        _VERIFY_ARCHIVE.replace(
            "return restored == source.read()", "return int(restored == source.read())"
        ),
        "a correct archive: return True or False, not an int",
    ),
    Wrong(
        VERIFY_ARCHIVE,
        "stub",
        "import gzip\nimport os\n\n\n"
        "def verify_archive(original, archive):\n    return os.path.exists(archive)\n",
        "an archive of a different file: your function's answer is wrong",
    ),
    Wrong(VERIFY_ARCHIVE, "syntax error", _VERIFY_ARCHIVE.replace("try:", "try"), SYNTAX, 7),
    Wrong(
        VERIFY_ARCHIVE,
        "exception",
        "import gzip\n\n\ndef verify_archive(original, archive):\n"
        "    with gzip.open(archive) as compressed:\n"
        "        restored = compressed.read()\n"
        "    with open(original, 'rb') as source:\n"
        "        return restored == source.read()\n",
        "an archive cut short: your function raised EOFError: Compressed file ended before the "
        "end-of-stream marker was reached (line 7 of your cell); your function must not raise",
        7,
    ),
    Wrong(
        VERIFY_ARCHIVE,
        "leaves out",
        _VERIFY_ARCHIVE.replace(
            "(OSError, EOFError, zlib.error)", "(gzip.BadGzipFile, EOFError, zlib.error)"
        ),
        "an archive that does not exist: your function raised FileNotFoundError",
        8,
    ),
]

# -- 06 ---------------------------------------------------------------------------------

_CORRECT = "your test fails on the correct parallel_sum"

WRONG += [
    Wrong(
        TEST_PARALLEL_SUM,
        "typo",
        "def test_parallel_sum():\n    for numbers in ([], [1, 2, 3]):\n"
        "        assert paralel_sum(numbers) == sum(numbers)\n",
        f"{_CORRECT}: it raised NameError: name 'paralel_sum' is not defined (line 4 of your cell)",
        4,
    ),
    Wrong(
        TEST_PARALLEL_SUM,
        "wrong value",
        "def test_parallel_sum():\n    assert parallel_sum([1, 2, 3]) == 7\n",
        f"{_CORRECT}: the assert at line 3 of your cell does not hold (assert 6 == 7)",
    ),
    Wrong(
        TEST_PARALLEL_SUM,
        "wrong type",
        "def test_parallel_sum():\n    assert parallel_sum([1, 2, 3]) == '6'\n",
        f"{_CORRECT}: the assert at line 3 of your cell does not hold",
    ),
    Wrong(
        TEST_PARALLEL_SUM,
        "stub",
        "def test_parallel_sum():\n    assert parallel_sum([1, 2, 3, 4]) == 10\n",
        "your test passes on a parallel_sum that loses the last numbers when the list does not "
        "split evenly between the workers",
    ),
    Wrong(
        TEST_PARALLEL_SUM,
        "syntax error",
        "def test_parallel_sum():\n    assert parallel_sum([1, 2) == 3\n",
        SYNTAX,
        3,
    ),
    Wrong(
        TEST_PARALLEL_SUM,
        "exception",
        "def test_parallel_sum():\n    assert parallel_sum([1, 2], workers=0) == 3\n",
        f"{_CORRECT}: it raised ZeroDivisionError",
        3,
    ),
    Wrong(
        TEST_PARALLEL_SUM,
        "leaves out",
        "def test_parallel_sum():\n    for numbers in ([1, 2, 3], list(range(11))):\n"
        "        assert parallel_sum(numbers) == sum(numbers)\n",
        "your test passes on a parallel_sum that crashes on an empty list",
    ),
    Wrong(
        TEST_PARALLEL_SUM,
        "own parallel_sum",
        "def parallel_sum(numbers, workers=2):\n    return sum(numbers)\n\n\n"
        "def test_parallel_sum():\n    assert parallel_sum([1, 2, 3, 4]) == 10\n",
        "your test passes on a parallel_sum that loses the last numbers",
    ),
]

# -- 07 ---------------------------------------------------------------------------------

_SHELL_RUNNER = """from dockermagic import AbstractDockerCodeRunner, PythonDockerRunner


class ShellRunner(AbstractDockerCodeRunner):
    language = "shell"
    aliases = ("sh",)
    suffixes = (".sh",)
    default_image = PythonDockerRunner.default_image
    image_env_var = PythonDockerRunner.image_env_var
    offline_image = PythonDockerRunner.offline_image
    filename = "main.sh"

    def command(self, path):
        return ["/bin/sh", path]

    def environment(self):
        return {"HOME": self.policy.workdir}
"""
_EXPLAIN = """def explain(result):
    if result.timed_out:
        return "timed out"
    if result.oom_killed:
        return "out of memory"
    if result.ok:
        return "ok"
    if "SyntaxError" in result.stderr:
        return "syntax error"
    return "crashed"
"""

WRONG += [
    Wrong(
        SHELL_RUNNER,
        "typo",
        _SHELL_RUNNER.replace('["/bin/sh", path]', '["/bin/sh", pth]'),
        _raised("NameError", "name 'pth' is not defined"),
        15,
    ),
    Wrong(
        SHELL_RUNNER,
        "wrong value",
        _SHELL_RUNNER.replace('["/bin/sh", path]', '["python3", path]'),
        "a short script run with your command did not print what it prints under /bin/sh",
    ),
    Wrong(
        SHELL_RUNNER,
        "wrong type",
        _SHELL_RUNNER.replace('["/bin/sh", path]', '"/bin/sh " + path'),
        "should return the argv that runs the script, a list of strings, not a str",
    ),
    Wrong(
        SHELL_RUNNER,
        "stub",
        _SHELL_RUNNER.replace('return ["/bin/sh", path]', "raise NotImplementedError").replace(
            'return {"HOME": self.policy.workdir}', "raise NotImplementedError"
        ),
        STUB_HINT,
    ),
    Wrong(
        SHELL_RUNNER,
        "syntax error",
        _SHELL_RUNNER.replace("(self, path):", "(self, path)"),
        SYNTAX,
        14,
    ),
    Wrong(
        SHELL_RUNNER,
        "exception",
        _SHELL_RUNNER.replace('["/bin/sh", path]', '["/bin/sh"] + path'),
        _raised("TypeError", 'can only concatenate list (not "str") to list'),
        15,
    ),
    Wrong(
        SHELL_RUNNER,
        "leaves out",
        _SHELL_RUNNER.replace('["/bin/sh", path]', '["/bin/sh", "/code/main.sh"]'),
        "the argv must pass the script's path, the one it was given, to the shell",
    ),
    Wrong(
        SHELL_RUNNER,
        "abstract method missing",
        _SHELL_RUNNER[: _SHELL_RUNNER.index("    def environment")],
        "ShellRunner() raised TypeError: Can't instantiate abstract class ShellRunner",
    ),
    Wrong(
        SHELL_RUNNER,
        "whole environment",
        _SHELL_RUNNER.replace('{"HOME": self.policy.workdir}', "dict(__import__('os').environ)"),
        "give only what the language needs (a shell needs hardly any)",
    ),
    Wrong(
        SHELL_RUNNER,
        "status lost",
        _SHELL_RUNNER.replace('["/bin/sh", path]', '["/bin/sh", "-c", f"sh {path}; exit 0"]'),
        "the script's own exit status was not passed on",
    ),
    Wrong(
        SHELL_RUNNER,
        "undefined",
        _SHELL_RUNNER.replace("class ShellRunner(", "class ShelRunner("),
        "your cell does not define `ShellRunner`: check its name",
    ),
    Wrong(
        EXPLAIN,
        "typo",
        _EXPLAIN.replace("result.oom_killed", "result.oom"),
        _raised("AttributeError", "'RunResult' object has no attribute 'oom'"),
        5,
    ),
    Wrong(
        EXPLAIN,
        "wrong value",
        _EXPLAIN.replace('"SyntaxError" in result.stderr', "False"),
        "your function said 'crashed', which does not fit that run",
    ),
    Wrong(
        EXPLAIN,
        "wrong type",
        "def explain(result):\n    return result.status\n",
        "return one of the five answers, a str, not a Status",
    ),
    Wrong(
        EXPLAIN,
        "stub",
        "def explain(result):\n    raise NotImplementedError\n",
        STUB_HINT,
    ),
    Wrong(EXPLAIN, "syntax error", _EXPLAIN.replace("if result.ok:", "if result.ok"), SYNTAX, 7),
    Wrong(
        EXPLAIN,
        "exception",
        "def explain(result):\n    second = result.stdout.splitlines()[1]\n    return second\n",
        _raised("IndexError", "list index out of range"),
        3,
    ),
    Wrong(
        EXPLAIN,
        "leaves out",
        _EXPLAIN.replace('    if result.timed_out:\n        return "timed out"\n', ""),
        "(time limit 1.5 s): your function said 'crashed', which does not fit that run",
    ),
    Wrong(
        EXPLAIN,
        "not an answer",
        _EXPLAIN.replace('return "crashed"', 'return "failed"'),
        "your function said 'failed', which is not one of 'ok', 'syntax error', 'crashed'",
    ),
]


def _answer(wrong: Wrong) -> Any:
    answer = answer_from_cells(wrong.exercise, [Cell(HEADER + wrong.body, wrong.exercise)])
    assert answer is not None
    return answer


@pytest.fixture(scope="module")
def verdicts() -> Iterator[dict[Wrong, Verdict]]:
    """Every wrong answer's verdict, checked in parallel (a few containers at a time)."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {
            wrong: pool.submit(check, EXERCISES[wrong.exercise], _answer(wrong), seed=SEED)
            for wrong in WRONG
        }
        yield {wrong: future.result() for wrong, future in futures.items()}


def _leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


def _secrets(item: Exercise) -> set[str]:
    """The expected values of the check's cases that the student was not shown.

    Shown are the inputs, the cases' labels, and the notebook's own text
    (e.g. the five answers ``explain`` chooses from).
    """
    cases = item.cases(random.Random(SEED))
    notebook = (NOTEBOOKS / "src" / f"{item.id.split('/')[0]}.md").read_text(encoding="utf-8")
    shown = " ".join(
        [notebook, *(case.label for case in cases), repr([case.args for case in cases])]
    )
    secrets = set()
    for case in cases:
        for leaf in _leaves(case.expected):
            if isinstance(leaf, bool):
                continue
            if isinstance(leaf, int) and abs(leaf) >= 10 and not re.search(rf"\b{leaf}\b", shown):
                secrets.add(str(leaf))
            if isinstance(leaf, str) and len(leaf.strip()) >= 4 and leaf.strip() not in shown:
                secrets.add(leaf.strip())
    return secrets


def test_every_exercise_has_each_kind_of_wrong_answer() -> None:
    kinds = {"typo", "wrong value", "wrong type", "stub", "syntax error", "exception", "leaves out"}
    assert set(EXERCISES) == {wrong.exercise for wrong in WRONG}
    assert len(EXERCISES) == 13
    for exercise_id in EXERCISES:
        have = {wrong.kind for wrong in WRONG if wrong.exercise == exercise_id}
        assert kinds <= have, f"{exercise_id} lacks {sorted(kinds - have)}"


@pytest.mark.parametrize("wrong", WRONG, ids=lambda wrong: f"{wrong.exercise}:{wrong.kind}")
def test_the_hint_names_the_real_problem(wrong: Wrong, verdicts: dict[Wrong, Verdict]) -> None:
    verdict = verdicts[wrong]
    if not wrong.hint:
        assert verdict.ok, repr(verdict)
        return
    assert not verdict.ok
    assert verdict.outcome == "failed", repr(verdict)
    assert wrong.hint in verdict.hint, verdict.hint
    if wrong.line is not None:
        assert f"(line {wrong.line} of your cell)" in verdict.hint, verdict.hint
    for secret in _secrets(EXERCISES[wrong.exercise]):
        assert secret not in verdict.hint, f"the hint shows an expected value: {secret!r}"
