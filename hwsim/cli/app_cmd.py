"""``hwsim app``: the interactive what-if explorer in the browser (:mod:`hwsim.app`).

Dash is imported inside the command, so that ``hwsim --help`` stays fast."""

from __future__ import annotations

import ipaddress
import sys
from typing import Annotated

import typer

from hwsim.spec.errors import SpecError

#: Hosts that only this machine can reach.
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def is_local(host: str) -> bool:
    """Whether binding to ``host`` keeps the app on this machine."""
    if host in LOCAL_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def network_warning(host: str) -> str | None:
    """The warning printed before binding to a host other machines can reach."""
    if is_local(host):
        return None
    return (
        f"warning: --host {host} makes the app reachable from the network: anyone who can "
        "reach this machine can use it (it has no login) and make it run simulations"
    )


def app_cmd(
    port: Annotated[int, typer.Option(help="TCP port")] = 8050,
    host: Annotated[
        str, typer.Option(help="address to bind; 0.0.0.0 opens it to the network (warned)")
    ] = "127.0.0.1",
) -> None:
    """Start the interactive what-if explorer in the browser: device rooflines with spec
    editing, model steps, attention tile plans, serving and MoE all-to-all, each with a
    what-if toggle and the hwsim command that reproduces the view.

    Example: hwsim app --port 8050   (then open http://127.0.0.1:8050/)
    """
    if not 0 < port < 65536:
        raise SpecError(f"expected a TCP port in 1..65535, got {port}", key="--port")
    try:
        from hwsim.app.server import run
    except ImportError as err:
        raise SpecError(
            f"hwsim app needs the 'dash' package ({err}); pip install 'dash>=2.17'"
        ) from None
    warning = network_warning(host)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    run(host, port)


def register(app: typer.Typer) -> None:
    app.command("app")(app_cmd)
