"""Open a report in headless Chromium and check that every plotly figure rendered and the page
logged no JavaScript error. Used by the test suite when Chromium is installed and by hand::

    python -m hwsim.report.browser_check out/report.html [--screenshot out/report.png]

Chromium runs with ``--no-sandbox --disable-gpu --disable-background-networking`` and a virtual
time budget, so the check is offline and deterministic; the page is self-contained (plotly
inlined), so nothing is fetched.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")
_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)


def find_chromium() -> str | None:
    """Path of a Chromium-compatible browser, or None."""
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


@dataclass(frozen=True)
class BrowserCheck:
    figures: int  #: figure divs in the page
    rendered: int  #: of those, rendered by plotly
    errors: tuple[str, ...]  #: console errors and uncaught exceptions

    @property
    def ok(self) -> bool:
        return self.figures == self.rendered and not self.errors


def check_page(page: Path, screenshot: Path | None = None, timeout_s: float = 180) -> BrowserCheck:
    """Render ``page`` in headless Chromium (see the module docstring)."""
    exe = find_chromium()
    if exe is None:
        raise FileNotFoundError("no Chromium found (apt-get install chromium)")
    url = page.resolve().as_uri()
    run = subprocess.run(
        [exe, *_FLAGS, "--virtual-time-budget=20000", "--enable-logging=stderr", "--v=1",
         "--dump-dom", url],
        capture_output=True, text=True, timeout=timeout_s, check=False,
    )  # fmt: skip
    dom, log = run.stdout, run.stderr
    divs = re.findall(r'<div id="fig-[^"]+"[^>]*class="([^"]*)"', dom)
    rendered = sum("js-plotly-plot" in c for c in divs)
    errors = tuple(
        line.strip()
        for line in log.splitlines()
        if ("CONSOLE" in line and ("Error" in line or "error" in line)) or "Uncaught" in line
    )
    if screenshot is not None:
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [exe, *_FLAGS, "--window-size=1300,1600", "--virtual-time-budget=20000",
             f"--screenshot={screenshot.resolve()}", url],
            capture_output=True, timeout=timeout_s, check=False,
        )  # fmt: skip
    return BrowserCheck(len(divs), rendered, errors)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("page", type=Path)
    p.add_argument("--screenshot", type=Path)
    a = p.parse_args(argv)
    r = check_page(a.page, a.screenshot)
    print(f"{r.rendered}/{r.figures} figures rendered, {len(r.errors)} console errors")
    for e in r.errors:
        print("  ", e)
    return 0 if r.ok else 1


if __name__ == "__main__":
    sys.exit(main())
