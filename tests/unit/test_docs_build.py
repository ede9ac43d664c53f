"""The docs generators (docs/_gen): marker replacement, code fences left alone, figures swapped
in after rendering, and build failures on unknown markers. The full site is built by
`make docs`; these checks take well under a second."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import plotly.graph_objects as go
import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
sys.path.insert(0, str(DOCS))

from _gen import core, reference  # noqa: E402


@pytest.fixture()
def fake_facts(monkeypatch: pytest.MonkeyPatch) -> None:
    mod = types.ModuleType("_gen.fakech")
    mod.facts = lambda: {  # type: ignore[attr-defined]
        "answer": "42",
        "table": core.Table(["a", "b"], [["1", "2|3"]]),
        "fig": go.Figure(go.Scatter(x=[1, 2], y=[3, 4])),
    }
    monkeypatch.setitem(sys.modules, "_gen.fakech", mod)
    core.reset()


def test_inline_facts_and_fences(fake_facts: None) -> None:
    md = "x {{ fakech.answer }} y `{{ fakech.answer }}`\n\n```text\n{{ fakech.answer }}\n```\n"
    md += "{{fakech.table}}\n"
    out = core.render_markdown(md, "p.md")
    assert out.startswith("x 42 y `{{ fakech.answer }}`")
    assert "```text\n{{ fakech.answer }}\n```" in out  # fenced code is documentation, not a marker
    assert "| 1 | 2\\|3 |" in out  # pipes inside cells are escaped


def test_figure_placeholder_round_trip(fake_facts: None) -> None:
    out = core.render_markdown("{{ fakech.fig }}\n", "p.md")
    token = out.strip()
    html = core.insert_figures(f"<p>{token}</p>", "p.md")
    assert 'class="hwsim-figure"' in html and "Plotly.newPlot" in html
    assert token not in html


def test_unknown_markers_fail_the_build(fake_facts: None) -> None:
    with pytest.raises(core.DocsError, match="not a fact"):
        core.render_markdown("{{ fakech.nope }}", "p.md")
    with pytest.raises(core.DocsError, match="unknown generator"):
        core.render_markdown("<!-- hwsim: no-such-generator -->\n", "p.md")
    with pytest.raises(core.DocsError, match="no facts module"):
        core.render_markdown("{{ nosuchchapter.x }}", "p.md")


def test_reference_generators() -> None:
    cli = reference.cli_reference()
    assert "## `hwsim roofline`" in cli and "## `hwsim explain gemm`" in cli
    schema = reference.schema_reference("device")
    assert "`memory`" in schema and "Raw JSON schema" in schema
    out = core.render_markdown("<!-- hwsim: run devices --json -->\n", "p.md")
    assert out.startswith("```console\n$ hwsim devices --json")


def test_every_page_is_in_the_nav() -> None:
    """mkdocs.yml's nav lists every page under docs/ and no page that does not exist (the build
    fails on either, through core.check_nav and mkdocs' own nav validation)."""
    import yaml

    cfg = yaml.safe_load((DOCS.parent / "mkdocs.yml").read_text(encoding="utf-8"))
    listed = core.nav_pages(cfg["nav"])
    pages = set(core.docs_pages())
    assert pages - listed == set(), "pages missing from the nav"
    assert listed - pages == set(), "nav entries without a page"
    core.check_nav(cfg)  # passes on the real nav
    with pytest.raises(core.DocsError, match="missing from the nav"):
        core.check_nav({"nav": [{"Home": "index.md"}]})


@pytest.mark.parametrize("module", ["calib", "rl", "sweepdoc"])
def test_page_facts_resolve(module: str) -> None:
    """Every ``{{ module.key }}`` a page asks for is a fact the module computes (the fast facts
    modules; the others are covered by `make docs`, which fails on a missing fact)."""
    import re

    wanted = set()
    for page in DOCS.rglob("*.md"):
        text = page.read_text(encoding="utf-8")
        wanted |= {k for m, k in re.findall(r"\{\{\s*(\w+)\.(\w+)\s*\}\}", text) if m == module}
    assert wanted, f"no page uses {module}"
    core.reset()
    values = core.facts(module)
    assert wanted <= set(values), sorted(wanted - set(values))
    for key in wanted:  # every fact renders to non-empty Markdown
        assert core.render_value(values[key], key).strip(), key
