"""The Serving page's "Which deployment for a workload class" card without a browser: its
callback (as the page registers it, polled as the browser polls it) finds the winner of
``hwsim size --traffic``, its "copy as command" box gives the same winner through the CLI, and
bad input is the CLI's one-line message while the app keeps answering."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from dash import no_update
from typer.testing import CliRunner

from hwsim.app.commands import command_lines
from hwsim.app.context import AppContext
from hwsim.app.jobs import Jobs
from hwsim.app.pages import serving, serving_classes
from hwsim.app.server import create_app
from hwsim.app.specs import Uploads
from hwsim.cli import guard
from hwsim.cli.app import app as cli_app

runner = CliRunner()
C = serving_classes.C
Callback = Callable[..., list[Any]]


class _Recorder:
    """Stands in for Dash: keeps each callback with the ids of its outputs and inputs."""

    def __init__(self) -> None:
        self.callbacks: list[tuple[list[str], list[str], Callback]] = []

    def callback(self, *deps: Any, **_k: Any) -> Callable[[Callback], Callback]:
        outs = [
            f"{d.component_id}.{d.component_property}" for d in deps if type(d).__name__ == "Output"
        ]
        ins = [
            f"{d.component_id}.{d.component_property}" for d in deps if type(d).__name__ == "Input"
        ]

        def keep(fn: Callback) -> Callback:
            self.callbacks.append((outs, ins, fn))
            return fn

        return keep


@pytest.fixture(scope="module")
def card(tmp_path_factory: pytest.TempPathFactory) -> Callback:
    """The card's callback as the Serving page registers it."""
    ctx = AppContext(jobs=Jobs(), uploads=Uploads(tmp_path_factory.mktemp("app")))
    rec = _Recorder()
    serving.register(rec, ctx)  # type: ignore[arg-type]
    ((ins, fn),) = [(i, f) for o, i, f in rec.callbacks if f"{C}-command.children" in o]
    assert ins == ["srv-model.value", "srv-device.value", f"{C}-class.value", f"{C}-qps.value",
                   f"{C}-poll.n_intervals"]  # fmt: skip
    return fn


def _answer(card: Callback, *controls: Any, timeout_s: float = 120.0) -> list[Any]:
    """Call the callback as the browser does: again on each poll tick until it is done."""
    deadline = time.monotonic() + timeout_s
    n = 0
    while True:
        out = card(*controls, n)
        result, _, error, status, poll_off = out
        if poll_off:
            return out
        assert status.startswith("⏳") and result is no_update and error == ""
        assert time.monotonic() < deadline, status
        n += 1
        time.sleep(0.2)


def _by_id(tree: Any) -> dict[str, Any]:
    """Every component with an id in a rendered tree."""
    found: dict[str, Any] = {}
    stack = list(tree) if isinstance(tree, list) else [tree]
    while stack:
        c = stack.pop()
        if isinstance(c, list | tuple):
            stack += list(c)
            continue
        if getattr(c, "id", None):
            found[c.id] = c
        kids = getattr(c, "children", None)
        if kids is not None and not isinstance(kids, str | int | float):
            stack.append(kids)
    return found


def _value(el: Any) -> Any:
    return el.to_plotly_json()["props"]["data-value"]


