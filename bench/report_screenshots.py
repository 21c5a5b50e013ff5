"""Screenshots of the Snakemake HTML report in a real headless browser (Chromium), one per view.

The report is a single-page app: its landing page is the workflow description (report/workflow.rst,
and its links to the numbers) beside the DAG, and each category or result opens on a click. Headless
Chromium takes no input, so each view is a copy of the report with a one-line script appended that
clicks the landing page's link (or opens the category, ``app.showCategory``) once the app has started,
and Chromium screenshots that copy. Look at the PNGs: the landing page, the headline and every table
of the summary rendered inside the report, the frontier figure, the failure examples, and the entries
of the Trade-off category in their order.

    snakemake --report results/report.html
    python bench/report_screenshots.py results/report.html results/report-screenshots/

Exits 0 with "skipped" when no Chromium is installed (``apt-get install chromium`` on Debian).
:func:`view_dom` returns a view's DOM after its scripts ran: the workflow test reads which result
each landing-page link opened.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# view -> the JavaScript that opens it (None: the landing page as it opens). `results` and `app` are the
# report's own globals: results maps each result's path to its entry (data_uri, ...).
# The landing page's links ("The numbers: the headline table, ...", report/workflow.rst) are clicked as a
# reader would; a category is opened by the report's own handler, as a click on it under Results.
VIEWS = {
    "landing": None,
    "headline": 'click("headline table")',
    "summary": 'click("every table")',
    "frontier": 'click("frontier figure")',
    "failure_examples": 'click("failure examples")',
    "tradeoff_category": 'app.showCategory("3. Trade-off")',
}
CLICK = (
    "function click(text) {"
    " Array.from(document.querySelectorAll('a')).find(function (a) { return a.textContent === text; }).click(); }"
)


def find_browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def _browser_args(browser: str, width: int, height: int) -> list[str]:
    return [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
        f"--window-size={width},{height}", "--virtual-time-budget=8000",
    ]  # fmt: skip


def view_copy(report: Path, name: str, script: str | None, folder: Path) -> Path:
    """A copy of ``report`` that opens the view ``script`` opens, once the app has started."""
    html = report.read_text()
    if script:
        hook = f"<script>{CLICK} setTimeout(function () {{ {script}; }}, 500);</script>"
        position = html.rindex("</body>")
        html = html[:position] + hook + html[position:]
    copy = folder / f"{report.stem}-{name}.html"
    copy.write_text(html)
    return copy


def screenshot(browser: str, page: Path, png: Path, width: int = 1600, height: int = 1000) -> None:
    cmd = [*_browser_args(browser, width, height), f"--screenshot={png}", page.resolve().as_uri()]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    if not png.is_file() or png.stat().st_size == 0:
        raise RuntimeError(f"{browser} wrote no screenshot {png}")


def view_dom(browser: str, report: Path, view: str) -> str:
    """The DOM of one view of :data:`VIEWS` after its scripts ran (``--dump-dom``): the shown result is the
    ``src`` of the content frame (an HTML result) or image, as a data: URL."""
    with tempfile.TemporaryDirectory() as scratch:
        page = view_copy(report, view, VIEWS[view], Path(scratch))
        cmd = [*_browser_args(browser, 1600, 1000), "--dump-dom", page.resolve().as_uri()]
        return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120).stdout


def screenshots(report: Path, out_dir: Path, browser: str) -> dict[str, Path]:
    """One PNG per view of :data:`VIEWS` in ``out_dir``, named after the view."""
    out_dir.mkdir(parents=True, exist_ok=True)
    taken = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name, script in VIEWS.items():
            png = out_dir / f"{name}.png"
            screenshot(browser, view_copy(report, name, script, Path(scratch)), png)
            taken[name] = png
    return taken


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", type=Path, help="the report of `snakemake --report`, e.g. results/report.html")
    parser.add_argument("out_dir", type=Path, help="folder for the PNGs")
    args = parser.parse_args(argv)
    browser = find_browser()
    if browser is None:
        print(f"skipped: no browser found ({', '.join(BROWSERS)}); on Debian: apt-get install chromium")
        return 0
    taken = screenshots(args.report, args.out_dir, browser)
    print(json.dumps({name: str(path) for name, path in taken.items()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
