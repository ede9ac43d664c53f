"""The Dash app: a navigation bar, one page per URL path, and :func:`run` (``hwsim app``).

Everything is served from this machine (Dash ships its JavaScript, plotly.js included), so the
app works offline. It binds to 127.0.0.1 unless told otherwise: it has no login, and the CLI
warns when ``--host`` opens it to the network.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from dash import Dash, Input, Output, dcc, html

from hwsim.app.context import AppContext
from hwsim.app.pages import PAGES
from hwsim.app.specs import Uploads
from hwsim.spec.load import MAX_FILE_BYTES

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #222;
       background: #fafafa; font-size: 14px; }
nav.top { background: #283593; padding: 0.6em 1.5em; display: flex; gap: 1.5em;
          align-items: baseline; }
nav.top a { color: #e8eaf6; text-decoration: none; font-weight: 500; }
nav.top a.here { color: white; border-bottom: 2px solid white; }
nav.top .brand { color: white; font-weight: 700; margin-right: 1em; }
main { max-width: 1400px; margin: 0 auto; padding: 0.5em 1.5em 3em; }
.lbl { font-size: 0.85em; color: #555; margin-bottom: 0.2em; }
.box { width: 100%; box-sizing: border-box; padding: 0.35em; border: 1px solid #bbb;
       border-radius: 4px; }
.error { color: #b71c1c; font-weight: 500; min-height: 1.2em; }
.status { color: #555; font-size: 0.85em; min-height: 1.2em; }
.whatif { background: #f1f3fb; border: 1px solid #d5d9ee; border-radius: 6px;
          padding: 0.5em 1em; margin: 0.8em 0; }
.pair { display: flex; gap: 1em; } .pair > * { flex: 1 1 0; min-width: 0; }
pre.command { background: #263238; color: #eceff1; padding: 0.8em; border-radius: 4px;
              white-space: pre-wrap; }
table.data { border-collapse: collapse; margin: 0.6em 0; }
table.data th, table.data td { border: 1px solid #ddd; padding: 0.2em 0.6em; text-align: right; }
table.data th { background: #eee; }
table.data td:first-child { text-align: left; }
.notes { color: #666; font-size: 0.85em; }
button { padding: 0.35em 0.8em; }
.field .dash-input-stepper { display: none; }  /* +/- buttons squeeze the number out of view */
"""

_INDEX = (
    """<!DOCTYPE html>
<html lang="en">
  <head>{%metas%}<title>hwsim app</title>{%favicon%}{%css%}<style>"""
    + _CSS
    + """</style></head>
  <body>{%app_entry%}<footer>{%config%}{%scripts%}{%renderer%}</footer></body>
</html>"""
)


def _nav(path: str) -> html.Nav:
    links = [
        dcc.Link(
            label,
            href=href,
            className="here" if href == path else "",
            id=f"nav{href.replace('/', '-')}",
        )
        for href, label, _ in PAGES
    ]
    return html.Nav([html.Span("hwsim app", className="brand"), *links], className="top")


def create_app(app_ctx: AppContext | None = None) -> Dash:
    """The Dash app with every page's callbacks registered."""
    ctx = app_ctx or AppContext()
    app = Dash(
        __name__,
        title="hwsim app",
        suppress_callback_exceptions=True,  # pages are built when their URL is opened
        update_title="",  # no "Updating..." flicker in the tab title
    )
    app.index_string = _INDEX
    # a backstop for absurd requests; an upload over the spec limit still reaches the loader
    # (up to 4x that), so that it is refused with the CLI's message
    app.server.config["MAX_CONTENT_LENGTH"] = 4 * MAX_FILE_BYTES + 65536
    app.layout = html.Div([dcc.Location(id="url"), html.Div(id="nav"), html.Main(id="page")])
    # every page's components, so that Dash can check the callbacks against them
    layouts = html.Div([app.layout, *[m.layout(ctx) for _, _, m in PAGES]])
    app.validation_layout = layouts  # type: ignore[assignment]  # Dash types it as None

    @app.callback(Output("nav", "children"), Output("page", "children"), Input("url", "pathname"))
    def _route(path: str | None) -> tuple[Any, Any]:
        path = path if path in {p for p, _, _ in PAGES} else PAGES[0][0]
        mod = next(m for p, _, m in PAGES if p == path)
        return _nav(path), mod.layout(ctx)

    for _, _, mod in PAGES:
        mod.register(app, ctx)
    return app


def run(host: str = "127.0.0.1", port: int = 8050) -> None:
    """Serve the app until interrupted (Flask's threaded server: one thread per request).
    Uploads and what-if files live in a temporary folder that goes when the app stops."""
    with tempfile.TemporaryDirectory(prefix="hwsim-app-") as folder:
        app = create_app(AppContext(uploads=Uploads(Path(folder))))
        print(f"hwsim app on http://{host}:{port}/  (Ctrl+C stops it)", flush=True)
        app.run(host=host, port=port, debug=False)
