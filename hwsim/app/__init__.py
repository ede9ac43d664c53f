"""``hwsim app``: an interactive what-if explorer in the browser (Dash).

A top layer like the CLI: it may import spec, plan, sim, serve, sweep, report and validate;
nothing imports it except ``hwsim.cli.app_cmd``. The figures are the report's own plotly
figures (:mod:`hwsim.report`), the numbers come from the functions the CLI commands call, and
every page shows the ``hwsim`` command line that reproduces it (:mod:`hwsim.app.commands`).

Modules: :mod:`~hwsim.app.jobs` (cached simulations off the request thread),
:mod:`~hwsim.app.specs` (device choice, uploads, what-if edits, YAML export),
:mod:`~hwsim.app.commands` (the "copy as command" lines), :mod:`~hwsim.app.compute` (one cached
computation per page), :mod:`~hwsim.app.widgets` (shared controls), one module per page under
:mod:`hwsim.app.pages`, and :mod:`~hwsim.app.server` (the Dash app and ``run``).
"""
