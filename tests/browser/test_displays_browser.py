"""End to end: a plot and a table made in a container show in JupyterLab, in a real Chromium."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tests.browser.conftest import Lab

SCREENSHOT_DIR = Path(os.environ.get("DOCKERMAGIC_SCREENSHOTS", "build/screenshots"))

CELLS = [
    "%load_ext dockermagic",
    "%%docker_python\n"
    "import matplotlib.pyplot as plt\n"
    "workers = [1, 2, 4, 8]\n"
    "print('drawn in a container:')\n"
    "plt.figure(figsize=(5, 3))\n"
    "plt.plot(workers, [1.0, 1.9, 2.0, 2.0], marker='o')\n"
    "plt.xlabel('workers'); plt.ylabel('speed-up'); plt.title('2 cores')\n"
    "plt.show()\n"
    "print('and a table:')\n"
    "import pandas as pd\n"
    "pd.DataFrame({'workers': workers, 'seconds': [8.0, 4.2, 4.0, 4.0]})",
]


def write_notebook(path: Path) -> None:
    notebook = {
        "cells": [
            {
                "cell_type": "code",
                "execution_count": None,
                "id": f"cell{i}",
                "metadata": {},
                "outputs": [],
                "source": source,
            }
            for i, source in enumerate(CELLS)
        ],
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.write_text(json.dumps(notebook))


def test_a_container_plot_shows_in_jupyterlab(lab: Lab, browser_page: Any) -> None:
    page = browser_page
    write_notebook(lab.root / "plot.ipynb")
    page.goto(lab.page_url("plot.ipynb"))
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=60_000)
    page.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=60_000)
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_text("Run All Cells", exact=True).click()
    try:
        output = page.locator(".jp-Cell").nth(1).locator(".jp-OutputArea")
        image = output.locator("img")
        image.wait_for(timeout=120_000)
        output.locator("table").wait_for(timeout=30_000)
        # The image decoded and has the figure's size (500x300 at 100 dpi, trimmed).
        width = page.evaluate("(img) => img.naturalWidth", image.element_handle())
        assert width > 300
        texts = output.inner_text()
        assert texts.index("drawn in a container:") < texts.index("and a table:")
        # In order: text, the image, text, the table.
        kinds = page.evaluate(
            """(area) => Array.from(area.querySelectorAll('.jp-OutputArea-output')).map(
                (node) => node.querySelector('img') ? 'image'
                    : node.querySelector('table') ? 'table' : 'text')""",
            output.element_handle(),
        )
        assert kinds == ["text", "image", "text", "table"], kinds
    finally:
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        page.locator(".jp-Cell").nth(1).screenshot(path=str(SCREENSHOT_DIR / "plot.png"))
