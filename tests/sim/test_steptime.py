"""The serving step-time model against the step simulator it stands for: exact at grid points,
within 2% off the grid, monotone, and cached on disk under a key of everything it depends on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hwsim.plan.layout import Layout
from hwsim.plan.model_step import StepSpec
from hwsim.serve.api import make_target
from hwsim.serve.step import simulate_step
from hwsim.serve.steptime import StepTimeModel
from hwsim.spec.model import load_model_config

#: (model, device, layout, dtype): a dense GQA model, an MoE and an MLA model.
CASES = [
    ("llama-3.1-8b", "h100-sxm", Layout(tp=1), "bf16"),
    ("mixtral-8x7b", "h100-sxm", Layout(tp=2), "bf16"),
    ("deepseek-v2", "h200", Layout(tp=8), "fp8"),
]


def _model(case: tuple[str, str, Layout, str], cache: Path | None = None) -> StepTimeModel:
    name, device, lay, dtype = case
    t = make_target(device)
    return StepTimeModel(
        load_model_config(name), t.mapper, lay, dtype=dtype, kv_dtype=dtype,
        max_batch=256, token_budget=2048, max_context=16384, cache_dir=cache,
    )  # fmt: skip


def _direct(case: tuple[str, str, Layout, str], b: int, c: int, p: int) -> float:
    name, device, lay, dtype = case
    t = make_target(device)
    spec = StepSpec("decode", b, c, dtype, dtype, chunk_tokens=p)
    r = simulate_step(load_model_config(name), t.mapper, lay, spec, strict=False, timeline=False)
    return r.step_time_s


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_exact_at_grid_points(case: tuple[str, str, Layout, str]) -> None:
    """On the grids (batch, context, piece, and a token count the grid holds) the model is the
    simulator's own sum of op times: equal to float rounding (1e-9)."""
    m = _model(case)
    for b, c, p in [
        (8, 512, 0),
        (32, 2048, 32),
        (64, 1024, 64),
        (96, 256, 32),
        (0, 1, 512),
        (128, 4096, 0),
    ]:
        assert b == 0 or (b in m.batch_grid and c in m.context_grid)
        assert p == 0 or (p in m.piece_grid and b + p in m.token_grid)
        direct = _direct(case, b, c, p)
        assert m.step_time(b, b * c, [p] if p else []) == pytest.approx(direct, rel=1e-9)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_within_two_percent_off_the_grid(case: tuple[str, str, Layout, str]) -> None:
    """Off the context, attention-batch and piece grids (batch and token count where the
    engine pads them), the interpolated time is within 2% of a direct simulation."""
    m = _model(case)
    rng = np.random.default_rng(7)
    worst = 0.0
    for _ in range(12):
        b = int(rng.choice([x for x in m.batch_grid if x <= 256]))
        c = int(rng.integers(20, 12000))
        p = 0
        if rng.random() < 0.5:  # a prompt piece that makes the token count a grid value
            tokens = [t for t in m.token_grid if b < t <= b + 2048]
            p = int(rng.choice(tokens)) - b
        direct = _direct(case, b, c, p)
        worst = max(worst, abs(m.step_time(b, b * c, [p] if p else []) / direct - 1))
    assert worst <= 0.02, worst


def test_monotone_in_every_argument() -> None:
    m = _model(CASES[0])
    for b0, b1 in [(1, 2), (8, 9), (63, 64), (64, 65)]:
        assert m.step_time(b0, b0 * 1000) <= m.step_time(b1, b1 * 1000)
    ts = [m.step_time(16, 16 * c) for c in (100, 700, 3000, 9000)]
    assert ts == sorted(ts)
    ps = [m.step_time(16, 16_000, [p]) for p in (10, 100, 700, 1500)]
    assert ps == sorted(ps)


def test_decode_times_match_step_time() -> None:
    m = _model(CASES[0])
    kv = np.array([8 * 100.0, 8 * 2000.0, 8 * 5000.0])
    assert m.decode_times(8, kv) == pytest.approx([m.step_time(8, k) for k in kv], rel=1e-12)


def test_disk_cache_round_trip_and_key(tmp_path: Path) -> None:
    m = _model(CASES[0], tmp_path)
    t = m.step_time(24, 24 * 700, [100])
    m.save()
    files = list(tmp_path.glob("*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())
    again = _model(CASES[0], tmp_path)
    assert again.points == m.points  # warm: nothing to simulate
    assert again.step_time(24, 24 * 700, [100]) == t
    other = StepTimeModel(
        load_model_config("llama-3.1-8b"), make_target("h100-sxm").mapper, Layout(tp=1),
        dtype="fp8", kv_dtype="fp8", max_batch=256, token_budget=2048, max_context=16384,
        cache_dir=tmp_path,
    )  # fmt: skip
    assert other.points == 0  # another dtype: another key
