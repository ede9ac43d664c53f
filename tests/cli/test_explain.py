"""``hwsim explain`` on three canonical runs: a compute-bound GEMM, an HBM-bound decode step and
a network-bound all-to-all. For each: the named bound, the top suggestion, and every quoted
what-if re-simulated here from scratch with the simulator itself (not through explain)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from hwsim.cli.app import app
from hwsim.spec.load import load_device
from hwsim.spec.overrides import apply_overrides

runner = CliRunner()

#: The simulators are deterministic; a quoted time is the same float computed again, so the
#: tolerance only absorbs the JSON round trip (repr of a float is exact; 1e-12 is headroom).
SAME = 1e-12


def _explain(*argv: str) -> dict[str, Any]:
    res = runner.invoke(app, ["explain", *argv, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def _check_common(data: dict[str, Any], bound: str) -> dict[str, Any]:
    assert data["bound"] == bound
    assert any(f"{bound}-bound" in s for s in data["story"])
    assert len(data["whatifs"]) >= 3
    top = data["whatifs"][0]
    assert data["top_suggestion"] == top["key"]
    # the top suggestion relieves the named bound and actually helps
    assert bound in top["relieves"]
    assert top["delta"] < -0.05
    times = [w["time_s"] for w in data["whatifs"]]
    assert times == sorted(times)  # fastest first
    for w in data["whatifs"]:  # every quoted delta is the quoted time over the base time
        assert w["delta"] == pytest.approx(w["time_s"] / data["time_s"] - 1.0, rel=SAME)
        assert any(w["title"] in s and w["change"]["spec"] is not None for s in data["story"])
    return top


def test_compute_bound_gemm() -> None:
    from hwsim.plan.gemm import gemm_profile
    from hwsim.sim.gpu_gemm import simulate_gemm

    dev, m, n, k, dtype = "a100-sxm-80gb", 8192, 8192, 8192, "fp16"
    data = _explain("gemm", "--device", dev, "--m", str(m), "--n", str(n), "--k", str(k),
                    "--dtype", dtype)  # fmt: skip
    top = _check_common(data, "compute")
    assert top["lever"] in ("compute", "dtype")
    base = simulate_gemm(load_device(dev), m, n, k, dtype)
    assert data["time_s"] == pytest.approx(base.time_s, rel=SAME)
    for w in data["whatifs"]:
        ch = w["change"]
        d = apply_overrides(load_device(dev), ch["spec"])
        p = {"m": m, "n": n, "k": k, "dtype": dtype, **ch["params"]}
        prof = apply_overrides(gemm_profile(d)[0], ch["profile"]) if ch["profile"] else None
        fresh = simulate_gemm(d, p["m"], p["n"], p["k"], p["dtype"], profile=prof)
        assert w["time_s"] == pytest.approx(fresh.time_s, rel=SAME), w["key"]


def test_hbm_bound_decode() -> None:
    from hwsim.plan.layout import Layout
    from hwsim.serve.api import make_target, serve_step
    from hwsim.serve.request import StepRequest

    model, dev = "llama-3.1-8b", "h100-sxm"
    data = _explain("decode", "--model", model, "--device", dev, "--batch", "1",
                    "--context", "4096")  # fmt: skip
    top = _check_common(data, "hbm")
    assert top["lever"] in ("bandwidth", "dtype", "layout")
    for w in [None, *data["whatifs"]]:
        ch = w["change"] if w else {"spec": {}, "params": {}}
        p = {"batch": 1, "context": 4096, "dtype": "bf16", "kv_dtype": "bf16", **ch["params"]}
        degrees = {k: p[k] for k in ("tp", "ep", "pp", "dp") if k in p}
        d = apply_overrides(load_device(dev), ch["spec"])
        fresh = serve_step(
            StepRequest(
                model,
                make_target(d, key=dev),
                "decode",
                batch=p["batch"],
                context=p["context"],
                layout=Layout(**degrees) if degrees else None,
                dtype=p["dtype"],
                kv_dtype=p["kv_dtype"],
            ),
            strict=False,
            timeline=False,
        )
        quoted = w["time_s"] if w else data["time_s"]
        assert quoted == pytest.approx(fresh.step_time_s, rel=SAME), w and w["key"]
    # explain decode is `hwsim decode`: same step time
    res = runner.invoke(app, ["decode", "--model", model, "--device", dev, "--batch", "1",
                              "--context", "4096", "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["step_time_s"] == pytest.approx(data["time_s"], rel=SAME)


def test_network_bound_alltoall() -> None:
    from hwsim.plan.moe import synthetic_dispatch_plan
    from hwsim.sim.alltoall import simulate_alltoall
    from hwsim.sim.topology import build_topology
    from hwsim.spec.cluster import load_cluster

    cluster, ep, tokens = "h800-deepseek", 32, 1024
    data = _explain("moe", "--cluster", cluster, "--ep", str(ep), "--tokens", str(tokens))
    top = _check_common(data, "rdma")
    assert top["lever"] in ("layout", "bandwidth", "dtype")
    for w in [None, *data["whatifs"]]:
        ch = w["change"] if w else {"spec": {}, "params": {}}
        p = {"ep": ep, "topk_groups": 4, "dtype": "fp8", **ch["params"]}
        c = apply_overrides(load_cluster(cluster), ch["spec"])
        plan, _, _ = synthetic_dispatch_plan(
            p["ep"], tokens, 7168, 256, 8, p["topk_groups"], "deepep", 8, 0, 0,
            dispatch_dtype=p["dtype"],
        )  # fmt: skip
        topo = build_topology(c, max(1, p["ep"] // 8))
        fresh = simulate_alltoall(topo, plan, "normal", "dispatch", dtype=p["dtype"])
        quoted = w["time_s"] if w else data["time_s"]
        assert quoted == pytest.approx(fresh.time_s, rel=SAME), w and w["key"]


def test_from_json_and_html(tmp_path: Path) -> None:
    res = runner.invoke(app, ["gemm", "--device", "h100-sxm", "--m", "16", "--n", "4096",
                              "--k", "4096", "--dtype", "bf16", "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    saved = tmp_path / "gemm.json"
    saved.write_text(res.stdout)
    html = tmp_path / "explain.html"
    out = runner.invoke(app, ["explain", "--from", str(saved), "--html", str(html), "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["params"] == {"device": "h100-sxm", "m": 16, "n": 4096, "k": 4096,
                              "dtype": "bf16"}  # fmt: skip
    page = html.read_text()
    for title in ("roofline point", "Time by resource", "Bytes per memory level"):
        assert title in page
    # explain's own JSON explains again, to the same numbers
    again = tmp_path / "explain.json"
    again.write_text(out.stdout)
    twice = runner.invoke(app, ["explain", "--from", str(again), "--json"])
    assert json.loads(twice.stdout)["time_s"] == data["time_s"]


def test_rich_output_and_bad_input(tmp_path: Path) -> None:
    res = runner.invoke(app, ["explain", "gemm", "--device", "h100-sxm", "--m", "512",
                              "--n", "512", "--k", "512"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "re-simulated" in res.output and "What-ifs" in res.output
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"hello": 1}))
    from hwsim.cli import guard

    assert guard.run(app, ["explain", "--from", str(bad)]) == 2
    assert guard.run(app, ["explain", "gemm", "--device", "nope", "--m", "1", "--n", "1",
                           "--k", "1"]) == 2  # fmt: skip


def _saved_run(tmp_path: Path, name: str, argv: list[str]) -> tuple[dict[str, Any], Path]:
    res = runner.invoke(app, [*argv, "--json"])
    assert res.exit_code == 0, res.output
    path = tmp_path / f"{name}.json"
    path.write_text(res.stdout)
    return json.loads(res.stdout), path


_MOE = ["moe", "--cluster", "h800-deepseek", "--ep", "16", "--tokens", "256"]


@pytest.mark.parametrize(
    ("name", "extra", "param", "value"),
    [
        ("sms", ["--sms", "12"], "comm_sms", 12),
        ("nodes", ["--nodes", "3"], "nodes", 3),
        ("redundant", ["--redundant", "16"], "redundant", 16),
        ("combine", ["--phase", "combine"], "phase", "combine"),
        ("ep-below-node", ["--ep", "4"], "ep", 4),
        ("bf16", ["--dtype", "bf16", "--routing", "uniform", "--seed", "3"], "dtype", "bf16"),
    ],
)
def test_from_moe_json_uses_every_recorded_arg(
    tmp_path: Path, name: str, extra: list[str], param: str, value: object
) -> None:
    """`hwsim explain --from` a `hwsim moe --json` run rebuilds that run: every recorded input
    (here one changed from its default per case) reaches the subject, and the explained time is
    the run's time (same simulator, same inputs: exact up to the JSON round trip)."""
    run, saved = _saved_run(tmp_path, name, [*_MOE, *extra])
    data = _explain("--from", str(saved))
    assert data["params"][param] == value
    assert data["time_s"] == pytest.approx(run["time_s"], rel=SAME)