def _cli_error(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert guard.run(cli_app, args) == 2
    return " ".join(capsys.readouterr().err.split()).removeprefix("error: ")


CHAT_4 = ("llama-3.1-8b", "h100-sxm", "chat", 4)


@pytest.fixture(scope="module")
def chat_4(card: Callback) -> list[Any]:
    return _answer(card, *CHAT_4)


def test_card_is_on_the_serving_page_and_registered(tmp_path_factory: Any) -> None:
    ctx = AppContext(uploads=Uploads(tmp_path_factory.mktemp("app")))
    client = create_app(ctx).server.test_client()
    deps = json.loads(client.get("/_dash-dependencies").data)
    outputs = " ".join(d["output"] for d in deps)
    assert f"{C}-command.children" in outputs and f"{C}-result.children" in outputs
    ids = _by_id(serving.layout(ctx))
    for part in ("class", "qps", "result", "command", "error", "status", "poll"):
        assert f"{C}-{part}" in ids, part
    assert [o for o in ids[f"{C}-class"].options] == ["chat", "low-latency", "batch"]


def test_card_finds_the_winner(chat_4: list[Any]) -> None:
    result, _, error, status, _ = chat_4
    assert error == "" and status.startswith("computed in")
    els = _by_id(result)
    assert els[f"{C}-winner-deployment"].children.startswith("1 x tp=1")
    assert _value(els[f"{C}-winner-devices"]) == "1"
    assert 0 < float(_value(els[f"{C}-winner-usd_per_mtok"])) < 10  # $ per million tokens
    assert float(_value(els[f"{C}-winner-ttft_p99"])) <= 0.45  # the chat class's limits
    assert float(_value(els[f"{C}-winner-tpot_p99"])) <= 0.040
    assert els[f"{C}-winner-binding"].children
    stages = els[f"{C}-stages"].children
    assert stages.startswith("candidates: ") and "met the SLOs" in stages
    lost = els[f"{C}-runners-up"]  # every runner-up with why it lost
    rows = lost.children[1].children
    assert rows and all(r.children[-1].children for r in rows)


def test_card_command_is_the_cli_call_with_the_same_winner(chat_4: list[Any]) -> None:
    result, command, *_ = chat_4
    assert command == ("hwsim size --model llama-3.1-8b --device h100-sxm --traffic chat --qps 4")
    (args,) = command_lines(command)
    res = runner.invoke(cli_app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    cli = json.loads(res.stdout)
    els = _by_id(result)
    best = cli["best_by_dollars"]
    assert els[f"{C}-winner-deployment"].children == best["deployment"]
    assert float(_value(els[f"{C}-winner-usd_per_mtok"])) == pytest.approx(
        best["usd_per_million_output_tokens"], rel=1e-9
    )
    assert float(_value(els[f"{C}-winner-tpot_p99"])) == pytest.approx(best["tpot_p99_s"], rel=1e-9)
    s = cli["stages"]
    assert els[f"{C}-stages"].children == (
        f"candidates: {s['enumerated']} enumerated, {s['after_bounds']} after bounds, "
        f"{s['simulated']} simulated, {s['met_slo']} met the SLOs"
    )


@pytest.mark.parametrize("qps", [-1, 0])
def test_bad_qps_is_the_clis_one_line_message(
    card: Callback, qps: float, capsys: pytest.CaptureFixture[str]
) -> None:
    result, command, error, status, poll_off = _answer(card, "llama-3.1-8b", "h100-sxm", "chat",
                                                       qps)  # fmt: skip
    assert poll_off and result is no_update and status == ""  # the last good result stays
    (args,) = command_lines(command)
    assert args[-2:] == ["--qps", str(qps)]
    assert error == _cli_error(args, capsys)
    assert "\n" not in error and error.startswith("--qps: ")
    # a box the CLI would refuse to parse: the message names the option; the app answers on
    out = _answer(card, "llama-3.1-8b", "h100-sxm", "chat", "fast")
    assert out[2].startswith("--qps: expected a rate") and out[1] is no_update


def test_impossible_class_is_the_clis_message_with_the_search(
    card: Callback, capsys: pytest.CaptureFixture[str]
) -> None:
    # a TPOT limit of 5 ms that no deployment of an MI210 meets for Llama-3.1-8B
    result, command, error, _, _ = _answer(card, "llama-3.1-8b", "mi210", "low-latency", None)
    assert command == "hwsim size --model llama-3.1-8b --device mi210 --traffic low-latency"
    assert error.startswith("no deployment of mi210 meets the SLOs: ")
    assert error == _cli_error(command_lines(command)[0], capsys)
    els = _by_id(result)  # the search is still shown: what was simulated and why each missed
    assert f"{C}-winner" not in els and els[f"{C}-stages"].children.endswith("0 met the SLOs")
    # an unknown class: the loader's message, before any search
    _, _, err, _, _ = _answer(card, "llama-3.1-8b", "h100-sxm", "chatty", None)
    assert err == _cli_error(["size", "--model", "llama-3.1-8b", "--device", "h100-sxm",
                              "--traffic", "chatty"], capsys)  # fmt: skip
