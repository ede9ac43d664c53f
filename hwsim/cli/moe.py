"""``hwsim moe`` (one MoE dispatch/combine on a cluster) and ``hwsim topology`` (the graph)."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from hwsim.cli.common import console, print_json
from hwsim.sim.alltoall_run import Routing, prepare_alltoall, run_alltoall
from hwsim.spec.errors import SpecError

if TYPE_CHECKING:
    from hwsim.sim.alltoall import AllToAllResult


def _write(path: Path, text: str, what: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as err:
        raise SpecError(f"cannot write the {what}: {err.strerror or err}", file=str(path)) from None


def _overlap(
    problem: Routing,
    kernel: str,
    sms: int | None,
    moe_inter: int,
    attention_s: float,
    nvlink_intranode: bool | None = None,
) -> dict[str, Any]:
    """Dispatch (FP8) and combine (BF16) of one micro-batch of half the tokens, the expert
    GEMMs of the busiest rank, and the two-micro-batch schedule."""
    from hwsim.sim.alltoall import simulate_alltoall
    from hwsim.sim.moe_overlap import dual_microbatch_overlap

    half = dataclasses.replace(problem, tokens=max(1, problem.tokens // 2))
    # one routing plan for both phases (the combine reverses the dispatch), built once
    topo, plan, _ = prepare_alltoall(half)
    hidden = problem.hidden
    out = {
        phase: simulate_alltoall(
            topo, plan, kernel, phase, dtype=dt, comm_sms=sms, nvlink_intranode=nvlink_intranode
        )
        for phase, dt in (("dispatch", "fp8"), ("combine", "bf16"))
    }
    rows = int(plan.expert_copies.sum(axis=0).max())  # (token, expert) rows of the busiest rank
    dev = topo.device
    if dev.kind == "gpu":
        from hwsim.sim.gpu_gemm import simulate_gemm

        experts_s = simulate_gemm(dev, rows, 2 * moe_inter, hidden, "fp8").time_s
        experts_s += simulate_gemm(dev, rows, hidden, moe_inter, "fp8").time_s
        model = "hwsim gemm, fp8"
        frac = min(0.5, (sms or 24) / dev.compute.units_count)
    else:
        experts_s = 2 * rows * 3 * hidden * moe_inter / dev.peak_flops("fp8")
        model = "peak FP8 rate (roofline bound)"
        frac = 0.0
    ov = dual_microbatch_overlap(
        attention_s, experts_s, out["dispatch"].time_s, out["combine"].time_s, comm_sm_fraction=frac
    )
    d: dict[str, Any] = ov.to_dict()
    d.update(
        {
            "dispatch_s": out["dispatch"].time_s,
            "combine_s": out["combine"].time_s,
            "experts_s": experts_s,
            "attention_s": attention_s,
            "experts_model": model,
            "comm_sm_fraction": frac,
            "tokens_per_microbatch": half.tokens,
        }
    )
    return d


def _table(res: AllToAllResult, wall_s: float, band: str = "") -> Table:
    t = Table(title=f"{res.kernel} {res.phase} ({res.dtype}) on {res.cluster}, EP {res.ep}")
    t.add_column("metric")
    t.add_column("value", justify="right")
    # DeepEP's two metrics: bytes leaving the node per rank, and bytes inside it; named after
    # the links they cross on GPUs, after the cluster's own link kinds elsewhere (Groq: c2c)
    kinds = [k for k in res.bytes_by_link_kind if not k.startswith("sm")]
    gpu = not kinds or {"nvlink", "rdma"} & set(kinds)
    inter, intra = ("RDMA", "NVLink") if gpu else ("inter-node", f"intra-node ({'/'.join(kinds)})")
    if gpu and kinds and "nvlink" not in kinds:  # pure-RDMA low latency: same metric, no NVLink
        intra = "intra-node (via RDMA)"
    rows = [
        ("time", f"{res.time_s * 1e6:.1f} us{band}"),
        (f"{inter} GB/s (DeepEP def.)", f"{res.rdma_gbps:.1f}"),
        (f"{intra} GB/s (DeepEP def.)", f"{res.nvlink_gbps:.1f}"),
        ("LL GB/s (selections x msg)", f"{res.ll_gbps:.1f}"),
        ("max link utilisation", f"{res.max_link_utilization:.0%}"),
        ("imbalance (max/mean recv)", f"{res.imbalance:.2f}"),
        ("flows / transfers", f"{res.flows} / {res.transfers}"),
        ("events / rate updates", f"{res.events} / {res.rate_updates}"),
        ("wall", f"{wall_s:.2f} s"),
    ]
    rows += [(f"bytes {k}", f"{v / 1e6:.1f} MB") for k, v in sorted(res.bytes_by_link_kind.items())]
    for r in rows:
        t.add_row(*r)
    return t


def moe_cmd(
    cluster: Annotated[
        str, typer.Option("--cluster", help="cluster name or YAML path")
    ] = "h800-deepseek",
    ep: Annotated[int, typer.Option("--ep", help="expert-parallel ranks")] = 32,
    tokens: Annotated[int, typer.Option("--tokens", help="tokens per rank")] = 4096,
    hidden: Annotated[int, typer.Option("--hidden", help="hidden size")] = 7168,
    experts: Annotated[int, typer.Option("--experts", help="routed experts")] = 256,
    topk: Annotated[int, typer.Option("--topk", help="experts per token")] = 8,
    topk_groups: Annotated[int, typer.Option("--topk-groups", help="max nodes per token")] = 4,
    phase: Annotated[str, typer.Option("--phase", help="dispatch | combine")] = "dispatch",
    dtype: Annotated[
        str | None, typer.Option("--dtype", help="fp8 | bf16 (default fp8 dispatch, bf16 combine)")
    ] = None,
    kernel: Annotated[str, typer.Option("--kernel", help="normal | low-latency | nccl")] = "normal",
    ll_nvlink: Annotated[
        bool,
        typer.Option(
            "--ll-nvlink",
            help="low-latency kernel: reach peers in the same node over NVLink (DeepEP since "
            "2025-06); default: pure RDMA through the NIC for every peer, as DeepEP's README "
            "table was measured",
        ),
    ] = False,
    routing: Annotated[str, typer.Option("--routing", help="deepep | uniform | zipf:S")] = "deepep",
    seed: Annotated[int, typer.Option("--seed")] = 0,
    nodes: Annotated[
        int | None, typer.Option("--nodes", help="nodes (default: enough for --ep)")
    ] = None,
    redundant: Annotated[int, typer.Option("--redundant", help="redundant expert copies")] = 0,
    sms: Annotated[
        int | None, typer.Option("--sms", help="communication SMs (normal kernel)")
    ] = None,
    trace: Annotated[
        Path | None, typer.Option("--trace", help="write a Perfetto trace here")
    ] = None,
    html: Annotated[
        Path | None, typer.Option("--html", help="write link-load figures here")
    ] = None,
    overlap: Annotated[
        bool,
        typer.Option(
            "--overlap",
            help="also time two micro-batches' dispatch+combine overlapped with the expert "
            "GEMMs (DeepSeek-V3 style)",
        ),
    ] = False,
    moe_inter: Annotated[int, typer.Option("--moe-inter", help="expert FFN width")] = 2048,
    attn_us: Annotated[
        float, typer.Option("--attn-us", help="attention time per micro-batch (us)")
    ] = 0.0,
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Simulate one MoE dispatch or combine on a cluster, flow by flow.

    Routing is DeepEP's test distribution (abs(randn)+1, group-limited top-k), uniform or
    Zipf-skewed; the plan is hwsim.plan.moe's, the kernels are DeepEP normal (two-hop
    IB→NVLink), DeepEP low-latency (pure RDMA per expert, every peer through the NIC unless
    --ll-nvlink) and a plain NCCL all-to-all.

    Example: hwsim moe --cluster h800-deepseek --ep 32 --tokens 4096 --phase dispatch --json
    """
    from hwsim.sim.trace import chrome_trace

    t0 = time.perf_counter()
    problem = Routing(
        cluster, ep, tokens, hidden, experts, topk, topk_groups, routing, seed, nodes, redundant
    )
    topo, res, plan_s = run_alltoall(
        problem,
        phase,
        dtype,
        kernel,
        sms,
        trace is not None,
        nvlink_intranode=True if ll_nvlink else None,
    )
    ov = None
    if overlap:
        resolved = dataclasses.replace(problem, nodes=topo.nodes)
        ov = _overlap(resolved, kernel, sms, moe_inter, attn_us * 1e-6, True if ll_nvlink else None)
    wall = time.perf_counter() - t0
    if trace is not None:
        names = [lk.name for lk in res.links]
        doc = chrome_trace(
            res.trace,
            res.rate_log,
            names,
            metadata={"title": f"{kernel} {phase} EP{ep} on {cluster}"},
        )
        _write(trace, json.dumps(doc), "trace")
    if html is not None:
        from hwsim.report.network_figures import link_load_figure, topology_figure
        from hwsim.report.page import Section, render_page

        page = render_page(
            f"MoE {phase}: {kernel} on {cluster}, EP {ep}",
            "Flow-level simulation of one MoE all-to-all (hwsim moe).",
            [
                Section(
                    "Link loads on the cluster graph",
                    "Every cable coloured by the average utilisation of its busier "
                    "direction during the run.",
                    topology_figure(topo, res.links),
                ),
                Section(
                    "Bytes, busiest links and per-rank time",
                    "Bytes per link kind, the most utilised links, and when each rank "
                    "finished (the slowest rank sets the kernel time).",
                    link_load_figure(res),
                ),
            ],
        )
        _write(html, page, "HTML page")
    from hwsim.sim.trust import trust_for

    variant = "low-latency-nvlink" if ll_nvlink else kernel
    trust = trust_for("alltoall", res.cluster, variant)
    if json_out:
        d: dict[str, Any] = res.to_dict()
        d.update(trust.to_dict())
        d.update(
            {
                "wall_s": wall,
                "sim_wall_s": res.wall_s,
                "plan_wall_s": plan_s,
                "tokens_per_rank": tokens,
                "experts": experts,
                "topk": topk,
                "topk_groups": topk_groups,
                "routing": routing,
                "seed": seed,
                # every input as given: `hwsim explain --from` rebuilds the run from these
                "args": {
                    "cluster": cluster,
                    "ep": ep,
                    "tokens": tokens,
                    "hidden": hidden,
                    "experts": experts,
                    "topk": topk,
                    "topk_groups": topk_groups,
                    "phase": phase,
                    "dtype": res.dtype,  # the wire format used (default: fp8 / bf16 by phase)
                    "kernel": kernel,
                    "routing": routing,
                    "seed": seed,
                    "nodes": topo.nodes,
                    "redundant": redundant,
                    "comm_sms": sms,
                    "ll_nvlink": ll_nvlink,
                },
                "trace_file": str(trace) if trace else None,
                "html_file": str(html) if html else None,
            }
        )
        if ov is not None:
            d["overlap"] = ov
        print_json(d)
        return
    console.print(_table(res, wall, f" {trust.band()}"))
    cal = "calibrated" if trust.calibrated else "not calibrated"
    console.print(f"expected error: {trust.band()} ({cal}; {trust.basis})")
    if ov is not None:
        console.print(
            f"two micro-batches: total {ov['total_s'] * 1e6:.1f} us, exposed communication "
            f"{ov['exposed_comm_s'] * 1e6:.1f} us, hidden {ov['hidden_comm_s'] * 1e6:.1f} us "
            f"(experts {ov['experts_s'] * 1e6:.1f} us per micro-batch: {ov['experts_model']})"
        )


