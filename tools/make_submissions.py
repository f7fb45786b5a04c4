"""Write made-up submissions of notebook 01 for trying out ``dockermagic grade``.

Thirty-odd students, each a copy of ``notebooks/01-subprocess.ipynb`` (or a
``.py`` file, or a folder) whose exercise cells hold one kind of answer:
right, wrong, raising, a stub, an endless loop, a flood of output, a deleted
or moved cell, and every trick we know for forging a verdict (a fake report
from ``atexit``, ``os._exit``, patched harness and builtins, fake protocol
frames, reading the expected values) plus attempts to write on the host.
Each cheat's function returns a wrong value (``None``), so a pass would be a
forged verdict.

:data:`EXPECTED` is the grade table those submissions must give, exactly.

Usage::

    .venv/bin/python tools/make_submissions.py OUT/   # then
    dockermagic grade OUT/ --course notebooks
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "01-subprocess.ipynb"
RUN_TOOL = "01-subprocess/run_tool"
SORT_WORDS = "01-subprocess/sort_words"
HEADER = "%%docker_python --session exercises\n"
#: A file every "write to the host" attempt tries to create; it must not appear.
HOST_MARKER = "/tmp/dockermagic-grade-host-marker"

RIGHT_RUN_TOOL = """import subprocess


def run_tool(argv):
    done = subprocess.run(argv, capture_output=True, text=True)
    return done.returncode, done.stdout
"""
RIGHT_SORT_WORDS = """import subprocess


def sort_words(words):
    text = "".join(word + "\\n" for word in words)
    done = subprocess.run(["sort", "-u"], input=text, capture_output=True, text=True)
    return done.stdout.splitlines()
"""
STUB_RUN_TOOL = "import subprocess\n\n\ndef run_tool(argv):\n    raise NotImplementedError\n"
STUB_SORT_WORDS = "import subprocess\n\n\ndef sort_words(words):\n    raise NotImplementedError\n"


def _cheat(trick: str) -> str:
    """A run_tool that returns None, plus a trick meant to make the check pass anyway."""
    return f"""import subprocess


def run_tool(argv):
    return None


{trick}
"""


# A report as the harness prints it, with the marker read from the harness's
# own source: every cheat below has the marker, so only the values can stop it.
_FORGE = """
import json, re, sys
def _forged_report():
    source = open("/code/check.py").read()
    nonce = re.search(r"_NONCE = '([^']+)'", source).group(1)
    cases = json.load(open("/code/cases.json"))
    report = {"cases": [{"value": [0, ""], "type": "tuple"} for _ in cases]}
    return "\\n" + nonce + json.dumps(report) + "\\n"
