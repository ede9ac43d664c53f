"""The nongpu-decode suite: its table, the one fitted LPU parameter, held-out targets, and the
rows it refuses to score."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from hwsim.plan.workload import Gemm
from hwsim.serve.step import simulate_step
from hwsim.sim.mapper import mapper_for
from hwsim.spec.errors import SpecError
from hwsim.spec.load import load_device
from hwsim.spec.model import load_model_config
from hwsim.validate.nongpu import (
    TABLE,
    excluded,
    layout_of,
    load_table,
    plain_decode_bound,
    predict,
    suite,
)
from hwsim.validate.nongpu_fit import fit_op_latency, fit_rows, lpu_with

ROWS = load_table()


def test_table_has_one_fit_row_and_held_out_rows_for_every_kind() -> None:
    assert len(fit_rows()) == 1 and fit_rows()[0].device == "groq-lpu"
    for device in ("groq-lpu", "cerebras-wse3", "sambanova-sn40l"):
        assert any(r.device == device and r.role == "check" for r in ROWS), device
    # every row is plain and scored, or not plain and not scored (the loader enforces it)
    assert all((r.role == "none") == (r.decode != "plain") for r in ROWS)


def test_the_fitted_op_latency_is_what_the_fit_gives() -> None:
    """devices/profiles/lpu.yaml stores the brentq result rounded to 0.01 µs: rel 0.2 %."""
    yaml_value = mapper_for(load_device("groq-lpu")).profile.op_latency.value  # type: ignore[attr-defined]
    assert fit_op_latency(fit_rows()[0]) == pytest.approx(yaml_value, rel=2e-3)


def test_op_latency_is_paid_once_per_operator() -> None:
    g = Gemm(1, 8192, 8192, "fp8")
    base = lpu_with("groq-lpu", 0.0).time(g).time_s
    # exact up to float rounding of one addition
    assert lpu_with("groq-lpu", 2e-6).time(g).time_s == pytest.approx(base + 2e-6, rel=1e-12)


def test_suite_meets_its_held_out_targets_and_reproduces_the_fit_row() -> None:
    res = suite()
    groups = res.group_mape()
    assert groups["groq-lpu fit"] < 0.005  # the fit row, up to the YAML's rounding
    for g, v in groups.items():
        if "held-out" in g.split():
            assert v <= res.targets["mape held-out"], g
    assert res.max_error <= res.targets["max"]
    assert len(res.rows) == sum(r.decode == "plain" for r in ROWS)


def test_sn40l_rows_not_scored_are_beyond_what_hbm_allows_plain_decode() -> None:
    """The reason SambaNova's Llama 70B/405B speeds are excluded is itself checked: each
    exceeds the bound (every weight read once per token at the datasheet bandwidth); and no
    prediction is faster than its own bound (DeepSeek's touched experts included)."""
    llama = 0
    for e in excluded():
        assert e.predicted <= e.bound, e.rec
        if e.rec.device == "sambanova-sn40l" and e.rec.model.startswith("llama"):
            assert e.rec.value > e.bound, e.rec
            llama += 1
    assert llama == 2
    # the scored SN40L rows are all below it
    for r in ROWS:
        if r.device == "sambanova-sn40l" and r.scored and r.metric == "tok/s/user":
            assert r.value < plain_decode_bound(r)


def test_request_time_is_prefill_plus_every_decode_step() -> None:
    """Simpson over three contexts equals the step-by-step sum. Tolerance 1e-3: at batch 1 each
    op's time is affine in the context except where its bound switches, which moves the sum by
    far less than that over 128 steps."""
    rec = next(r for r in ROWS if r.metric == "e2e_s" and r.prompt_tokens == 128)
    model = load_model_config(rec.model)
    mapper = mapper_for(load_device(rec.device))
    lay = layout_of(rec, model, mapper)
    assert rec.prompt_tokens is not None and rec.output_tokens is not None
    total = simulate_step(model, mapper, lay, rec.spec(rec.prompt_tokens, "prefill")).step_time_s
    for i in range(rec.output_tokens):
        total += simulate_step(model, mapper, lay, rec.spec(rec.prompt_tokens + i)).step_time_s
    assert predict(rec)[0] == pytest.approx(total, rel=1e-3)


@pytest.mark.parametrize(
    ("column", "bad", "expected"),
    [
        ("metric", "tok/s", "expected one of tok/s/user, e2e_s"),
        ("decode", "specdec", "expected one of plain, speculative, unstated"),
        ("value", "fast", "expected a number"),
        ("prompt_tokens", "2k", "whole number of tokens"),
    ],
)
def test_a_malformed_row_names_file_line_and_column(
    tmp_path: Path, column: str, bad: str, expected: str
) -> None:
    lines = TABLE.read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",")
    row = lines[3].split(",")
    row[header.index(column)] = bad
    path = tmp_path / "table.csv"
    path.write_text("\n".join([lines[0], lines[1], lines[2], ",".join(row)]) + "\n")
    with pytest.raises(SpecError) as err:
        load_table(path)
    text = str(err.value)
    assert "table.csv line 4" in text and expected in text and column in text


def test_an_e2e_row_without_its_request_is_refused(tmp_path: Path) -> None:
    lines = TABLE.read_text(encoding="utf-8").splitlines()
    e2e = next(i for i, x in enumerate(lines) if ",e2e_s," in x)
    cells = lines[e2e].split(",")
    cells[6] = ""  # prompt_tokens
    path = tmp_path / "t.csv"
    path.write_text("\n".join([lines[0], ",".join(cells)]) + "\n")
    with pytest.raises(SpecError, match="needs prompt_tokens and output_tokens"):
        load_table(path)


def test_a_plain_row_marked_none_is_refused(tmp_path: Path) -> None:
    lines = TABLE.read_text(encoding="utf-8").splitlines()
    rec = ROWS[0]
    assert rec.role == "check"
    path = tmp_path / "t.csv"
    path.write_text("\n".join([lines[0], lines[1].replace(",check,", ",none,")]) + "\n")
    with pytest.raises(SpecError, match="plain-decode rows are 'fit' or 'check'"):
        load_table(path)
    assert replace(rec, role="none").scored  # scoring follows the decode kind, not the role