def test_moe_args_change_the_time() -> None:
    """The recorded args above are not idle: SMs, redundant experts, phase and EP each move the
    run's time away from the default (so the equality above tests that they were used)."""
    base = json.loads(runner.invoke(app, [*_MOE, "--json"]).stdout)["time_s"]
    for extra in (["--sms", "12"], ["--redundant", "16"], ["--phase", "combine"], ["--ep", "4"]):
        t = json.loads(runner.invoke(app, [*_MOE, *extra, "--json"]).stdout)["time_s"]
        assert t != pytest.approx(base, rel=1e-6), extra


def test_from_attention_json_uses_detail(tmp_path: Path) -> None:
    """`hwsim attention --detail tile` is recorded (`detail`) and explained with the same
    detail, to the run's time."""
    argv = ["attention", "--device", "h100-sxm", "--batch", "1", "--heads", "8", "--seqlen",
            "1024", "--causal", "--detail", "tile"]  # fmt: skip
    run, saved = _saved_run(tmp_path, "attn", argv)
    data = _explain("--from", str(saved))
    assert data["params"]["detail"] == "tile"
    assert data["time_s"] == pytest.approx(run["time_s"], rel=SAME)


@pytest.mark.parametrize(
    ("name", "argv", "time_key"),
    [
        ("gemm", ["gemm", "--device", "h100-sxm", "--m", "16", "--n", "4096", "--k", "4096",
                  "--dtype", "bf16"], "time_s"),
        ("decode", ["decode", "--model", "llama-3.1-8b", "--device", "h100-sxm", "--batch", "4",
                    "--context", "2048"], "step_time_s"),
    ],
)  # fmt: skip
def test_from_json_reproduces_the_run(
    tmp_path: Path, name: str, argv: list[str], time_key: str
) -> None:
    """`hwsim explain --from` the --json of a GEMM or decode run explains that run: same time."""
    run, saved = _saved_run(tmp_path, name, argv)
    data = _explain("--from", str(saved))
    assert data["time_s"] == pytest.approx(run[time_key], rel=SAME)


