"""The scripts panel driven through its widget models, against the real engine."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from dockermagic.panel import OUTPUT_CHARS, ScriptsPanel
from tests.support import loaded_shell


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "a_ok.py").write_text("print('alpha')\n")
    (scripts / "b_fail.py").write_text("import sys\nprint('bad', file=sys.stderr)\nsys.exit(2)\n")
    (scripts / "c_ok.js").write_text("console.log('gamma');\n")
    (scripts / "notes.txt").write_text("not a script")
    return scripts


def status_of(panel: ScriptsPanel, name: str) -> str:
    return panel._status_cells[name].value


def wait_for(predicate: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_run_button_runs_the_checked_scripts(folder: Path, tmp_path: Path) -> None:
    panel = ScriptsPanel(folder, log_dir=tmp_path / "logs", mode="sequential")
    assert list(panel.selected.options) == ["a_ok.py", "b_fail.py", "c_ok.js"]
    assert "1 other file(s) ignored" in panel.title.value
    started = time.monotonic()
    panel.run_button.click()
    # The click returns at once: the batch runs in a background thread.
    assert time.monotonic() - started < 1
    assert panel.run_button.disabled
    assert not panel.cancel_button.disabled
    report = panel.wait(60)
    assert report is not None
    assert "dockermagic-status-ok" in status_of(panel, "a_ok.py")
    assert "dockermagic-status-failed" in status_of(panel, "b_fail.py")
    assert "dockermagic-status-ok" in status_of(panel, "c_ok.js")
    assert not panel.run_button.disabled
    assert panel.cancel_button.disabled
    assert panel.progress.value == panel.progress.max == 3
    assert panel.progress.bar_style == "danger"
    assert "3/3 done" in panel.counts.value
    panel.selected.value = "b_fail.py"
    assert "bad" in panel.stderr_view.value
    assert "b_fail.py.log" in panel.log_path.value
    panel.selected.value = "c_ok.js"
    assert "gamma" in panel.stdout_view.value
    # Logged exactly as the CLI logs: a file per script and a line in the app log.
    assert "alpha" in (tmp_path / "logs" / "a_ok.py.log").read_text()
    app_log = (tmp_path / "logs" / "dockermagic.log").read_text()
    assert "b_fail.py" in app_log
    assert "status=failed" in app_log
    text = repr(panel)
    assert "b_fail.py" in text
    assert "failed" in text


def test_a_name_shows_its_output_and_the_view_stays_on_the_users_choice(tmp_path: Path) -> None:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "a_slow.py").write_text("import time\nprint('slow', flush=True)\ntime.sleep(2)\n")
    (scripts / "b_fail.py").write_text("raise SystemExit('broken')\n")
    (scripts / "c_ok.py").write_text("import time\ntime.sleep(1)\nprint('gamma')\n")
    panel = ScriptsPanel(scripts, log_dir=tmp_path / "logs", mode="sequential")
    panel.run()
    wait_for(lambda: "running" in status_of(panel, "a_slow.py"))
    assert panel.selected.value == "a_slow.py"  # it follows the running script
    # Mid-run the bar is neutral, even when a script already failed.
    wait_for(lambda: "failed" in status_of(panel, "b_fail.py"))
    assert panel.progress.bar_style == ""
    # Clicking a name shows that script; the checkbox is the checkbox's alone.
    panel._name_buttons["a_slow.py"].click()
    assert panel.selected.value == "a_slow.py"
    assert panel._checkboxes["a_slow.py"].value is True
    wait_for(lambda: "running" in status_of(panel, "c_ok.py"))
    assert panel.selected.value == "a_slow.py"  # no jump to the running script
    panel.wait(60)
    assert panel.selected.value == "a_slow.py"  # picked during the run: it stays
    assert panel.progress.bar_style == "danger"

    # A run with failures and no pick during it ends on the first failure.
    panel.run()
    panel.wait(60)
    assert panel.selected.value == "b_fail.py"
    assert "broken" in panel.stderr_view.value
    assert "b_fail.py" in panel.log_path.value


def test_a_clean_run_ends_green(folder: Path, tmp_path: Path) -> None:
    panel = ScriptsPanel(folder, log_dir=tmp_path / "logs", mode="parallel", workers=2)
    panel._checkboxes["b_fail.py"].value = False
    assert panel.progress.bar_style == ""
    panel.run()
    panel.wait(60)
    assert panel.progress.bar_style == "success"


def test_unchecked_scripts_do_not_run(folder: Path, tmp_path: Path) -> None:
    panel = ScriptsPanel(folder, log_dir=tmp_path / "logs", mode="parallel", workers=2)
    panel._checkboxes["b_fail.py"].value = False
    panel.run()
    report = panel.wait(60)
    assert report is not None
    assert [r.name for r in report.results] == ["a_ok.py", "c_ok.js"]
    assert status_of(panel, "b_fail.py") == ""


def test_output_is_live_and_bounded(tmp_path: Path) -> None:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "flood.py").write_text(
        "import time\nprint('first', flush=True)\ntime.sleep(1.5)\n"
        "for i in range(5000):\n    print(f'{i:09d}' * 5)\n"
    )
    panel = ScriptsPanel(scripts, log_dir=tmp_path / "logs", mode="sequential")
    panel.run()
    wait_for(lambda: "first" in panel.stdout_view.value)
    assert panel.running  # shown while the script still runs
    panel.wait(60)
    assert panel.batch_progress is not None
    state = panel.batch_progress.scripts["flood.py"]
    assert len(state.stdout) == OUTPUT_CHARS
    assert state.dropped["stdout"] > 0
    assert "earlier characters are in the log file" in panel.stdout_view.value
    assert state.stdout.endswith(f"{4999:09d}" * 5 + "\n")


def test_cancel_stops_the_batch_and_leaves_no_container(tmp_path: Path) -> None:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    for name in ("a.py", "b.py", "c.py"):
        (scripts / name).write_text("import time\nprint('sleeping', flush=True)\ntime.sleep(60)\n")
    panel = ScriptsPanel(scripts, log_dir=tmp_path / "logs", mode="parallel", workers=2)
    panel.run()
    wait_for(lambda: "running" in status_of(panel, "a.py"))
    started = time.monotonic()
    panel.cancel_button.click()
    report = panel.wait(30)
    assert time.monotonic() - started < 10
    assert report is not None
    assert report.cancelled
    for name in ("a.py", "b.py", "c.py"):
        assert "dockermagic-status-cancelled" in status_of(panel, name)
    # the autouse fixture asserts that no container is left


def test_refresh_picks_up_a_new_script(folder: Path, tmp_path: Path) -> None:
    panel = ScriptsPanel(folder, log_dir=tmp_path / "logs")
    panel._checkboxes["a_ok.py"].value = False
    (folder / "d_new.py").write_text("print('new')\n")
    panel.refresh_button.click()
    assert "d_new.py" in panel.selected.options
    assert "d_new.py" in panel._checkboxes
    assert panel._checkboxes["a_ok.py"].value is False  # choices survive a refresh


def test_a_missing_folder_is_shown_not_raised(tmp_path: Path) -> None:
    panel = ScriptsPanel(tmp_path / "nowhere", log_dir=tmp_path / "logs")
    assert "no such folder" in panel.message.value
    panel.run()
    assert "Tick at least one script" in panel.message.value
    assert "no such folder" in repr(panel) or "Tick" in repr(panel)


def test_docker_panel_magic_in_a_real_shell(folder: Path, tmp_path: Path) -> None:
    with loaded_shell(tmp_path / "magic-logs") as shell:
        panel = shell.run_line_magic("docker_panel", f"{folder} --sequential")
        assert isinstance(panel, ScriptsPanel)
        assert panel.mode.value == "sequential"
        assert panel.log_dir == tmp_path / "magic-logs"
        panel.run()
        report = panel.wait(60)
        assert report is not None
        assert report.totals["ok"] == 2
        assert (tmp_path / "magic-logs" / "c_ok.js.log").exists()
