# ruff: noqa: E501
"""The sweep layer: sweep files, point expansion, vectorised kinds against the scalar roofline,
sub-problem dedup, the cache, constraints, elasticities and Pareto fronts."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import yaml

from hwsim.roofline.analytic import roofline
from hwsim.roofline.ops import attention, attention_decode, gemm
from hwsim.spec.device import Device
from hwsim.spec.errors import SpecError
from hwsim.spec.load import load_device
from hwsim.spec.overrides import apply_overrides
from hwsim.sweep import expr
from hwsim.sweep.cache import SweepCache
from hwsim.sweep.kinds import Batch, MetricKind, Scalar, get_kind, register_kind
from hwsim.sweep.run import run_sweep
from hwsim.sweep.sensitivity import elasticities, pareto_mask
from hwsim.sweep.spec import SWEEPS_DIR, load_sweep, parse_layout

RTOL = 1e-12  # vectorised and scalar paths do the same float arithmetic, in a different order


def _write(tmp_path: Path, data: dict[str, Any], name: str = "s.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data, sort_keys=False))
    return p


def _batch(devices: list[Device], **params: Any) -> Batch:
    n = len(devices)
    cols = {k: np.array([v] * n if not isinstance(v, list) else v) for k, v in params.items()}
    return Batch(tuple(devices), np.arange(n, dtype=np.intp), cols)


@pytest.fixture(scope="module")
def devices() -> list[Device]:
    h100 = load_device("h100-sxm")
    return [h100, load_device("mi300x"), load_device("groq-lpu"), load_device("sambanova-sn40l"),
            apply_overrides(h100, ["hbm.bandwidth=x2", "smem.capacity=x2"])]  # fmt: skip


# ---- vectorised kinds == scalar roofline ----------------------------------------------------------
def test_fa_decode_matches_scalar_roofline_when_resident_in_hbm(devices: list[Device]) -> None:
    gpus = [d for d in devices if d.kind == "gpu"]
    shape = {"batch": 4, "context": 8192, "heads": 64, "kv_heads": 8, "head_dim": 128}
    # layers large enough that the KV cache never fits on chip: residency is main memory
    b = _batch(gpus, q_len=1, seq_len=0, head_dim_v=128, dtype="bf16", tp=1, layers=10_000,
               **shape)  # fmt: skip
    out = get_kind("fa_decode")().evaluate_batch(b)
    for i, d in enumerate(gpus):
        ref = roofline(attention_decode(d, **shape), d)
        assert out["time_s"][i] == pytest.approx(ref.time_s, rel=RTOL)
        assert out["bound"][i] == ref.bound
        assert out["resident_level"][i] == d.main_memory.name


def test_fa_decode_moves_on_chip_when_kv_fits() -> None:
    h100 = load_device("h100-sxm")
    big = apply_overrides(h100, ["memory.l2.capacity=64 GiB"])
    b = _batch([h100, big], batch=1, q_len=1, seq_len=0, context=4096, heads=64, kv_heads=8,
               head_dim=128, head_dim_v=128, dtype="bf16", tp=1, layers=80)  # fmt: skip
    out = get_kind("fa_decode")().evaluate_batch(b)
    assert list(out["resident_level"]) == ["hbm", "l2"]
    assert list(out["bound"]) == ["hbm", "l2"]
    # KV of 80 layers: 80 x 2 (K,V) x 8 heads x 128 x 2 B x 4096 tokens, exactly
    assert out["kv_cache_bytes"][0] == 80 * 2 * 8 * 128 * 2 * 4096
    # resident in L2, the same bytes move at L2 speed: time ratio = bandwidth ratio (float only)
    ratio = out["time_s"][0] / out["time_s"][1]
    assert ratio == pytest.approx(h100.level_bandwidth_Bps("l2") / 3.35e12, rel=1e-9)


@pytest.mark.parametrize("causal", [False, True])
def test_attention_kind_matches_ops(devices: list[Device], causal: bool) -> None:
    shape = {"batch": 2, "q_len": 4096, "kv_len": 4096, "heads": 16, "kv_heads": 4}
    b = _batch(devices, batch=2, q_len=4096, context=4096, seq_len=0, heads=16, kv_heads=4,
               head_dim=128, head_dim_v=128, dtype="bf16", tp=1, causal=causal)  # fmt: skip
    out = get_kind("attention")().evaluate_batch(b)
    for i, d in enumerate(devices):
        ref = roofline(attention(d, causal=causal, **shape), d)
        assert out["time_s"][i] == pytest.approx(ref.time_s, rel=RTOL), d.name
        assert out["bound"][i] == ref.bound


def test_gemm_kind_matches_ops(devices: list[Device]) -> None:
    for m, n, k in [(16, 8192, 8192), (8192, 8192, 8192), (1, 128, 64)]:
        b = _batch(devices, m=m, n=n, k=k, dtype="fp8", tp=1)
        out = get_kind("gemm")().evaluate_batch(b)
        for i, d in enumerate(devices):
            ref = roofline(gemm(m, n, k, d, "fp8"), d)
            assert out["time_s"][i] == pytest.approx(ref.time_s, rel=RTOL), (d.name, m)
            assert out["bound"][i] == ref.bound


def test_decode_roofline_batch1_is_weight_bytes_over_bandwidth() -> None:
    """Hand check: at batch 1 a dense model's decode step is HBM-bound, time = (weights + KV)
    bytes / HBM bandwidth."""
    from hwsim.spec.model import load_model_config
    from hwsim.sweep.model_kinds import model_params

    h100 = load_device("h100-sxm")
    cfg = load_model_config("llama-3.1-8b")
    p = model_params(cfg)
    b = _batch([h100], batch=1, context=1024, dtype="bf16", tp=1, pp=1, **p)
    out = get_kind("decode_roofline")().evaluate_batch(b)
    weights = cfg.active_params(include_input_embedding=False) * 2.0
    kv = 1024 * cfg.kv_cache_bytes_per_token(2.0)
    assert out["bound"][0] == "hbm"
    assert out["time_per_token_s"][0] == pytest.approx((weights + kv) / 3.35e12, rel=RTOL)


# ---- sweep files ----------------------------------------------------------------------------------
def test_builtin_sweep_files_load() -> None:
    names = sorted(p.stem for p in SWEEPS_DIR.glob("*.yaml"))
    assert {"ci-small", "sram-fa-decode", "hbm-batch-decode"} <= set(names)
    for n in names:
        load_sweep(n)


BASE: dict[str, Any] = {
    "name": "t",
    "base": {"device": "h100-sxm", "model": "llama-3.1-8b"},
    "axes": {"spec": {"memory.hbm.bandwidth": ["3.35 TB/s", "x2"]},
             "workload": {"batch": [1, 4], "context": [512, 2048]}},
    "metrics": [{"kind": "fa_decode"}],
}  # fmt: skip


def _with(**changes: Any) -> dict[str, Any]:
    data = yaml.safe_load(yaml.safe_dump(BASE))
    data.update(changes)
    return data


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (_with(metrics=[{"kind": "fa_decod"}]), r"s.yaml:\d+: metrics\[0\]\.kind: .*did you mean 'fa_decode'"),
        (_with(workload={"contxt": 5}), r"workload.contxt: .*did you mean 'context'"),
        (_with(axes={"spec": {"memory.hbm.bandwith": ["x2"]}}), r"axes.spec.memory.hbm.bandwith: .*did you mean 'memory.hbm.bandwidth'"),
        (_with(axes={"spec": {"memory.hbm.bandwidth": ["4.8"]}}), r"bare number"),
        (_with(axes={"layout": ["tp=0"]}), r"axes.layout\[0\]: layout 'tp=0'"),
        (_with(constraints=["batch <= contxt"]), r"constraints\[0\]: unknown name 'contxt'; did you mean 'context'"),
        (_with(constraints=["__import__('os')"]), r"constraints\[0\]: .*only the functions"),
        (_with(sampling={"method": "lhs"}), r"sampling.n: method 'lhs' needs"),
        (_with(metrics=[{"kind": "fa_decode", "columns": ["tim_s"]}]), r"did you mean 'time_s'"),
        (_with(base={"device": "h100-sx"}), r"base.device: unknown device 'h100-sx'; did you mean 'h100-sxm'"),
        (_with(metrics=[{"kind": "attention_sim", "options": {"detail": "x"}}]), r"options: detail"),
    ],
)  # fmt: skip
def test_sweep_file_errors(tmp_path: Path, data: dict[str, Any], match: str) -> None:
    with pytest.raises(SpecError, match=match):
        load_sweep(_write(tmp_path, data))


def test_grid_expansion_and_columns(tmp_path: Path) -> None:
    r = run_sweep(load_sweep(_write(tmp_path, BASE)))
    assert r.n == 8 and r.stats.total_points == 8
    assert r.inputs == ("device", "model", "memory.hbm.bandwidth", "batch", "context")
    # x2 is resolved against the base device; the column holds SI values
    assert sorted(set(r.columns["memory.hbm.bandwidth"].tolist())) == [3.35e12, 6.7e12]
    assert r.columns["batch"].dtype == np.int64
    assert "fa_decode.time_s" in r.metrics


def test_ranges_and_layouts(tmp_path: Path) -> None:
    data = _with(axes={"spec": {"memory.l2.capacity": {"from": "50 MiB", "to": "800 MiB", "num": 5, "scale": "log"}},
                       "workload": {"batch": {"from": 1, "to": 64, "num": 7, "scale": "log", "integer": True}},
                       "layout": ["tp=1", "tp=2,pp=2"]}, workload={"context": 1024})  # fmt: skip
    r = run_sweep(load_sweep(_write(tmp_path, data)))
    l2 = sorted(set(r.columns["memory.l2.capacity"].tolist()))
    assert l2[0] == 50 * 2**20 and l2[-1] == 800 * 2**20  # exact ends
    assert sorted(set(r.columns["batch"].tolist())) == [1, 2, 4, 8, 16, 32, 64]
    assert set(r.columns["pp"].tolist()) == {1, 2}
    assert parse_layout("tp=8, ep=4") == {"tp": 8, "ep": 4, "pp": 1, "dp": 1}


def test_sampling_is_seeded(tmp_path: Path) -> None:
    data = _with(sampling={"method": "lhs", "n": 16, "seed": 3},
                 axes={"spec": {"memory.hbm.bandwidth": {"from": "1 TB/s", "to": "8 TB/s"}},
                       "workload": {"batch": {"from": 1, "to": 128, "integer": True, "scale": "log"}}},
                 workload={"context": 1024})  # fmt: skip
    a = run_sweep(load_sweep(_write(tmp_path, data)))
    b = run_sweep(load_sweep(_write(tmp_path, data)))
    assert a.n == 16
    for c in a.columns:
        assert np.array_equal(a.columns[c], b.columns[c]), c
    bw = a.columns["memory.hbm.bandwidth"]
    assert bw.min() >= 1e12 and bw.max() <= 8e12


def test_constraints(tmp_path: Path) -> None:
    data = _with(constraints=["batch * context <= 4096", "fa_decode.time_s < 1e-4",
                              "fa_decode.kv_cache_bytes <= memory.hbm.capacity"])  # fmt: skip
    r = run_sweep(load_sweep(_write(tmp_path, data)))
    assert r.stats.dropped == 2  # batch 4 x context 2048, at both HBM bandwidths
    assert np.all(r.columns["batch"] * r.columns["context"] <= 4096)
    t = r.columns["fa_decode.time_s"]
    assert np.array_equal(r.columns["feasible"], t < 1e-4)


def test_cache_rerun_hits_and_is_identical(tmp_path: Path) -> None:
    sweep = load_sweep(_write(tmp_path, BASE))
    with SweepCache(tmp_path / "c.sqlite") as c:
        cold = run_sweep(sweep, cache=c)
        warm = run_sweep(sweep, cache=c)
    assert cold.stats.cache_hits == 0 and warm.stats.hit_rate == 1.0
    for k in cold.columns:
        assert np.array_equal(cold.columns[k], warm.columns[k]), k
    # one more context value: only the new points are computed
    data = _with(axes={**BASE["axes"], "workload": {"batch": [1, 4], "context": [512, 2048, 8192]}})
    with SweepCache(tmp_path / "c.sqlite") as c:
        more = run_sweep(load_sweep(_write(tmp_path, data, "more.yaml")), cache=c)
    assert more.stats.computed == 4 and more.stats.cache_hits == 8
    # the same number written two ways (x2 vs 6.7 TB/s) is the same cache entry
    data = _with(axes={**BASE["axes"], "spec": {"memory.hbm.bandwidth": ["3.35 TB/s", "6.7 TB/s"]}})
    with SweepCache(tmp_path / "c.sqlite") as c:
        same = run_sweep(load_sweep(_write(tmp_path, data, "same.yaml")), cache=c)
    assert same.stats.hit_rate == 1.0


class CountingKind(MetricKind):
    """A point kind that records each sub-problem it evaluates (in-process executor only)."""

    name = "test_counting"
    vectorised = False
    params: ClassVar[dict[str, Scalar | None]] = {"batch": 1, "context": 1, "tp": 1}
    metrics: ClassVar[dict[str, str]] = {"value": "batch * context / tp", "seed": "seed"}
    calls: ClassVar[list[tuple[str, dict[str, Any]]]] = []
    device_fields = ("compute", "memory")  # a price axis does not reach it

    def subproblem(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return {"work": int(params["batch"]) * int(params["context"]) // int(params["tp"])}

    def evaluate_point(
        self, device: Device, params: Mapping[str, Any], seed: int
    ) -> dict[str, Any]:
        CountingKind.calls.append((device.name, dict(params)))
        return {"value": float(params["work"]), "seed": seed}


register_kind(CountingKind)


def test_identical_subproblems_run_once(tmp_path: Path) -> None:
    CountingKind.calls.clear()
    # batch x context products repeat (1x2048 = 4x512) and price does not reach the kind
    data = _with(metrics=[{"kind": "test_counting"}],
                 axes={"spec": {"price.usd": ["20000 USD", "30000 USD"]},
                       "workload": {"batch": [1, 4], "context": [512, 2048]}})  # fmt: skip
    r = run_sweep(load_sweep(_write(tmp_path, data)))
    assert r.n == 8
    assert len(CountingKind.calls) == 3  # work in {512, 2048, 8192}
    assert r.stats.kinds[0].units == 3
    v = r.columns["test_counting.value"]
    assert np.array_equal(v, (r.columns["batch"] * r.columns["context"]).astype(float))
    # seeds derive from the unit key: equal sub-problems share one, and reruns repeat it
    again = run_sweep(load_sweep(_write(tmp_path, data)))
    assert np.array_equal(r.columns["test_counting.seed"], again.columns["test_counting.seed"])


def test_plugin_kind_by_import_path() -> None:
    # (a module path, not this test module: importing it again would register its kinds twice)
    cls = get_kind("hwsim.sweep.sim_kinds:GemmSim")
    assert cls.name == "gemm_sim" and not cls.vectorised
    with pytest.raises(SpecError, match="cannot import"):
        get_kind("no.such.module:Kind")


# ---- analysis ---------------------------------------------------------------------------------
def test_elasticities_recover_power_law() -> None:
    x1, x2 = np.meshgrid([1.0, 2.0, 4.0, 8.0], [10.0, 20.0, 40.0])
    y = 3.0 * x1**2 / x2
    cols = {"x1": x1.ravel(), "x2": x2.ravel(), "y": y.ravel(), "c": np.ones(12)}
    el = {e.input: e for e in elasticities(cols, "y", ["x1", "x2", "c"])}
    assert set(el) == {"x1", "x2"}  # the constant input has no slope
    # exact power law: the fit and the local differences are exact up to float rounding
    assert el["x1"].elasticity == pytest.approx(2.0, abs=1e-9)
    assert el["x2"].elasticity == pytest.approx(-1.0, abs=1e-9)
    assert el["x1"].local_median == pytest.approx(2.0, abs=1e-9)
    assert el["x1"].r2 == pytest.approx(1.0, abs=1e-9)


def test_pareto_mask() -> None:
    cost = np.array([1.0, 2.0, 3.0, 2.5, 4.0])
    perf = np.array([1.0, 3.0, 2.0, 3.5, 3.5])
    front = pareto_mask(cost, perf, "min", "max")
    assert front.tolist() == [True, True, False, True, False]


def test_expr_is_safe_and_vectorised() -> None:
    cols = {"a": np.array([1.0, 2.0, 3.0]), "memory.hbm.bandwidth": np.array([1.0, 5.0, 9.0])}
    ok = expr.evaluate("a * 2 <= memory.hbm.bandwidth and not a == 3", cols, 3)
    assert ok.tolist() == [False, True, False]
    assert expr.evaluate("max(a, 2) == 2", cols, 3).tolist() == [True, True, False]
    assert expr.names("log10(a) > memory[hbm].bandwidth") == {"a", "memory.hbm.bandwidth"}
    for bad in ("a.__class__", "[x for x in a]", "open('f')", "lambda: 1"):
        with pytest.raises(SpecError):
            expr.names(bad)


def test_serve_step_kind_agrees_with_decode_roofline(tmp_path: Path) -> None:
    """The what-if engine's decode step (a point kind) against the analytic decode roofline:
    both HBM-bound at batch 1, and the roofline is an upper bound on throughput."""
    data = _with(
        base={"device": "h100-sxm", "model": "llama-3.1-8b"},
        workload={"context": 1024},
        axes={"spec": {"price.usd": ["20000 USD", "30000 USD"]}, "workload": {"batch": [1]}},
        metrics=[{"kind": "serve_step"}, {"kind": "decode_roofline"}],
    )
    r = run_sweep(load_sweep(_write(tmp_path, data)))
    assert [k.units for k in r.stats.kinds] == [1, 1]  # price reaches neither kind
    assert set(r.columns["serve_step.bound"].tolist()) == {"hbm"}
    assert set(r.columns["decode_roofline.bound"].tolist()) == {"hbm"}
    serve = r.columns["serve_step.tokens_per_s_per_user"]
    roof = r.columns["decode_roofline.tokens_per_s_per_user"]
    assert np.all(serve <= roof) and np.all(serve > 0.5 * roof)  # within 2x of the bound


def test_serving_kind_puts_load_class_and_deployment_on_axes(tmp_path: Path) -> None:
    """The serving simulation as a metric kind: QPS and the traffic class on axes; eight times
    the load serves more tokens and never a shorter p99 TTFT beyond 50 ms (where an arrival
    falls within an iteration moves a percentile by up to one prefill iteration: the same
    requests, arrivals scaled, common random numbers across the axis)."""
    data = _with(
        base={"device": "h100-sxm", "model": "llama-3.1-8b"},
        workload={"requests": 150},
        axes={"workload": {"traffic": ["chat", "low-latency"], "qps": [1, 8]}},
        metrics=[{"kind": "serving"}],
    )
    r = run_sweep(load_sweep(_write(tmp_path, data)))
    traffic, qps = r.columns["traffic"].tolist(), r.columns["qps"].tolist()
    tok = r.columns["serving.output_tokens_per_s"]
    ttft = r.columns["serving.ttft_p99_s"]
    for cls in ("chat", "low-latency"):
        lo, hi = (next(i for i, (t, q) in enumerate(zip(traffic, qps, strict=True))
                       if t == cls and q == v) for v in (1, 8))  # fmt: skip
        assert tok[hi] > tok[lo] and ttft[hi] >= ttft[lo] - 0.05
    assert set(r.columns["serving.devices"].tolist()) == {1}
    assert np.all(r.columns["serving.usd_per_million_output_tokens"] > 0)


class FlakyKind(CountingKind):
    """Fails on one sub-problem while ``fail`` is set: an interrupted sweep."""

    name = "test_flaky"
    fail: ClassVar[bool] = True

    def evaluate_point(
        self, device: Device, params: Mapping[str, Any], seed: int
    ) -> dict[str, Any]:
        if FlakyKind.fail and params["work"] == 8192:
            raise SpecError("simulated crash")
        return super().evaluate_point(device, params, seed)


register_kind(FlakyKind)


def test_interrupted_sweep_resumes_from_cache(tmp_path: Path) -> None:
    data = _with(metrics=[{"kind": "test_flaky"}])
    sweep = load_sweep(_write(tmp_path, data))
    FlakyKind.fail = True
    with SweepCache(tmp_path / "c.sqlite") as c, pytest.raises(SpecError, match="simulated crash"):
        run_sweep(sweep, cache=c)
    FlakyKind.fail = False
    with SweepCache(tmp_path / "c.sqlite") as c:
        r = run_sweep(sweep, cache=c)
    # units run one per task in order (work 512, 2048, 8192 per device): the finished ones were
    # committed before the crash, so only the failed sub-problems are computed again
    s = r.stats.kinds[0]
    assert s.cache_hits > 0 and s.computed < s.units
    assert np.array_equal(
        r.columns["test_flaky.value"], (r.columns["batch"] * r.columns["context"]).astype(float)
    )
