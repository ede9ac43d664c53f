"""mkdocs hooks: every number, table and figure on the site is computed by hwsim during the build.

Pages carry two kinds of markers, both replaced before the Markdown is rendered (code fences are
left alone):

* ``{{ chapter.name }}`` inline: a value computed by ``docs/_gen/<chapter>.py``'s ``facts()``
  (a formatted number, a Markdown table, or a plotly figure);
* ``<!-- hwsim: GENERATOR args -->`` on its own line: a block generator of
  ``docs/_gen/core.py`` (``run``: a hwsim command's console output, ``cli-reference``,
  ``schema``, ``validate``, ``check``, ...).

Figures become placeholders in the Markdown and are swapped for plotly ``<div>`` s in the rendered
HTML, so the Markdown parser never sees their JavaScript. Plotly's own JavaScript is copied from
the installed plotly package into the site (no CDN, no network). Nothing is cached between
builds: a build always shows what the code computes now.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

_DOCS = Path(__file__).resolve().parent
if str(_DOCS) not in sys.path:
    sys.path.insert(0, str(_DOCS))

from _gen import core  # noqa: E402

log = logging.getLogger("mkdocs.hooks.hwsim")


def on_config(config: Any) -> Any:
    core.reset()
    core.check_nav(config)
    return config


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    for uri, content in core.assets().items():
        files.append(File.generated(config, uri, content=content))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    return core.render_markdown(markdown, page.file.src_uri)


def on_page_content(html: str, page: Any, config: Any, files: Any) -> str:
    return core.insert_figures(html, page.file.src_uri)


def on_post_build(config: Any) -> None:
    for line in core.timing_report():
        log.info(line)