def test_latency_bound_lpu_decode_skips_an_invalid_wider_layout() -> None:
    """Llama-3.1-70B on 448 Groq chips is TP64: doubling TP (128) does not divide its 64 heads,
    so that what-if is left out instead of failing the whole explanation."""
    data = _explain("decode", "--model", "llama-3.1-70b", "--device", "groq-lpu",
                    "--dtype", "fp8")  # fmt: skip
    assert data["bound"] == "latency"  # the fitted per-operator latency dominates at batch 1
    assert all(not w["key"].startswith("tp-") for w in data["whatifs"])
    # the software lever: half the fitted per-operator latency, re-simulated exactly as
    # `hwsim whatif --set profile.op_latency=x0.5` runs it
    assert data["top_suggestion"] == "op-latency-half"
    top = data["whatifs"][0]
    assert top["change"]["profile"] == {"op_latency": "x0.5"} and top["delta"] < -0.3
    from hwsim.serve.request import StepRequest
    from hwsim.serve.whatif import whatif

    w = whatif(StepRequest("llama-3.1-70b", "groq-lpu", dtype="fp8"), ["profile.op_latency=x0.5"])
    assert top["time_s"] == pytest.approx(w.modified.step_time_s, rel=SAME)


def test_compute_is_named_by_device_kind() -> None:
    """A wafer has no tensor cores: its compute bound and what-if use the kind's own words."""
    data = _explain("decode", "--model", "llama-3.1-8b", "--device", "cerebras-wse3")
    text = " ".join(data["story"])
    assert data["bound"] == "compute" and "FMAC datapaths" in text
    assert "tensor core" not in text and "tensor-core" not in text
    assert any(w["title"] == "2× matrix rate" for w in data["whatifs"])


def test_attention_on_spatial_kinds_uses_their_mapper() -> None:
    """hwsim explain attention on an LPU times the call with the LPU mapper (the same time as
    hwsim attention), and its top what-if is the mapper's own lever."""
    from hwsim.plan.attention import AttentionShape
    from hwsim.sim.spatial_attention import simulate_attention_spatial

    argv = ["attention", "--device", "groq-lpu", "--batch", "1", "--heads", "64",
            "--kv-heads", "8", "--seqlen", "1", "--seqlen-kv", "8192"]  # fmt: skip
    data = _explain(*argv)
    ref = simulate_attention_spatial(
        load_device("groq-lpu"), AttentionShape(1, 64, 8, 1, 8192, 128)
    )
    assert data["time_s"] == pytest.approx(ref.time_s, rel=SAME)
    assert data["top_suggestion"] == "op-latency-half" and data["whatifs"][0]["delta"] < -0.2
    assert not any("tensor core" in line for line in data["story"])
    # the wafer: its bound is the region's compute, busy the whole call (not 0% of the chip)
    wafer = _explain(*[("cerebras-wse3" if a == "groq-lpu" else a) for a in argv])
    assert wafer["bound"] == "compute"
    assert any("FMAC datapaths are busy 100%" in line for line in wafer["story"])
