"""The Dash app without a browser: it builds, serves its layout and callbacks, and each page's
default view computes and renders to JSON that Dash can send. (The browser tests drive the
same pages in Chromium where it is installed.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from plotly.utils import PlotlyJSONEncoder

from hwsim.app.context import AppContext
from hwsim.app.params import WhatIf
from hwsim.app.server import create_app
from hwsim.app.specs import Uploads
from hwsim.app.widgets import register_page


@pytest.fixture(scope="module")
def app_ctx(tmp_path_factory: pytest.TempPathFactory) -> AppContext:
    return AppContext(uploads=Uploads(tmp_path_factory.mktemp("app")))


def test_app_serves_its_pages_and_callbacks(app_ctx: AppContext) -> None:
    client = create_app(app_ctx).server.test_client()
    assert client.get("/").status_code == 200
    deps = json.loads(client.get("/_dash-dependencies").data)
    outputs = " ".join(d["output"] for d in deps)
    for pre in ("dev", "step", "attn", "srv", "moe"):
        assert f"{pre}-command.children" in outputs, pre
        assert f"{pre}-yaml.data" in outputs, pre


class _Recorder:
    """Stands in for Dash: keeps the Page that each page module registers."""

    def __init__(self) -> None:
        self.pages: list[Any] = []

    def callback(self, *_a: Any, **_k: Any) -> Any:
        return lambda fn: fn


def _pages(app_ctx: AppContext, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    from hwsim.app import pages as pkg

    rec = _Recorder()
    found: dict[str, Any] = {}

    def keep(_app: Any, _jobs: Any, page: Any) -> None:
        found[page.prefix] = page
        register_page(rec, _jobs, page)  # type: ignore[arg-type]

    for _, _, mod in pkg.PAGES:
        monkeypatch.setattr(mod, "register_page", keep)
        mod.register(rec, app_ctx)  # type: ignore[arg-type]
    return found


DEFAULT_CONTROLS: dict[str, list[Any]] = {
    "dev": ["h100-sxm", "bf16", ["gemm-512", "attn-decode"]],
    "step": ["llama-3.1-8b", "h100-sxm", "decode", "tp=1", 1, 2048, "bf16", "bf16"],
    "attn": ["h100-sxm", "fa3", "fwd", "fp16", 1, 8, 8, 1024, 128, ["on"]],
    "srv": ["llama-3.1-8b", "h100-sxm", "tp=1", "sharegpt", 2.0, 30, 0],
    "moe": ["h800-deepseek", 16, 256, 7168, 256, 8, 4, "dispatch", "normal", "deepep"],
}
EDITS = {"moe": "nics.bandwidth=x2", "attn": "memory.smem.capacity=x2"}


@pytest.mark.parametrize("pre", list(DEFAULT_CONTROLS))
def test_each_page_computes_and_renders(
    pre: str, app_ctx: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = _pages(app_ctx, monkeypatch)[pre]
    w = WhatIf(True, (EDITS.get(pre, "memory.hbm.bandwidth=x2"),))
    page.check_whatif(page.make_params(*DEFAULT_CONTROLS[pre], w))
    # a serving what-if builds a second step-time model (seconds): test_app_commands runs one
    params = page.make_params(*DEFAULT_CONTROLS[pre], w if pre != "srv" else WhatIf())
    view = page.compute(params, lambda _msg: None)
    out = page.render(view, params)
    assert len(out) == len(page.outputs)
    text = json.dumps(out, cls=PlotlyJSONEncoder)  # what Dash sends to the browser
    assert f"{pre}-" in text or pre == "dev"
    body, name = page.download(page.make_params(*DEFAULT_CONTROLS[pre], w))
    assert name.endswith("-whatif.yaml") and "override" in body
    assert page.command(params).count("hwsim ") >= 1


def test_bad_edit_and_bad_box_are_messages(
    app_ctx: AppContext, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    page = _pages(app_ctx, monkeypatch)["step"]
    with pytest.raises(Exception, match="expected a whole number"):
        page.make_params("llama-3.1-8b", "h100-sxm", "decode", "", None, 2048, "bf16", "bf16",
                         WhatIf())  # fmt: skip
    bad = page.make_params(*DEFAULT_CONTROLS["step"], WhatIf(True, ("memory.hbm.bandwith=x2",)))
    with pytest.raises(Exception, match="did you mean"):
        page.check_whatif(bad)
