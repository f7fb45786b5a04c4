"""Pure logic of grading: finding answers, judging observations, writing reports."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dockermagic.errors import InvalidArgumentError
from dockermagic.grading import (
    STUB_HINT,
    Case,
    Cell,
    Exercise,
    Outcome,
    answer_from_cells,
    describe_observation,
    find_exercise,
    read_cells,
    register_exercise,
    value_judge,
)
from dockermagic.grading.answers import MAX_FILE_BYTES, cell_body, defines
from dockermagic.grading.grade import Record, submissions
from dockermagic.grading.report import html_report, records_csv, records_json, summary_lines, table


def test_cell_body_strips_the_python_magic_and_counts_its_line() -> None:
    assert cell_body("def f():\n    pass\n") == ("def f():\n    pass\n", 1)
    assert cell_body("%%docker_python --session exercises\ndef f(): pass\n") == (
        "def f(): pass\n",
        2,
    )
    assert cell_body("\n%%docker_python\nx = 1") == ("x = 1", 3)
    assert cell_body("%%docker_js\nfunction f() {}") is None
    assert cell_body("%%bash\necho hi") is None


def test_defines_finds_top_level_definitions_even_in_broken_code() -> None:
    assert defines("import os\n\ndef run_tool(argv):\n    pass\n", "run_tool")
    assert defines("class ShellRunner:\n    pass\n", "ShellRunner")
    assert not defines("def helper():\n    def run_tool(): pass\n", "run_tool")
    assert not defines("run_tool(['ls'])\n", "run_tool")
    # A syntax error is the student's to see, not a "missing".
    assert defines("def run_tool(argv):\n    return (\n", "run_tool")


def test_the_tagged_cell_wins_else_the_last_definition() -> None:
    cells = [
        Cell("def run_tool(argv):\n    return 1\n"),
        Cell("%%docker_python\ndef run_tool(argv):\n    return 2\n", "01-x/run_tool"),
        Cell("def run_tool(argv):\n    return 3\n"),
    ]
    tagged = answer_from_cells("01-x/run_tool", cells)
    assert tagged is not None
    assert "return 2" in tagged.source
    assert tagged.first_line == 2
    assert tagged.origin == "cell 2"
    untagged = answer_from_cells("01-x/run_tool", [cells[0], cells[2]])
    assert untagged is not None
    assert "return 3" in untagged.source
    assert answer_from_cells("01-x/sort_words", cells) is None
    js = [Cell("%%docker_js\nfunction run_tool() {}\n")]
    assert answer_from_cells("01-x/run_tool", js) is None


def _notebook(cells: list[dict[str, object]]) -> str:
    return json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


def test_read_cells_reads_notebooks_scripts_and_folders(tmp_path: Path) -> None:
    notebook = tmp_path / "ann.ipynb"
    notebook.write_text(
        _notebook(
            [
                {"cell_type": "markdown", "source": "def run_tool(): no", "metadata": {}},
                {
                    "cell_type": "code",
                    "source": ["%%docker_python\n", "def run_tool(argv):\n", "    return 0\n"],
                    "metadata": {"dockermagic": {"exercise": "01-x/run_tool"}},
                },
            ]
        ),
        encoding="utf-8",
    )
    cells = read_cells(notebook)
    assert cells == [Cell("%%docker_python\ndef run_tool(argv):\n    return 0\n", "01-x/run_tool")]
    folder = tmp_path / "bob"
    folder.mkdir()
    (folder / "a.py").write_text("x = 1\n", encoding="utf-8")
    (folder / "notes.txt").write_text("ignored", encoding="utf-8")
    secret = tmp_path / "secret.py"
    secret.write_text("TOKEN = 1\n", encoding="utf-8")
    os.symlink(secret, folder / "b.py")
    assert read_cells(folder) == [Cell("x = 1\n")]
    os.symlink(notebook, tmp_path / "link.ipynb")
    with pytest.raises(ValueError, match="symbolic link"):
        read_cells(tmp_path / "link.ipynb")
    broken = tmp_path / "broken.ipynb"
    broken.write_text("{nope", encoding="utf-8")
    with pytest.raises(ValueError, match="not a notebook"):
        read_cells(broken)
    huge = tmp_path / "huge.py"
    with huge.open("wb") as stream:
        stream.truncate(MAX_FILE_BYTES + 1)
    with pytest.raises(ValueError, match="MiB"):
        read_cells(huge)
    huge.unlink()
    names = [entry.student for entry in submissions(tmp_path)]
    assert names == ["ann", "bob", "broken", "link", "secret"]


def test_exercise_ids_name_their_function() -> None:
    probe = "def probe(function, case, observe):\n    return observe(lambda: function())\n"
    item = Exercise("99-test/answer", "answer", lambda rng: [], probe, value_judge(lambda *a: ""))
    assert register_exercise(item) is item
    assert find_exercise("99-test/answer") is item
    assert find_exercise("answer") is item
    with pytest.raises(InvalidArgumentError, match="no such exercise"):
        find_exercise("99-test/other")
    wrong = Exercise("99-test/other", "answer", lambda rng: [], probe, value_judge(lambda *a: ""))
    with pytest.raises(InvalidArgumentError, match="exercise id"):
        register_exercise(wrong)


def test_observations_become_hints_that_name_the_real_problem() -> None:
    case = Case((["ls"],), "`ls`", (0, ""))
    assert describe_observation(case, {"stub": True}) == STUB_HINT
    raised = {"raised": "AttributeError", "message": "no attribute 'stdot'", "line": 7}
    assert describe_observation(case, raised) == (
        "`ls`: your function raised AttributeError: no attribute 'stdot' (line 7 of your cell)"
    )
    assert "sys.exit(3)" in describe_observation(case, {"exit": "3"})
    assert describe_observation(case, {"value": 1, "type": "int"}) == ""
    assert "nothing it understands" in describe_observation(case, {"forged": True})


def test_value_judge_counts_right_cases_and_keeps_the_first_hint() -> None:
    cases = [Case((n,), f"n={n}", n * 2) for n in range(3)]

    def compare(case: Case, value: object, kind: str) -> str:
        return "" if value == case.expected else f"{case.label}: wrong"

    judge = value_judge(compare)
    seen = [{"value": 0, "type": "int"}, {"value": 5, "type": "int"}, {"raised": "KeyError"}]
    assert judge(cases, seen) == (1, "n=1: wrong")
    assert judge(cases, [{"value": n * 2, "type": "int"} for n in range(3)]) == (3, "")


def _records() -> list[Record]:
    return [
        Record("ann", "01-x/run_tool", Outcome.PASSED, 1.0, 1.0, duration=0.5),
        Record("ann", "01-x/sort_words", Outcome.FAILED, 0.33, 1.0, "wrong", 0.4, "out"),
        Record("=cmd|' /C calc'!A0", "01-x/run_tool", Outcome.MISSING, 0.0, 1.0, "no cell"),
        Record("=cmd|' /C calc'!A0", "01-x/sort_words", Outcome.TIMEOUT, 0.0, 1.0, "loop"),
        Record("e\x1b[2Jvil\nname", "01-x/run_tool", Outcome.ERROR, 0.0, 1.0, "<b>x</b>"),
        Record(
            "e\x1b[2Jvil\nname",
            "01-x/sort_words",
            Outcome.FAILED,
            0.0,
            1.0,
            "",
            output="<script>alert(1)</script>",
        ),
    ]


def test_the_table_shows_symbols_partial_credit_and_totals() -> None:
    lines = table(_records()).splitlines()
    assert lines[0].split() == ["student", "run_tool", "sort_words", "total"]
    assert lines[2].split() == ["ann", "✓", "✗", "0.33", "1.33/2"]
    assert "missing" in lines[3]
    assert "timeout" in lines[3]
    assert "\x1b" not in lines[4]
    assert "\\x1b[2Jvil\\nname" in lines[4]
    assert len(lines) == 5
    assert summary_lines(_records()) == [
        "01-x/run_tool: 1/3 passed (1 missing, 1 error)",
        "01-x/sort_words: 0/3 passed (2 failed, 1 timeout)",
    ]


def test_csv_json_and_html_keep_student_text_inert() -> None:
    text = records_csv(_records())
    assert "\n'=cmd|" in text
    records = json.loads(records_json(_records()))
    assert records[0] == {
        "student": "ann",
        "exercise": "01-x/run_tool",
        "status": "passed",
        "score": 1.0,
        "weight": 1.0,
        "hint": "",
        "duration": 0.5,
        "origin": "",
        "output": "",
    }
    page = html_report(_records())
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page
    assert "default-src 'none'" in page
