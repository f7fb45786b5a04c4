"""Issue 12 in the batch runner: scripts' displays come back, become files, show in the panel."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dockermagic import BatchEvent, run_scripts
from dockermagic.cli import main
from dockermagic.panel import ScriptsPanel

PLOT = """\
import matplotlib
import matplotlib.pyplot as plt
print("before the plot")
plt.plot([1, 3, 2])
plt.show()
display_html("<table><tr><td>a table</td></tr></table>")
display_svg('<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"></svg>')
display_markdown("# a title")
display_json({"answer": 42})
display(3)
print("after the plot")
"""

SHOW_JS = """\
display.html("<i>from node</i>");
display.png(Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]));
console.log("shown");
"""

PLOT_EXTENSIONS = ["png", "html", "svg", "md", "json", "txt"]


def make_folder(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "plot.py").write_text(PLOT)
    (root / "show.js").write_text(SHOW_JS)
    (root / "quiet.py").write_text("print('nothing to show')\n")
    return root


@pytest.mark.parametrize("mode", ["sequential", "parallel"])
def test_displays_become_files_with_their_extensions(tmp_path: Path, mode: str) -> None:
    folder = make_folder(tmp_path / "scripts")
    out = tmp_path / "out"
    events: list[BatchEvent] = []
    report = run_scripts(
        folder,
        mode=mode,  # type: ignore[arg-type]
        workers=2,
        timeout=30,
        outputs_dir=out,
        on_event=events.append,
    )
    assert report.ok, [(r.name, r.message, r.output_tail) for r in report.results]
    assert report.outputs_dir == str(out)
    results = report.by_name()
    plot = results["plot.py"]
    assert plot.display_count == 6
    assert plot.displays_dropped == 0
    assert [Path(p).name for p in plot.outputs] == [
        f"plot.py-{i:03d}.{ext}" for i, ext in enumerate(PLOT_EXTENSIONS, 1)
    ]
    assert (out / "plot.py-001.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert "a table" in (out / "plot.py-002.html").read_text()
    assert (out / "plot.py-003.svg").read_text().startswith("<svg")
    assert (out / "plot.py-004.md").read_text() == "# a title"
    assert json.loads((out / "plot.py-005.json").read_text()) == {"answer": 42}
    assert (out / "plot.py-006.txt").read_text() == "3"
    assert [Path(p).name for p in results["show.js"].outputs] == [
        "show.js-001.html",
        "show.js-002.png",
    ]
    assert results["quiet.py"].outputs == ()
    assert results["quiet.py"].display_count == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        Path(p).name for r in report.results for p in r.outputs
    )
    # The displays travelled to the caller as events, in order with the output.
    plot_events = [e for e in events if e.script == "plot.py" and e.kind in ("output", "display")]
    kinds = [e.kind for e in plot_events]
    assert kinds[0] == "output"
    assert kinds.count("display") == 6
    assert kinds.index("display") < len(kinds) - 1  # "after the plot" comes last
    first = next(e for e in plot_events if e.kind == "display")
    assert first.data is not None
    assert "image/png" in first.data


def test_the_cli_writes_displays_and_lists_them_in_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = make_folder(tmp_path / "scripts")
    out = tmp_path / "out"
    report_file = tmp_path / "report.json"
    argv = ["run", str(folder), "--outputs", str(out), "--logs", str(tmp_path / "logs")]
    assert main([*argv, "--parallel", "2", "--json", str(report_file)]) == 0
    text = capsys.readouterr().out
    assert "displays" in text
    assert f"displays: 8 file(s) in {out}" in text
    report = json.loads(report_file.read_text())
    assert report["outputs_dir"] == str(out)
    listed = {r["name"]: [Path(p).name for p in r["outputs"]] for r in report["results"]}
    assert listed == {
        "plot.py": [f"plot.py-{i:03d}.{ext}" for i, ext in enumerate(PLOT_EXTENSIONS, 1)],
        "quiet.py": [],
        "show.js": ["show.js-001.html", "show.js-002.png"],
    }
    assert {r["name"]: r["display_count"] for r in report["results"]} == {
        "plot.py": 6,
        "quiet.py": 0,
        "show.js": 2,
    }
    for result in report["results"]:
        for path in result["outputs"]:
            assert Path(path).is_file()


def test_the_panel_shows_the_selected_scripts_plot(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "scripts")
    panel = ScriptsPanel(folder, log_dir=tmp_path / "logs", mode="sequential")
    panel.selected.value = "plot.py"
    panel.run()
    report = panel.wait(90)
    assert report is not None
    assert report.ok
    panel.selected.value = "plot.py"
    shown = panel.displays_view.value
    assert "<img class='dockermagic-display-image' src='data:image/png;base64,iVBOR" in shown
    assert "<iframe class='dockermagic-display-html' sandbox=''" in shown
    assert "a table" in shown  # inside the frame's escaped document
    assert "<table>" not in shown  # never as markup of the page
    assert "(6)" in panel.displays_title.value
    usage = panel._usage_cells["plot.py"].value
    assert "cpu " in usage
    assert "MiB" in usage
    assert "6 display(s)" in usage
    panel.selected.value = "quiet.py"
    assert "<img" not in panel.displays_view.value
