"""Every place that offers a step option's default offers the one defined once in
:data:`hwsim.serve.request.STEP_DEFAULTS` (issue 16): the ``decode``/``prefill``/``compare``/
``capacity``/``map``/``size``/``serve``/``explain decode`` option defaults, the options parsed
after ``hwsim whatif ... --``, the library functions behind them and the sweep's ``serve_step``
kind. Deliberate differences are listed here, with their reason."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import typer.main

from hwsim.cli.app import app
from hwsim.cli.serve import _sub_args
from hwsim.serve.compare import compare
from hwsim.serve.request import STEP_DEFAULTS, StepRequest
from hwsim.serve.serving import ServeRequest
from hwsim.serve.size import size_cluster
from hwsim.sweep.kinds import get_kind

ALL = tuple(STEP_DEFAULTS)
#: (command path, the step options it offers whose default must be STEP_DEFAULTS'); options a
#: command offers that are not listed keep their own default on purpose:
#: ``size --context`` (4096: sizing assumes longer prompts than one step), ``compare --batch``
#: (a list, "1,64"), ``serve --devices``/``--layout`` (one replica's, 'auto' meaning capacity)
CLI = [
    (("decode",), ("batch", "context", "devices", "dtype", "kv_dtype", "layout", "mtp",
                   "mtp_acceptance", "overlap")),
    (("prefill",), ("batch", "context", "devices", "dtype", "kv_dtype", "layout", "overlap")),
    (("compare",), ("context", "phase", "dtype")),
    (("capacity",), ("batch", "context", "dtype", "kv_dtype")),
    (("map",), ("batch", "context", "dtype", "kv_dtype", "layout")),
    (("size",), ("dtype", "kv_dtype", "mtp", "mtp_acceptance")),
    (("serve",), ("dtype", "kv_dtype", "mtp", "mtp_acceptance")),
    (("explain", "decode"), ("batch", "context", "dtype", "kv_dtype", "phase")),
]  # fmt: skip


def _command(path: tuple[str, ...]) -> Any:
    """The click command ``hwsim <path>`` (typer vendors its own click: no isinstance)."""
    cmd: Any = typer.main.get_command(app)
    for name in path:
        cmd = cmd.commands[name]
    return cmd


def _defaults(cmd: Any) -> dict[str, Any]:
    return {p.name: p.default for p in cmd.params if p.name is not None}


@pytest.mark.parametrize(("path", "names"), CLI, ids=[" ".join(p) for p, _ in CLI])
def test_cli_option_defaults_are_the_step_defaults(
    path: tuple[str, ...], names: tuple[str, ...]
) -> None:
    got = _defaults(_command(path))
    assert {n: got[n] for n in names} == {n: STEP_DEFAULTS[n] for n in names}


def test_decode_offers_every_step_option_but_phase_and_cluster() -> None:
    """decode's options are the step request's fields (so the list above is complete)."""
    got = _defaults(_command(("decode",)))
    assert set(ALL) - set(got) == {"phase", "cluster"}


@pytest.mark.parametrize("phase", ["decode", "prefill"])
def test_whatif_step_defaults(phase: str) -> None:
    """``hwsim whatif --device D -- decode --model M`` fills in the step defaults."""
    got_phase, kw = _sub_args([phase, "--model", "llama-3.1-8b"])
    assert got_phase == phase
    step = {k: v for k, v in kw.items() if k in STEP_DEFAULTS}
    assert step == {k: STEP_DEFAULTS[k] for k in step}
    assert len(step) >= (9 if phase == "decode" else 7)


@pytest.mark.parametrize(
    ("fn", "names"),
    [
        (compare, ("phase", "context", "dtype", "kv_dtype", "mtp", "mtp_acceptance")),
        # context: 4096 on purpose (see CLI above)
        (size_cluster, ("dtype", "kv_dtype", "mtp", "mtp_acceptance")),
        (ServeRequest, ("dtype", "kv_dtype", "mtp", "mtp_acceptance", "cluster")),
    ],
    ids=["compare", "size_cluster", "ServeRequest"],
)
def test_library_defaults_are_the_step_defaults(fn: Any, names: tuple[str, ...]) -> None:
    params = inspect.signature(fn).parameters
    assert {n: params[n].default for n in names} == {n: STEP_DEFAULTS[n] for n in names}


def test_size_context_default_is_deliberately_longer() -> None:
    """Sizing assumes 4096-token prompts, not the single step's 2048 (not a leftover)."""
    assert inspect.signature(size_cluster).parameters["context"].default == 4096
    assert _defaults(_command(("size",)))["context"] == 4096


def test_sweep_serve_step_kind_defaults() -> None:
    kind = get_kind("serve_step")
    params = kind.params
    assert {n: params[n] for n in ("batch", "context", "dtype")} == {
        n: STEP_DEFAULTS[n] for n in ("batch", "context", "dtype")
    }
    assert kind.Options is not None
    options = kind.Options().model_dump()
    assert options == {n: STEP_DEFAULTS[n] for n in options}
    assert set(options) == {"phase", "cluster", "overlap", "mtp", "mtp_acceptance"}
    assert get_kind("serving").params["dtype"] == STEP_DEFAULTS["dtype"]


def test_step_defaults_are_the_request_fields() -> None:
    req = StepRequest("llama-3.1-8b", "h100-sxm")
    assert {k: getattr(req, k) for k in ALL} == STEP_DEFAULTS
