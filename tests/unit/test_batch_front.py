"""Pure logic of issues 12-14 in the batch runner and its front ends.

Displays kept and written as files, requirements from folders and command
lines, the progress model's displays and preparation lines, what a run cost
in words (table, panel, log), and the CLI's new options.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
from pathlib import Path

import pytest
from rich.console import Console

from dockermagic.batch import BatchEvent, BatchProgress, BatchReport, ScriptResult, run_scripts
from dockermagic.batch.discovery import discover_scripts
from dockermagic.batch.displays import DisplayWriter, choose, prepare_outputs_dir
from dockermagic.batch.requirements import (
    merge_requirements,
    parse_requirement_args,
    read_folder_requirements,
)
from dockermagic.cli import age_text, build_parser, main
from dockermagic.console import ConsoleProgress, summary_table
from dockermagic.errors import InvalidArgumentError
from dockermagic.logs import log_result, start_logging
from dockermagic.panel import display_html
from dockermagic.status import Status
from dockermagic.usage import cpu_text, memory_text, usage_fields
from tests.support import make_result

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()


# -- what a run cost, in words ------------------------------------------------------


def test_usage_in_words() -> None:
    assert cpu_text(0.1234) == "0.12 s"
    assert cpu_text(0.1234, compact=True) == "0.123s"
    assert cpu_text(None) == "-"
    assert memory_text(41 * 2**20 + 300_000) == "41 MiB"
    assert memory_text(3 * 2**20 + 2**19) == "3.5 MiB"
    assert memory_text(900 * 1024, compact=True) == "900KiB"
    assert memory_text(512) == "512 B"
    assert memory_text(None) == "-"
    assert usage_fields(0.1234, 41 * 2**20) == "cpu=0.123s peak=41MiB"
    assert usage_fields(None, None) == "cpu=- peak=-"


def test_the_run_record_in_the_log_says_what_it_cost(tmp_path: Path) -> None:
    sink = start_logging(tmp_path)
    try:
        measured = make_result(cpu_seconds=0.1234, peak_memory_bytes=41 * 2**20)
        log_result("job.py", "r1", measured, origin="test")
        log_result("other.py", "r1", make_result(), origin="test")
        assert sink.flush()
    finally:
        sink.stop()
    app = (tmp_path / "dockermagic.log").read_text()
    record = "job.py run=r1 python image=img status=ok exit=0 duration=1.000s"
    assert f"{record} cpu=0.123s peak=41MiB" in app
    assert "other.py run=r1 python image=img status=ok exit=0 duration=1.000s cpu=- peak=-" in app


# -- displays: one representation each, files --------------------------------------


def test_choose_takes_the_richest_usable_type() -> None:
    assert choose({"text/plain": "<Figure>", "image/png": PNG}) == ("image/png", PNG)
    assert choose({"text/html": "<b>x</b>", "text/plain": "x"}) == ("text/html", "<b>x</b>")
    assert choose({"application/json": {"a": [1]}, "text/plain": "{}"}) == (
        "application/json",
        '{\n "a": [\n  1\n ]\n}',
    )
    assert choose({"text/plain": "just text"}) == ("text/plain", "just text")
    assert choose({"application/x-unknown": "?"}) is None
    # Not text where text belongs, not base64 where base64 belongs: the next type.
    assert choose({"image/png": 42, "text/plain": "fallback"}) == ("text/plain", "fallback")
    assert choose({"text/html": ["no"], "text/markdown": "*md*"}) == ("text/markdown", "*md*")
    # Whatever came, what is kept is base64 the panel encoded itself.
    mime, value = choose({"image/png": "QUJD' onerror='alert(1)"}) or ("", "")
    assert mime == "image/png"
    assert re.fullmatch(r"[A-Za-z0-9+/=]*", value)


def test_displays_are_written_with_their_extensions(tmp_path: Path) -> None:
    out = prepare_outputs_dir(tmp_path / "out")
    writer = DisplayWriter(out, "plot.py")
    bundles = [
        {"image/png": PNG, "text/plain": "<Figure>"},
        {"image/jpeg": PNG},
        {"image/svg+xml": "<svg/>", "text/plain": "<SVG>"},
        {"text/html": "<table></table>", "text/plain": "df"},
        {"text/markdown": "# title"},
        {"application/json": {"a": 1}, "text/plain": "{'a': 1}"},
        {"text/plain": "only text"},
        {"application/x-unknown": "?"},
    ]
    for bundle in bundles:
        writer.add(bundle)
    names = [Path(path).name for path in writer.written]
    assert names == [
        "plot.py-001.png",
        "plot.py-002.jpg",
        "plot.py-003.svg",
        "plot.py-004.html",
        "plot.py-005.md",
        "plot.py-006.json",
        "plot.py-007.txt",
    ]
    assert (out / "plot.py-001.png").read_bytes().startswith(b"\x89PNG")
    assert json.loads((out / "plot.py-006.json").read_text()) == {"a": 1}
    assert (out / "plot.py-007.txt").read_text() == "only text"
    assert writer.count == 8
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary left


def test_display_files_stay_in_the_folder_and_never_follow_links(tmp_path: Path) -> None:
    out = prepare_outputs_dir(tmp_path / "out")
    secret = tmp_path / "secret.txt"
    secret.write_text("keep me")
    for name in ("../../evil.py", "a b\nc.py", "..", "dockermagic.py"):
        writer = DisplayWriter(out, name)
        writer.add({"text/plain": "x"})
        (written,) = writer.written
        assert Path(written).parent == out, written
    # A link planted under the next file's name is replaced, not written through.
    writer = DisplayWriter(out, "job.py")
    os.symlink(secret, out / "job.py-001.txt")
    writer.add({"text/plain": "display"})
    assert secret.read_text() == "keep me"
    assert not (out / "job.py-001.txt").is_symlink()
    assert (out / "job.py-001.txt").read_text() == "display"


def test_a_new_run_removes_only_its_own_earlier_files(tmp_path: Path) -> None:
    out = prepare_outputs_dir(tmp_path / "out")
    for name in ("a.py-001.png", "a.py-002.txt", "a.py-3f2a9c01d4-001.png", "a.py-notes.txt"):
        (out / name).write_text("old")
    (out / "b.py-001.png").write_text("old")
    writer = DisplayWriter(out, "a.py")
    writer.add({"text/plain": "new"})
    assert sorted(p.name for p in out.iterdir()) == [
        "a.py-001.txt",
        "a.py-3f2a9c01d4-001.png",
        "a.py-notes.txt",
        "b.py-001.png",
    ]


def test_an_outputs_folder_that_cannot_be_written_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(InvalidArgumentError, match="outputs folder"):
        prepare_outputs_dir(blocker / "out")


# -- requirements ------------------------------------------------------------------


def test_discovery_notes_requirement_files_and_does_not_ignore_them(tmp_path: Path) -> None:
    for name in ("a.py", "b.js", "requirements.txt", "package.json", "notes.txt"):
        (tmp_path / name).write_text("\n")
    found = discover_scripts(tmp_path)
    assert found.ignored == ("notes.txt",)
    assert dict(found.requirement_files) == {
        "python": tmp_path / "requirements.txt",
        "javascript": tmp_path / "package.json",
    }


def test_folder_requirements_are_read_and_normalised(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("# packages\nTabulate\n\n-r other.txt\n")
    (tmp_path / "package.json").write_text(json.dumps({"dependencies": {"lodash": "^4.17.0"}}))
    files = {
        "python": tmp_path / "requirements.txt",
        "javascript": tmp_path / "package.json",
    }
    assert read_folder_requirements(tmp_path, files) == {
        "javascript": ("lodash@^4.17.0",),
        "python": ("tabulate",),
    }


def test_folder_requirements_never_block_nor_leave_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "scripts"
    folder.mkdir()
    os.mkfifo(folder / "requirements.txt")
    with pytest.raises(InvalidArgumentError, match="not a regular file"):
        read_folder_requirements(folder, {"python": folder / "requirements.txt"})
    outside = tmp_path / "elsewhere.json"
    outside.write_text("{}")
    os.symlink(outside, folder / "package.json")
    with pytest.raises(InvalidArgumentError, match="link out of"):
        read_folder_requirements(folder, {"javascript": folder / "package.json"})
    (folder / "package.json").unlink()
    (folder / "package.json").write_text("{not json")
    with pytest.raises(InvalidArgumentError, match="not JSON"):
        read_folder_requirements(folder, {"javascript": folder / "package.json"})


def test_requirements_given_by_the_caller_replace_the_folders_per_language() -> None:
    folder = {"python": ("tabulate",), "javascript": ("lodash@4",)}
    assert merge_requirements(folder, None) == folder
    assert merge_requirements(folder, {"py": ["Numpy==2.*"]}) == {
        "javascript": ("lodash@4",),
        "python": ("numpy==2.*",),
    }
    assert merge_requirements(folder, {"js": []}) == {"python": ("tabulate",)}
    with pytest.raises(InvalidArgumentError, match="language"):
        merge_requirements(folder, {"cobol": ["x"]})
    with pytest.raises(InvalidArgumentError, match="requirement"):
        merge_requirements(folder, {"python": ["--index-url=http://evil"]})


def test_requirement_items_of_the_command_line(tmp_path: Path) -> None:
    reqs = tmp_path / "reqs.txt"
    reqs.write_text("tabulate\n")
    package = tmp_path / "package.json"
    package.write_text(json.dumps({"dependencies": {"lodash": "4"}}))
    items = ["python:numpy,pandas", f"{reqs}", f"{package}", "node:left-pad@1", "py:"]
    assert parse_requirement_args(items) == {
        "python": ["numpy", "pandas", "tabulate"],
        "javascript": ["lodash@4", "left-pad@1"],
    }
    assert parse_requirement_args(["js:"]) == {"javascript": []}
    assert parse_requirement_args(["tabulate"], default_language="py") == {"python": ["tabulate"]}
    assert parse_requirement_args([f"js:{package}"]) == {"javascript": ["lodash@4"]}
    with pytest.raises(InvalidArgumentError, match="say which language"):
        parse_requirement_args(["tabulate"])
    # A script's name is not a language, even though runners claim its suffix.
    with pytest.raises(InvalidArgumentError, match="say which language"):
        parse_requirement_args(["job.py:numpy"])


def test_run_scripts_refuses_bad_requirements_and_pools_before_running(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("print(1)\n")
    logs = tmp_path / "logs"
    with pytest.raises(InvalidArgumentError, match="pool"):
        run_scripts(tmp_path, pool=-1, log_dir=logs)
    with pytest.raises(InvalidArgumentError, match="requirement"):
        run_scripts(tmp_path, requirements={"python": ["-e ."]}, log_dir=logs)
    (tmp_path / "package.json").write_text("[1, 2")
    with pytest.raises(InvalidArgumentError, match="not JSON"):
        run_scripts(tmp_path, log_dir=logs)
    assert not logs.exists()


# -- the progress model: displays and preparation ----------------------------------


def _event(kind: str, script: str = "a.py", **fields: object) -> BatchEvent:
    return BatchEvent(kind, script, "python", 0, 1, **fields)  # type: ignore[arg-type]


def test_the_model_keeps_the_last_displays_within_bounds() -> None:
    model = BatchProgress([("a.py", "python")], displays_kept=3, display_chars=100)
    model.apply(_event("prepare", "", text="building dockermagic/python-deps:1 ..."))
    assert model.preparing == "python: building dockermagic/python-deps:1 ..."
    assert list(model.scripts) == ["a.py"]  # no row for the batch itself
    model.apply(_event("start"))
    assert model.preparing == ""
    for i in range(5):
        model.apply(_event("display", data={"text/plain": f"display {i}"}))
    script = model.scripts["a.py"]
    assert script.display_count == 5
    assert [d.number for d in script.displays] == [3, 4, 5]
    assert [d.value for d in script.displays] == ["display 2", "display 3", "display 4"]
    model.apply(_event("display", data={"text/html": "x" * 150}))
    newest = script.displays[-1]
    assert (newest.number, newest.mime, newest.value, newest.size) == (6, "text/html", "", 150)
    model.apply(_event("display", data={"text/plain": "y" * 60}))
    model.apply(_event("display", data={"text/plain": "z" * 60}))
    assert sum(len(d.value) for d in script.displays) <= 100
    assert script.displays[-1].value == "z" * 60
    model.apply(_event("display", data={"application/x-unknown": "?"}))
    assert script.displays[-1].mime == ""
    done = ScriptResult(
        "a.py",
        "/a.py",
        "python",
        Status.OK,
        display_count=9,
        cpu_seconds=0.5,
        peak_memory_bytes=2**20,
    )
    model.apply(_event("finish", result=done))
    assert (script.display_count, script.cpu_seconds, script.peak_memory_bytes) == (9, 0.5, 2**20)


def test_the_panel_shows_displays_without_letting_them_into_the_page() -> None:
    model = BatchProgress([("a.py", "python")])
    hostile = "<img src=x onerror=alert(1)><script>alert(2)</script>"
    for bundle in (
        {"image/png": PNG},
        {"image/svg+xml": "<svg onload='alert(3)'/>"},
        {"text/html": hostile},
        {"text/markdown": hostile},
        {"text/plain": hostile},
    ):
        model.apply(_event("display", data=bundle))
    shown = [display_html(d) for d in model.scripts["a.py"].displays]
    assert f"src='data:image/png;base64,{PNG}'" in shown[0]
    assert "src='data:image/svg+xml;base64," in shown[1]
    assert "onload" not in shown[1]  # encoded, shown as an image: never markup of the page
    assert "<iframe class='dockermagic-display-html' sandbox=''" in shown[2]
    assert "allow-scripts" not in shown[2]
    assert "default-src &#x27;none&#x27;" in shown[2]  # no network from the frame either
    for html_text in shown[2:]:
        assert "<script" not in html_text
        assert "<img src=x" not in html_text


def test_the_summary_shows_displays_cpu_and_peak_memory() -> None:
    results = (
        ScriptResult(
            "plot.py",
            "/s/plot.py",
            "python",
            Status.OK,
            0,
            1.5,
            display_count=3,
            cpu_seconds=0.6789,
            peak_memory_bytes=65 * 2**20,
        ),
        ScriptResult(
            "broken.py",
            "/s/broken.py",
            "python",
            Status.FAILED,
            1,
            0.5,
            "ZeroDivisionError: division by zero",
            message="exited with status 1",
            displays_dropped=2,
        ),
    )
    report = BatchReport("s", "sequential", 1, "r", results)
    for width in (80, 140):
        out = io.StringIO()
        Console(file=out, width=width, color_system=None).print(summary_table(report))
        text = out.getvalue()
        assert max(len(line) for line in text.splitlines()) <= width
        for cell in ("CPU", "peak", "displays", "0.68 s", "65 MiB", "plot.py", "broken.py"):
            assert cell in text, (width, cell, text)
        assert "ZeroDivisionError: division by zero" in text
        assert "2 more display(s) dropped" in text
    data = json.loads(report.to_json())["results"]
    assert data[0]["cpu_seconds"] == 0.6789
    assert data[0]["peak_memory_bytes"] == 65 * 2**20
    assert data[1]["cpu_seconds"] is None
    assert data[0]["display_count"] == 3
    assert data[0]["outputs"] == []


# -- the command line ------------------------------------------------------------------


def test_cli_run_options_of_the_issues() -> None:
    args = build_parser().parse_args(
        ["run", "d", "--pool", "0", "--outputs", "out", "--requirements", "py:x", "js:y"]
    )
    assert (args.pool, args.outputs, args.requirements) == (0, "out", ["py:x", "js:y"])
    args = build_parser().parse_args(["run", "d"])
    assert (args.pool, args.outputs, args.requirements) == (None, None, None)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["images", "--language", "python"], "goes with --requirements"),
        (["images", "--older-than", "3"], "goes with --prune"),
        (["images", "--list", "--rebuild"], "offline base images only"),
        (["images", "--prune", "--older-than", "-1"], "0 or more"),
        (["images", "--requirements", "tabulate"], "say which language"),
        (["images", "--requirements", "py:"], "lists no package"),
        (["run", "d", "--requirements", "numpy"], "say which language"),
    ],
)
def test_cli_bad_image_and_requirement_options_are_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.py").write_text("print(1)\n")
    # No engine is needed to refuse these: point at one that cannot answer.
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    monkeypatch.setattr("dockermagic.cli.cleanup", lambda: [])
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert message in err[0]


def test_cli_images_actions_exclude_each_other() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["images", "--list", "--prune"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["images", "--offline", "--requirements", "py:x"])


def test_ages_in_words() -> None:
    assert age_text(5) == "5 s"
    assert age_text(600) == "10 min"
    assert age_text(3 * 3600) == "3 h"
    assert age_text(3 * 86400 + 10) == "3 d"


def test_the_terminal_shows_the_preparation_line() -> None:
    out = io.StringIO()
    console = Console(file=out, width=120, color_system=None)
    model = BatchProgress([("a.py", "python")])
    with ConsoleProgress(console, model) as display:  # not a terminal: one line each
        display(_event("prepare", "", text="Collecting tabulate\x1b[2J"))
        console.print(display._render())  # the live view, as drawn on a terminal
    text = out.getvalue()
    assert "preparing python: Collecting tabulate\\x1b[2J" in text
    assert text.count("preparing python: Collecting tabulate") == 2
    assert "\x1b" not in text