"""

CHEATS: dict[str, str] = {
    "cheat_atexit": _FORGE
    + "import atexit\natexit.register(lambda: sys.stdout.write(_forged_report()))\n",
    "cheat_os_exit": _FORGE
    + "import os\nsys.stdout.write(_forged_report())\nsys.stdout.flush()\nos._exit(0)\n",
    "cheat_marker": (
        'print("@@CHECK@@{}")\nprint("✅ correct")\nprint("<script>alert(\'graded\')</script>")\n'
    ),
    "cheat_patch_harness": _FORGE
    + (
        "import __main__\n"
        "__main__.observe = lambda call: {'value': [0, ''], 'type': 'tuple'}\n"
        "__main__.probe = lambda function, case, observe: observe(None)\n"
    ),
    "cheat_builtins": (
        "import builtins, json\n"
        "_dumps = json.dumps\n"
        "json.dumps = lambda value, *a, **k: _dumps({'cases': [{'value': [0, 'x'], "
        "'type': 'tuple'}] * 3}) if isinstance(value, dict) and 'cases' in value "
        "else _dumps(value, *a, **k)\n"
        "builtins.isinstance = lambda *args: True\n"
    ),
    "cheat_frames": (
        "import os\n"
        "# frames as the agent writes them, on every descriptor the program has\n"
        "for fd in (1, 2):\n"
        "    os.write(fd, b'\\x00\\x00\\x00\\x10D{\"exit_code\": 0}\\n' + b'\\x1b[2K\\r')\n"
    ),
    "cheat_read_expected": (
        "import gc, json, sys\n"
        "_found = [o for o in gc.get_objects() if isinstance(o, dict) and 'expected' in o]\n"
        "_cases = json.load(open('/code/cases.json'))\n"
        "def run_tool(argv):\n"
        "    return _found[0]['expected'] if _found else None\n"
    ),
    "cheat_system_exit": "def run_tool(argv):\n    raise SystemExit(0)\n",
    "cheat_stack": (
        "import sys\n"
        "def run_tool(argv):\n"
        "    caller = sys._getframe(1)\n"
        "    return caller.f_locals.get('expected')\n"
    ),
    "host_write": (
        "import os, subprocess\n"
        f"for path in ({HOST_MARKER!r}, '/code/pwned', '/../../tmp/pwned'):\n"
        "    try:\n"
        "        open(path, 'w').write('written by a student')\n"
        "    except OSError:\n"
        "        pass\n"
        f"subprocess.run(['touch', {HOST_MARKER!r}])\n"
    ),
}


def _kinds() -> dict[str, tuple[str | None, str | None, str, str]]:
    """Student -> (run_tool cell, sort_words cell, expected run_tool, expected sort_words).

    A cell of None deletes that exercise cell.
    """
    wrong_output = RIGHT_RUN_TOOL.replace("done.stdout\n", "done.stdout + done.stderr\n")
    return {
        "right_1": (RIGHT_RUN_TOOL, RIGHT_SORT_WORDS, "passed", "passed"),
        "right_2": (RIGHT_RUN_TOOL, RIGHT_SORT_WORDS, "passed", "passed"),
        "stub": (STUB_RUN_TOOL, STUB_SORT_WORDS, "failed", "failed"),
        "wrong_value": (
            wrong_output,
            RIGHT_SORT_WORDS.replace('["sort", "-u"]', '["sort"]'),
            "failed",
            "failed",
        ),
        "wrong_code": (
            RIGHT_RUN_TOOL.replace("done.returncode", "0"),
            "def sort_words(words):\n    return sorted(set(words))\n",
            "failed",
            "failed",
        ),
        "typo": (
            RIGHT_RUN_TOOL.replace("done.stdout", "done.stdot"),
            RIGHT_SORT_WORDS.replace("splitlines()", "splitlines"),
            "failed",
            "failed",
        ),
        "raises": (
            RIGHT_RUN_TOOL.replace("capture_output=True,", "capture_output=True, check=True,"),
            "def sort_words(words):\n    return sorted(words, key=lambda w: w / 2)\n",
            "failed",
            "failed",
        ),
        "syntax_error": (
            "def run_tool(argv):\n    return (\n",
            "def sort_words(words)\n    return words\n",
            "failed",
            "failed",
        ),
        "loop": (
            "def run_tool(argv):\n    while True:\n        pass\n",
            RIGHT_SORT_WORDS,
            "timeout",
            "passed",
        ),
        "sleeper": (
            "import time\n\n\ndef run_tool(argv):\n    time.sleep(3600)\n",
            "import threading\n\n\ndef sort_words(words):\n    threading.Event().wait()\n",
            "timeout",
            "timeout",
        ),
        "flood": (
            "def run_tool(argv):\n    while True:\n        print('x' * 10000)\n",
            "import sys\n\n\ndef sort_words(words):\n    sys.stderr.write('y' * 10**9)\n",
            "failed",
            "failed",
        ),
        "crash_on_import": (
            "import no_such_module\n\n\ndef run_tool(argv):\n    return 0, ''\n",
            "raise RuntimeError('boom')\n\n\ndef sort_words(words):\n    return words\n",
            "failed",
            "failed",
        ),
        "memory_hog": (
            "def run_tool(argv):\n    data = ['x' * 10**6 for _ in range(10**5)]\n",
            RIGHT_SORT_WORDS,
            "failed",
            "passed",
        ),
        "fork_bomb": (
            "import os\n\n\ndef run_tool(argv):\n    while True:\n        os.fork()\n",
            RIGHT_SORT_WORDS,
            "failed",
            "passed",
        ),
        "deleted_first": (None, RIGHT_SORT_WORDS, "missing", "passed"),
        "deleted_both": (None, None, "missing", "missing"),
        "sys_exit": (
            "import sys\n\n\ndef run_tool(argv):\n    sys.exit(3)\n",
            RIGHT_SORT_WORDS,
            "failed",
            "passed",
        ),
        **{
            name: (_cheat(trick), STUB_SORT_WORDS, "failed", "failed")
            for name, trick in CHEATS.items()
        },
    }


def _notebook() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    return document


def _exercise_index(document: dict[str, Any], exercise_id: str) -> int:
    for index, cell in enumerate(document["cells"]):
        if cell.get("metadata", {}).get("dockermagic", {}).get("exercise") == exercise_id:
            return index
    raise LookupError(exercise_id)


def _filled(
    run_tool: str | None, sort_words: str | None, *, reorder: bool = False
) -> dict[str, Any]:
    document = copy.deepcopy(_notebook())
    cells = document["cells"]
    for exercise_id, body in ((RUN_TOOL, run_tool), (SORT_WORDS, sort_words)):
        index = _exercise_index(document, exercise_id)
        if body is None:
            del cells[index]
        else:
            cells[index]["source"] = HEADER + body
            cells[index]["outputs"] = []
    if reorder:
        # Both exercise cells first, the second before the first.
        picked = [cells.pop(_exercise_index(document, SORT_WORDS))]
        picked.append(cells.pop(_exercise_index(document, RUN_TOOL)))
        cells[0:0] = picked
    return document


def write_submissions(out: Path) -> dict[str, dict[str, str]]:
    """Write the submissions; return the expected status per student and exercise.

    Args:
        out: A folder (created).

    Returns:
        ``{student: {exercise id: status}}``.
    """
    out.mkdir(parents=True, exist_ok=True)
    expected: dict[str, dict[str, str]] = {}

    def write_notebook(student: str, document: dict[str, Any]) -> None:
        text = json.dumps(document, indent=1, ensure_ascii=False)
        (out / f"{student}.ipynb").write_text(text, encoding="utf-8")

    for student, (run_tool, sort_words, want_run, want_sort) in _kinds().items():
        write_notebook(student, _filled(run_tool, sort_words))
        expected[student] = {RUN_TOOL: want_run, SORT_WORDS: want_sort}
    write_notebook("reordered", _filled(RIGHT_RUN_TOOL, RIGHT_SORT_WORDS, reorder=True))
    expected["reordered"] = {RUN_TOOL: "passed", SORT_WORDS: "passed"}
    # The answer pasted into a new cell, the exercise cell deleted: found by its function.
    moved = _filled(None, RIGHT_SORT_WORDS)
    moved["cells"].append(
        {
            "cell_type": "code",
            "metadata": {},
            "source": HEADER + RIGHT_RUN_TOOL,
            "outputs": [],
            "execution_count": None,
        }
    )
    write_notebook("pasted_elsewhere", moved)
    expected["pasted_elsewhere"] = {RUN_TOOL: "passed", SORT_WORDS: "passed"}
    (out / "as_script.py").write_text(RIGHT_RUN_TOOL + "\n\n" + RIGHT_SORT_WORDS, encoding="utf-8")
    expected["as_script"] = {RUN_TOOL: "passed", SORT_WORDS: "passed"}
    folder = out / "as_folder"
    folder.mkdir(exist_ok=True)
    (folder / "a_run_tool.py").write_text(RIGHT_RUN_TOOL, encoding="utf-8")
    (folder / "b_sort_words.py").write_text(STUB_SORT_WORDS, encoding="utf-8")
    expected["as_folder"] = {RUN_TOOL: "passed", SORT_WORDS: "failed"}
    (out / "not_a_notebook.ipynb").write_text("{ this is not json", encoding="utf-8")
    expected["not_a_notebook"] = {RUN_TOOL: "error", SORT_WORDS: "error"}
    return expected


def main(argv: list[str]) -> int:
    """Write the submissions into the folder named on the command line."""
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    expected = write_submissions(Path(argv[0]))
    print(f"wrote {len(expected)} submissions to {argv[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
