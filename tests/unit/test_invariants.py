"""Invariants over random simulations: the checks themselves, the engine, and the roofline.

Random engine scenarios: 1-4 links, 1-7 processes, each a chain of weighted multi-link
transfers, compute and fixed delays (the shapes the mappers build). Every scenario must satisfy
time > 0 and finite, no link over 100 %, bytes conserved per link, time ≥ the engine's own
roofline (max over links of bytes / bandwidth, and each process's serial compute + delays),
byte-identical JSON on a rerun, and no slowdown when *every* bandwidth and FLOP/s grows.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.roofline import analytic as roofline_mod
from hwsim.roofline import ops
from hwsim.sim import invariants as inv
from hwsim.sim.engine import Engine

# ---- the checks on hand-made inputs --------------------------------------------------------


def test_check_time() -> None:
    inv.check_time(1e-9)
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(inv.InvariantError, match="finite and > 0"):
            inv.check_time(bad)


def test_check_utilization() -> None:
    inv.check_utilization({"hbm": {"utilization": 1.0, "peak_rate_fraction": 1.0 + 1e-12}})
    with pytest.raises(inv.InvariantError, match="hbm: peak_rate_fraction"):
        inv.check_utilization({"hbm": {"utilization": 0.5, "peak_rate_fraction": 1.01}})


def test_check_bytes_conserved() -> None:
    inv.check_bytes_conserved({"a": 100.0, "b": 0.0}, {"a": 100.0})
    with pytest.raises(inv.InvariantError, match=r"b: moved 5\.0 B, the plan sent 0\.0 B"):
        inv.check_bytes_conserved({"a": 100.0, "b": 5.0}, {"a": 100.0})


def test_check_roofline_bound() -> None:
    inv.check_roofline_bound(1.0, 1.0)
    with pytest.raises(inv.InvariantError, match="beats the roofline bound"):
        inv.check_roofline_bound(2.0, 1.0)


def test_check_monotone() -> None:
    assert inv.check_monotone(lambda f: 10.0 / f, (1, 2, 4)) == [10.0, 5.0, 2.5]
    with pytest.raises(inv.InvariantError, match="slower"):
        inv.check_monotone(lambda f: 10.0 + (f == 2), (1, 2))


def test_check_deterministic_and_json() -> None:
    @dataclass(frozen=True)
    class R:
        time_s: float
        per_level: dict[str, float]

    text = inv.check_deterministic(lambda: R(1.5, {"b": 2.0, "a": np.float64(1.0)}))
    assert text == '{"per_level":{"a":1.0,"b":2.0},"time_s":1.5}'
    counter = iter(range(10))
    with pytest.raises(inv.InvariantError, match="differs"):
        inv.check_deterministic(lambda: {"x": next(counter)})


def test_check_result_by_naming_convention() -> None:
    inv.check_result({"time_s": 1.0, "level_time_s": {"hbm": 0.5}, "intensity": math.inf})
    cases = [
        ({"time_s": 0.0}, "total time must be > 0"),
        ({"level_time_s": {"hbm": -1.0}}, "level_time_s.hbm"),
        ({"hbm_utilization": 1.2}, "outside"),
        ({"stats": [{"moved_bytes": math.nan}]}, "NaN"),
    ]
    for result, fragment in cases:
        with pytest.raises(inv.InvariantError, match=fragment):
            inv.check_result(result)


def test_debug_check_runs_only_in_debug_mode() -> None:
    inv.debug_check({"time_s": -1.0})  # off: free, no check
    with inv.debug_checks(), pytest.raises(inv.InvariantError):
        inv.debug_check({"time_s": -1.0})
    assert not inv.enabled()  # the block ended
    with inv.debug_checks(), inv.debug_checks(on=False):
        inv.debug_check({"time_s": -1.0})  # switched off inside


# ---- random engine scenarios ----------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    kind: str  # "transfer" | "compute" | "delay"
    links: tuple[int, ...] = ()
    amount: float = 0.0  # bytes, FLOPs or seconds
    weights: tuple[float, ...] = ()


@dataclass(frozen=True)
class Scenario:
    bandwidth_Bps: tuple[float, ...]
    latency_s: tuple[float, ...]
    rate_flops: float
    procs: tuple[tuple[Step, ...], ...]

    def expected_bytes(self) -> dict[str, float]:
        out = {f"l{i}": 0.0 for i in range(len(self.bandwidth_Bps))}
        for steps in self.procs:
            for s in steps:
                for li, w in zip(s.links, s.weights, strict=True):
                    out[f"l{li}"] += s.amount * w
        return out


def random_scenario(seed: int) -> Scenario:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 5))
    procs = []
    for _ in range(int(rng.integers(1, 8))):
        steps = []
        for _ in range(int(rng.integers(1, 5))):
            kind = str(rng.choice(["transfer", "transfer", "compute", "delay"]))
            if kind == "transfer":
                links = tuple(sorted(set(rng.integers(0, n, size=int(rng.integers(1, n + 1))))))
                weights = tuple(float(rng.choice([1.0, rng.uniform(0.1, 1.0)])) for _ in links)
                steps.append(Step(kind, links, float(rng.uniform(1.0, 1e3)), weights))
            else:
                steps.append(Step(kind, amount=float(rng.uniform(0.1, 20.0))))
        procs.append(tuple(steps))
    return Scenario(
        tuple(float(b) for b in rng.uniform(1.0, 100.0, n)),
        tuple(float(x) for x in rng.uniform(0.0, 0.5, n)),
        10.0,
        tuple(procs),
    )


def simulate(sc: Scenario, bw_scale: float = 1.0, flops_scale: float = 1.0) -> Engine:
    eng = Engine()
    links = [
        eng.link(f"l{i}", b * bw_scale, lat)
        for i, (b, lat) in enumerate(zip(sc.bandwidth_Bps, sc.latency_s, strict=True))
    ]

    def proc(steps: tuple[Step, ...]) -> Iterator[Any]:
        for s in steps:
            if s.kind == "transfer":
                yield eng.transfer([links[i] for i in s.links], s.amount, weights=s.weights)
            elif s.kind == "compute":
                yield eng.compute(s.amount, sc.rate_flops * flops_scale)
            else:
                yield eng.delay(s.amount)

    for steps in sc.procs:
        eng.env.process(proc(steps))
    eng.run()
    return eng


def engine_lower_bound_s(sc: Scenario) -> float:
    """The engine's roofline: no link moves faster than its bandwidth, no process runs its own
    compute and delays faster than serially."""
    per_link = [
        b / bw for b, bw in zip(sc.expected_bytes().values(), sc.bandwidth_Bps, strict=True)
    ]
    per_proc = [
        sum(
            s.amount / sc.rate_flops if s.kind == "compute" else s.amount
            for s in steps
            if s.kind != "transfer"
        )
        for steps in sc.procs
    ]
    return max(per_link + per_proc)


SEEDS = st.integers(0, 2**32 - 1)


@settings(max_examples=40, deadline=None)
@given(SEEDS)
def test_engine_invariants(seed: int) -> None:
    sc = random_scenario(seed)
    eng = simulate(sc)
    # bytes conserved to 1e-9 relative: the engine integrates rate x time in floating point
    inv.check_engine(eng, sc.expected_bytes(), what=f"seed {seed}")
    inv.check_time(eng.env.now)
    inv.check_roofline_bound(engine_lower_bound_s(sc), eng.env.now, what=f"seed {seed}")


def _engine_json(sc: Scenario) -> dict[str, Any]:
    eng = simulate(sc)
    return {"time_s": eng.env.now, "events": eng.events, "links": eng.link_stats()}


@settings(max_examples=15, deadline=None)
@given(SEEDS)
def test_engine_deterministic(seed: int) -> None:
    sc = random_scenario(seed)
    inv.check_deterministic(lambda: _engine_json(sc), what=f"seed {seed}")


@settings(max_examples=15, deadline=None)
@given(SEEDS)
def test_engine_monotone_when_everything_is_faster(seed: int) -> None:
    """Scaling every bandwidth and FLOP/s by f ≥ 1 never slows a run (latencies and delays
    fixed). Holds exactly: the fluid schedule only gets shorter."""
    sc = random_scenario(seed)
    inv.check_monotone(
        lambda f: simulate(sc, bw_scale=f, flops_scale=f).env.now, (1.0, 1.5, 4.0), f"seed {seed}"
    )


def _anomaly_s(flops_scale: float) -> float:
    """P2 streams 10 B over a 1 B/s link, then waits a fixed 10 s (its critical path).
    P1 computes 10 FLOP, then sends 10 B over the same link. Faster compute makes P1's transfer
    start while P2's is still running, halving P2's share: P2 ends later, so does the run."""
    eng = Engine()
    link = eng.link("L", 1.0)

    def p1() -> Iterator[Any]:
        yield eng.compute(10.0, 1.0 * flops_scale)
        yield eng.transfer(link, 10.0)

    def p2() -> Iterator[Any]:
        yield eng.transfer(link, 10.0)
        yield eng.delay(10.0)

    eng.env.process(p1())
    eng.env.process(p2())
    return eng.run()


@pytest.mark.xfail(
    strict=True,
    reason="scheduling anomaly of fair sharing: 2x FLOP/s takes 25 s instead of 20 s, because "
    "the engine shares a link fairly among whatever is active, with no notion of the critical "
    "path (Graham's list-scheduling anomaly). Random cases raising ONE resource show up to ~8% "
    "slowdowns; scaling every resource together is monotone (tested above). Reported to the "
    "engine owner; see docs/reliability.md.",
)
def test_engine_monotone_when_one_resource_is_faster() -> None:
    assert _anomaly_s(1.0) == pytest.approx(20.0)  # hand-computed: 10 s + 10 s, serial on L
    inv.check_monotone(_anomaly_s, (1.0, 2.0), "2x FLOP/s on one process")


# ---- the analytic roofline over built-in devices and example kernels ------------------------


def _devices() -> list[str]:
    from hwsim.spec.load import list_devices

    return list_devices()


def yaml_form(data: Any, scale: dict[str, float] | None = None) -> Any:
    """A dumped spec back in YAML form (every sourced leaf ``{value: <text>, source, ...}``),
    with the quantities of the dimensions in ``scale`` (e.g. ``{"B/s": 2}``) multiplied."""
    scale = scale or {}
    if isinstance(data, dict):
        if {"value", "dim", "text", "source"} <= set(data):
            factor = scale.get(data["dim"])
            value = data["text"] if factor is None else f"{data['value'] * factor!r} {data['dim']}"
            extra = {k: data[k] for k in ("derived", "note") if data.get(k) is not None}
            return {"value": value, "source": data["source"], **extra}
        return {k: yaml_form(v, scale) for k, v in data.items()}
    if isinstance(data, list):
        return [yaml_form(v, scale) for v in data]
    return data


@pytest.mark.parametrize("name", _devices())
def test_roofline_results_are_sane_and_monotone(name: str) -> None:
    from hwsim.spec.device import Device
    from hwsim.spec.load import load_device

    dev = load_device(name)
    data = dev.model_dump(mode="json", exclude_none=True)
    assert Device.model_validate(yaml_form(data)) == dev  # the round trip is exact
    kernels = ops.example_kernels(dev)
    for kernel in kernels:
        r = roofline_mod.roofline(kernel, dev)
        what = f"{name}/{kernel.name}"
        inv.check_result(r, what)
        inv.check_time(r.time_s, what)
        # the bound is the slowest resource, exactly (the roofline is a max, no tolerance)
        assert r.time_s == max(*r.compute_time_s.values(), *r.level_time_s.values())
    for dim in ("B/s", "FLOP/s"):
        faster = Device.model_validate(yaml_form(data, {dim: 2.0}))
        for kernel in kernels:
            inv.check_monotone(
                lambda f, k=kernel, fd=faster: (
                    roofline_mod.roofline(k, fd if f > 1 else dev).time_s
                ),
                (1.0, 2.0),
                f"{name}/{kernel.name} with 2x {dim}",
            )


# ---- debug mode: every engine run is checked -----------------------------------------------
def test_install_engine_checks_catches_an_impossible_run(monkeypatch: pytest.MonkeyPatch) -> None:
    from hwsim.sim import engine as engine_mod

    monkeypatch.setattr(engine_mod.Engine, "run", engine_mod.Engine.run)  # restored afterwards
    inv.install_engine_checks()
    inv.install_engine_checks()  # idempotent: wrapped once
    eng = Engine()
    link = eng.link("hbm", 10.0)
    eng.transfer(link, 100.0)
    assert eng.run() == pytest.approx(10.0)  # a sound run passes: 100 B at 10 B/s
    bad = Engine()
    lk = bad.link("hbm", 10.0)
    bad.transfer(lk, 100.0)
    lk.peak_rate_Bps = 25.0  # as if the scheduler had allocated 250 % of the link
    assert bad.run() == pytest.approx(10.0)  # debug mode off: installed, but not checking
    with (
        inv.debug_checks(),
        pytest.raises(inv.InvariantError, match=r"hbm: peak_rate_fraction = 2\.5"),
    ):
        bad.run()


def test_cli_debug_mode_checks_real_simulations(monkeypatch: pytest.MonkeyPatch) -> None:
    """``hwsim gemm ... --debug`` runs the engine with the checks on, and passes them."""
    import contextlib
    import io

    from hwsim.cli import guard
    from hwsim.cli.app import app
    from hwsim.sim import engine as engine_mod

    monkeypatch.setattr(engine_mod.Engine, "run", engine_mod.Engine.run)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = guard.run(app, ["gemm", "-d", "h100-sxm", "--m", "512", "--n", "512", "--k", "512",
                               "--json", "--debug"])  # fmt: skip
    assert code == 0, err.getvalue()
    assert getattr(engine_mod.Engine.run, "_hwsim_checked", False)
