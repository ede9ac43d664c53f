"""``hwsim app`` in a real headless Chromium (Playwright driving the system browser at
``/usr/bin/chromium``; nothing is downloaded). The app runs in a subprocess as ``hwsim app``.

Each page loads with no JavaScript error; changing a control updates the figure or table to
the value the CLI gives for the same inputs (the page's own "copy as command" box, run
in-process through typer's CliRunner); a bad value shows the CLI's one-line message and the
app keeps answering. Skipped, not failed, without Chromium or Playwright.

Screenshots: with ``HWSIM_DOCS_SCREENSHOTS=1`` the run writes ``docs/images/app-*.png`` for
``docs/app.md``; otherwise it takes none (a full-page screenshot costs about a second, and
``make test`` leaves the work tree alone).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from hwsim.app.commands import command_lines
from hwsim.cli import guard
from hwsim.cli.app import app as cli_app
from hwsim.report.browser_check import find_chromium

sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright not installed")
CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed")

ROOT = Path(__file__).resolve().parents[2]
#: Chromium's flags on this offline machine (no background connections, no sandbox as root)
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-quic"]  # fmt: skip
PAGES = {"device": "dev", "model": "step", "attention": "attn", "serving": "srv", "moe": "moe"}
runner = CliRunner()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    log = (tmp_path_factory.mktemp("app") / "app.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hwsim.cli.app", "app", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "/_dash-layout", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"hwsim app did not start: {Path(log.name).read_text()[-2000:]}")
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


class Page:
    """A browser tab on the app that records console errors and uncaught exceptions."""

    def __init__(self, browser: Any, base_url: str) -> None:
        self.tab = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        self.base = base_url
        self.errors: list[str] = []
        self.tab.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.tab.on("pageerror", lambda e: self.errors.append(str(e)))

    def open(self, name: str) -> str:
        """Open a page and wait until its first result is in; return its id prefix."""
        self.tab.goto(f"{self.base}/{name}")
        pre = PAGES[name]
        self.wait_computed(pre)
        return pre

    def wait_computed(self, pre: str, timeout_ms: int = 60_000) -> None:
        self.tab.wait_for_function(
            f"() => (document.querySelector('#{pre}-status')?.innerText || '')"
            ".startsWith('computed')",
            timeout=timeout_ms,
        )

    def value(self, element_id: str) -> float:
        return float(self.tab.get_attribute(f"#{element_id}", "data-value"))

    def wait_value_change(self, element_id: str, old: float) -> float:
        self.tab.wait_for_function(
            f"() => {{ const e = document.getElementById('{element_id}'); "
            f"return e && parseFloat(e.dataset.value) !== {old!r}; }}",
            timeout=30_000,
        )
        return self.value(element_id)

    def enter(self, element_id: str, text: str) -> None:
        """Type into a box and press Enter (the boxes answer on Enter or blur)."""
        box = self.tab.locator(f"#{element_id}")
        box.fill(text)
        box.press("Enter")

    def command(self, pre: str) -> list[list[str]]:
        return command_lines(self.tab.inner_text(f"#{pre}-command"))

    def screenshot(self, name: str) -> None:
        if not os.environ.get("HWSIM_DOCS_SCREENSHOTS"):
            return
        path = ROOT / "docs" / "images" / f"app-{name}.png"
        self.tab.evaluate(
            "() => document.querySelectorAll('.status').forEach(e => e.innerText = '')"
        )
        self.tab.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 10_000


@pytest.fixture
def page(browser: Any, base_url: str) -> Iterator[Page]:
    pg = Page(browser, base_url)
    yield pg
    pg.tab.close()
    assert not pg.errors, pg.errors  # no page logs a JavaScript error


def _cli(args: list[str]) -> dict[str, Any]:
    res = runner.invoke(cli_app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    out: dict[str, Any] = json.loads(res.stdout)
    return out


def _cli_error(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert guard.run(cli_app, args) == 2
    return " ".join(capsys.readouterr().err.split()).removeprefix("error: ")


@pytest.mark.parametrize("name", list(PAGES))
def test_every_page_loads(page: Page, name: str) -> None:
    pre = page.open(name)
    assert page.tab.inner_text(f"#{pre}-command").startswith("hwsim ")
    assert page.tab.locator(".js-plotly-plot").count() >= 1
    assert page.tab.inner_text(f"#{pre}-error") == ""
    page.screenshot(name)


def test_device_slider_moves_the_roofline_to_the_clis_numbers(
    page: Page, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    page.open("device")
    rail = page.tab.locator("#dev-s-bw .dash-slider-root").bounding_box()
    t0 = time.perf_counter()
    # three quarters along the ×¼ … ×4 rail: ×2 on the main memory's bandwidth
    page.tab.mouse.click(rail["x"] + 0.75 * rail["width"], rail["y"] + rail["height"] / 2)
    page.tab.wait_for_selector("#dev-new-box:not([style*='none']) .js-plotly-plot")
    page.wait_computed("dev")
    print(f"slider to new roofline: {time.perf_counter() - t0:.2f} s")
    assert page.tab.input_value("#dev-overrides") == "memory.hbm.bandwidth=x2"
    ys = page.tab.evaluate(
        "() => document.querySelector('#dev-graph-new .js-plotly-plot').data"
        ".filter(t => (t.name || '').startsWith('attn decode')).map(t => t.y[0])"
    )
    with page.tab.expect_download() as dl:
        page.tab.click("#dev-yaml-btn")
    monkeypatch.chdir(tmp_path)
    dl.value.save_as(tmp_path / dl.value.suggested_filename)
    assert dl.value.suggested_filename == "h100-sxm-whatif.yaml"
    assert guard.run(cli_app, ["show", dl.value.suggested_filename]) == 0
    (args,) = page.command("dev")
    results = _cli(args)["results"]
    whatif = [r for r in results if r["device"] == "h100-sxm-whatif.yaml"]
    decode = next(r for r in whatif if r["kernel"].startswith("attn decode"))
    assert ys == [pytest.approx(decode["attainable_flops"], rel=1e-9)]
    page.screenshot("device-whatif")


def test_model_step_batch_change_gives_the_clis_numbers(page: Page) -> None:
    page.open("model")
    cell = "step-tokens_per_s_total-base"
    old = page.value(cell)
    t0 = time.perf_counter()
    page.enter("step-batch", "8")
    new = page.wait_value_change(cell, old)
    print(f"batch 1 -> 8, new step: {time.perf_counter() - t0:.2f} s")
    (args,) = page.command("step")
    assert args[args.index("--batch") + 1] == "8"
    assert _cli(args)["tokens_per_s_total"] == pytest.approx(new, rel=1e-12)
    page.tab.click("#step-whatif input")  # the what-if: hwsim whatif with the same step
    page.tab.wait_for_selector("#step-tokens_per_s_total-new")
    page.wait_computed("step")
    (wargs,) = page.command("step")
    assert wargs[0] == "whatif"
    got = _cli(wargs)["deltas"]["tokens_per_s_total"]["whatif"]
    assert got == pytest.approx(page.value("step-tokens_per_s_total-new"), rel=1e-12)
    page.screenshot("model-whatif")


def test_bad_values_show_the_clis_message(page: Page, capsys: pytest.CaptureFixture[str]) -> None:
    page.open("model")
    page.enter("step-layout", "tp=3x")
    page.tab.wait_for_function("() => document.querySelector('#step-error').innerText.length > 0")
    want = _cli_error(["decode", "--model", "llama-3.1-70b", "--device", "h100-sxm",
                       "--layout", "tp=3x"], capsys)  # fmt: skip
    assert page.tab.inner_text("#step-error") == want
    page.enter("step-layout", "tp=4")  # the app keeps running
    page.tab.wait_for_function("() => document.querySelector('#step-error').innerText === ''")
    page.wait_computed("step")
    page.open("device")
    page.enter("dev-overrides", "memory.hbm.bandwidth=3 TB/z")
    page.tab.wait_for_function(
        "() => document.querySelector('#dev-overrides-error').innerText.length > 0"
    )
    want = _cli_error(["whatif", "--device", "h100-sxm", "--set", "memory.hbm.bandwidth=3 TB/z",
                       "--", "decode", "--model", "llama-3.1-8b"], capsys)  # fmt: skip
    assert page.tab.inner_text("#dev-overrides-error") == want


def test_attention_change_gives_the_clis_time(page: Page) -> None:
    page.open("attention")
    old = page.value("attn-time_s-base")
    page.enter("attn-seqlen", "2048")
    new = page.wait_value_change("attn-time_s-base", old)
    first, compare = page.command("attn")  # the chosen kernel, then the comparison
    assert _cli(first)["time_s"] == pytest.approx(new, rel=1e-12)
    assert _cli(compare)["time_s"] == pytest.approx(page.value("attn-compare"), rel=1e-12)


def test_moe_whatif_shows_both_clusters(
    page: Page, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    page.open("moe")
    page.tab.click("#moe-whatif input")
    page.tab.wait_for_selector("#moe-time_s-new")
    page.wait_computed("moe")
    with page.tab.expect_download() as dl:
        page.tab.click("#moe-yaml-btn")
    monkeypatch.chdir(tmp_path)
    dl.value.save_as(tmp_path / dl.value.suggested_filename)
    base, new = page.command("moe")
    assert _cli(base)["time_s"] == pytest.approx(page.value("moe-time_s-base"), rel=1e-12)
    assert _cli(new)["time_s"] == pytest.approx(page.value("moe-time_s-new"), rel=1e-12)