def topology_cmd(
    cluster: Annotated[str, typer.Argument(help="cluster name or YAML path")],
    nodes: Annotated[
        int | None, typer.Option("--nodes", help="node count (default: YAML's)")
    ] = None,
    html: Annotated[Path | None, typer.Option("--html", help="write the graph figure here")] = None,
    png: Annotated[
        Path | None, typer.Option("--png", help="also write a PNG (needs the kaleido package)")
    ] = None,
    load: Annotated[
        bool,
        typer.Option("--load/--no-load", help="colour links by a DeepEP dispatch over all devices"),
    ] = True,
    kernel: Annotated[str, typer.Option("--kernel")] = "normal",
    tokens: Annotated[
        int, typer.Option("--tokens", help="tokens per rank for the load run")
    ] = 4096,
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Build a cluster's graph; optionally run an all-to-all and colour links by load.

    Example: hwsim topology h800-deepseek --nodes 4 --html out/topo.html
    """
    from hwsim.report.network_figures import graph_summary, topology_figure
    from hwsim.sim.topology import build_topology
    from hwsim.spec.cluster import list_clusters

    topo = build_topology(cluster, nodes)
    summary = graph_summary(topo)
    res = None
    if load and topo.ranks > 1:
        ep = topo.ranks
        # DeepSeek-V3's routing: hidden 7168, 256 experts (or one per rank), top-8 in 4 nodes
        load_problem = Routing(cluster, ep, tokens, 7168, max(256, ep), 8, 4, nodes=topo.nodes)
        _, res, _ = run_alltoall(load_problem, "dispatch", None, kernel)
        summary["run"] = res.to_dict()
    if html is not None:
        fig = topology_figure(topo, res.links if res else None)
        _write(html, fig.to_html(include_plotlyjs=True, full_html=True), "HTML figure")
        summary["html_file"] = str(html)
    if png is not None:
        fig = topology_figure(topo, res.links if res else None, height=700)
        try:
            png.parent.mkdir(parents=True, exist_ok=True)
            fig.write_image(str(png), width=1400, height=700, scale=1)
        except (ImportError, RuntimeError, ValueError) as err:
            raise SpecError(
                f"cannot write a PNG ({str(err).strip().splitlines()[0]}); use --html, or "
                "pip install 'kaleido>=1'",
                file=str(png),
            ) from None
        summary["png_file"] = str(png)
    if json_out:
        print_json(summary)
        return
    t = Table(title=f"{topo.name}: {topo.nodes} node(s) x {topo.per_node} {topo.cluster.device}")
    t.add_column("link kind")
    t.add_column("directed links", justify="right")
    t.add_column("bandwidth", justify="right")
    kinds = summary["link_kinds"]
    assert isinstance(kinds, dict)
    for k, v in sorted(kinds.items()):
        lo, hi = v["bandwidth_Bps_min"] / 1e9, v["bandwidth_Bps_max"] / 1e9
        t.add_row(
            k, str(int(v["links"])), f"{lo:.1f} GB/s" if lo == hi else f"{lo:.1f}-{hi:.1f} GB/s"
        )
    console.print(t)
    if res is not None:
        console.print(
            f"dispatch over all {res.ep} devices: {res.time_s * 1e6:.0f} us, max link "
            f"utilisation {res.max_link_utilization:.0%}"
        )
    console.print(f"clusters: {', '.join(list_clusters())}")


def register(app: typer.Typer) -> None:
    app.command("moe")(moe_cmd)
    app.command("topology")(topology_cmd)
