"""Grades in words and files: the terminal table, summaries, CSV, JSON and HTML.

Everything a student wrote or printed (names, hints quoting their messages,
output) is hostile here: the terminal table shows it through
:func:`~dockermagic.logs.escape_line` (no control character reaches the
teacher's terminal), CSV cells that a spreadsheet would read as a formula are
prefixed with ``'``, and the HTML report escapes every value (no script, no
markup; one self-contained file, no external resource).
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dockermagic.grading.exercise import Outcome
from dockermagic.grading.grade import Record
from dockermagic.logs import escape_line

__all__ = [
    "SYMBOLS",
    "Summary",
    "html_report",
    "records_csv",
    "records_json",
    "summaries",
    "summary_lines",
    "table",
]

#: How the table shows each outcome.
SYMBOLS = {
    Outcome.PASSED: "✓",
    Outcome.FAILED: "✗",
    Outcome.MISSING: "missing",
    Outcome.TIMEOUT: "timeout",
    Outcome.ERROR: "error",
}
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Summary:
    """How one exercise went across the class."""

    exercise: str
    passed: int
    students: int
    counts: dict[str, int]


def _short(exercise_id: str) -> str:
    return exercise_id.rpartition("/")[2]


def _students(records: Sequence[Record]) -> list[str]:
    return list(dict.fromkeys(record.student for record in records))


def _exercises(records: Sequence[Record]) -> list[str]:
    return list(dict.fromkeys(record.exercise for record in records))


def _cell(record: Record) -> str:
    symbol = SYMBOLS[record.status]
    if record.status is Outcome.FAILED and 0 < record.score < record.weight:
        return f"{symbol} {record.score:g}"
    return symbol


def table(records: Sequence[Record]) -> str:
    """The student-by-exercise table with a total per student.

    Args:
        records: The records.

    Returns:
        The table, one line per student after a header.
    """
    exercises = _exercises(records)
    by_key = {(r.student, r.exercise): r for r in records}
    names = [escape_line(student) for student in _students(records)]
    headers = ["student", *(_short(e) for e in exercises), "total"]
    rows = []
    for student, shown in zip(_students(records), names, strict=True):
        mine = [by_key[(student, e)] for e in exercises if (student, e) in by_key]
        total = f"{sum(r.score for r in mine):g}/{sum(r.weight for r in mine):g}"
        cells = [_cell(by_key[(student, e)]) if (student, e) in by_key else "" for e in exercises]
        rows.append([shown, *cells, total])
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    lines = ["  ".join(text.ljust(width) for text, width in zip(headers, widths, strict=True))]
    lines += ["  ".join("-" * width for width in widths)]
    lines += [
        "  ".join(text.ljust(width) for text, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    return "\n".join(lines)


def summaries(records: Sequence[Record]) -> list[Summary]:
    """Per exercise: how many students passed, and how the others ended.

    Args:
        records: The records.

    Returns:
        One summary per exercise, in course order.
    """
    found = []
    for exercise in _exercises(records):
        mine = [r for r in records if r.exercise == exercise]
        counts = {str(outcome): sum(r.status is outcome for r in mine) for outcome in Outcome}
        found.append(Summary(exercise, counts["passed"], len(mine), counts))
    return found


def summary_lines(records: Sequence[Record]) -> list[str]:
    """One line per exercise: ``run_tool  12/30 passed (8 failed, 4 missing...)``.

    Args:
        records: The records.

    Returns:
        The lines.
    """
    lines = []
    for summary in summaries(records):
        others = ", ".join(
            f"{count} {name}"
            for name, count in summary.counts.items()
            if count and name != "passed"
        )
        extra = f" ({others})" if others else ""
        lines.append(f"{summary.exercise}: {summary.passed}/{summary.students} passed{extra}")
    return lines


def _plain(record: Record) -> dict[str, Any]:
    return {
        "student": record.student,
        "exercise": record.exercise,
        "status": str(record.status),
        "score": record.score,
        "weight": record.weight,
        "hint": record.hint,
        "duration": record.duration,
        "origin": record.origin,
        "output": record.output,
    }


def records_json(records: Sequence[Record]) -> str:
    """The records as a JSON list (one object per student and exercise).

    Args:
        records: The records.

    Returns:
        The JSON text.
    """
    return json.dumps([_plain(record) for record in records], indent=1, ensure_ascii=False) + "\n"


def _csv_safe(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def records_csv(records: Sequence[Record]) -> str:
    """The records as CSV (without the captured output).

    Args:
        records: The records.

    Returns:
        The CSV text, with a header row.
    """
    stream = io.StringIO()
    fields = ["student", "exercise", "status", "score", "weight", "hint", "duration", "origin"]
    writer = csv.DictWriter(stream, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({key: _csv_safe(value) for key, value in _plain(record).items()})
    return stream.getvalue()


_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin-bottom: 2em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
.passed { background: #e6f4ea; } .failed { background: #fce8e6; }
.missing, .timeout, .error { background: #fef7e0; }
pre { white-space: pre-wrap; max-height: 20em; overflow: auto; background: #f6f6f6;
      padding: 6px; margin: 4px 0; }
details { margin: 2px 0; }
"""


def html_report(records: Sequence[Record], *, title: str = "Grades") -> str:
    """A self-contained HTML report: the table, then per student every verdict.

    Args:
        records: The records.
        title: The page's title.

    Returns:
        The HTML document (every value escaped; no scripts, no external files).
    """
    e = html.escape
    exercises = _exercises(records)
    by_key = {(r.student, r.exercise): r for r in records}
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        # No script may run even if something slipped through the escaping.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'\">",
        f"<title>{e(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        "<table><tr><th>student</th>",
        *(f"<th>{e(_short(x))}</th>" for x in exercises),
        "<th>total</th></tr>",
    ]
    for student in _students(records):
        mine = [by_key[(student, x)] for x in exercises if (student, x) in by_key]
        parts.append(f'<tr><td><a href="#s-{e(student)}">{e(student)}</a></td>')
        for exercise in exercises:
            record = by_key.get((student, exercise))
            if record is None:
                parts.append("<td></td>")
                continue
            parts.append(f'<td class="{record.status}">{e(_cell(record))}</td>')
        total = f"{sum(r.score for r in mine):g}/{sum(r.weight for r in mine):g}"
        parts.append(f"<td>{e(total)}</td></tr>")
    parts.append("</table><h2>Per exercise</h2><ul>")
    parts += [f"<li>{e(line)}</li>" for line in summary_lines(records)]
    parts.append("</ul>")
    for student in _students(records):
        parts.append(f'<h2 id="s-{e(student)}">{e(student)}</h2>')
        parts.append(
            "<table><tr><th>exercise</th><th>status</th><th>score</th>"
            "<th>hint</th><th>time</th></tr>"
        )
        for record in (by_key[(student, x)] for x in exercises if (student, x) in by_key):
            output = ""
            if record.output:
                output = (
                    f"<details><summary>output</summary><pre>{e(record.output)}</pre></details>"
                )
            parts.append(
                f'<tr class="{record.status}"><td>{e(record.exercise)}</td>'
                f"<td>{e(str(record.status))}</td>"
                f"<td>{record.score:g}/{record.weight:g}</td>"
                f"<td>{e(record.hint)}{output}</td><td>{record.duration:.1f} s</td></tr>"
            )
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
