"""The runs ``hwsim explain`` can take apart, and rebuilding one from a saved ``--json`` result.

One module per subject: a GEMM (:mod:`hwsim.report.explain_gemm`), attention
(:mod:`hwsim.report.explain_attention`), an MoE all-to-all (:mod:`hwsim.report.explain_moe`) and a
whole-model decode step (:mod:`hwsim.report.explain_decode`). Each subject repeats its simulation
with a :class:`~hwsim.report.explain.Change` and proposes what-ifs chosen by the resource that
bounds it. Spec changes go through :func:`hwsim.spec.overrides.apply_overrides` (device, cluster
and kernel profiles alike), so a what-if is exactly what ``hwsim whatif --set PATH=VALUE`` would
run.
"""

from __future__ import annotations

from typing import Any

from hwsim.report.explain_attention import AttentionSubject
from hwsim.report.explain_common import (
    NARROWER,
    _faster_dtype,
    _fill,
    _level_x2,
    _need,
    _peak_path,
    describe_bound,
    device_key,
)
from hwsim.report.explain_gemm import GemmSubject
from hwsim.report.explain_moe import MoeSubject
from hwsim.spec.errors import SpecError

__all__ = [
    "NARROWER",
    "AttentionSubject",
    "GemmSubject",
    "MoeSubject",
    "_faster_dtype",
    "_fill",
    "_level_x2",
    "_peak_path",
    "describe_bound",
    "device_key",
    "subject_from_json",
]


def subject_from_json(data: Any) -> Any:
    """The subject a saved result describes: ``hwsim explain --json`` output (any kind),
    ``hwsim gemm --json``, ``hwsim attention --json``, ``hwsim moe --json`` or a decode step's
    JSON. Raises :class:`SpecError` naming what is missing."""
    from hwsim.report.explain_decode import DecodeSubject

    kinds: dict[str, Any] = {
        "gemm": GemmSubject,
        "attention": AttentionSubject,
        "moe": MoeSubject,
        "decode": DecodeSubject,
    }
    if not isinstance(data, dict):
        raise SpecError("expected a JSON object (a result printed with --json)")
    if "explain" in data and "params" in data:
        cls = kinds.get(str(data["explain"]))
        if cls is None:
            raise SpecError(f"unknown explain kind {data['explain']!r}", key="explain")
        return cls(**data["params"])
    if {"m", "n", "k"} <= set(data):
        _need(data, ("device", "dtype"), "GEMM result")
        return GemmSubject(
            device_key(str(data["device"])), int(data["m"]), int(data["n"]), int(data["k"]),
            str(data["dtype"]),
        )  # fmt: skip
    if "shape" in data and "kernel" in data:
        s = data["shape"]
        _need(data, ("device",), "attention result")
        _need(s, ("batch", "heads", "seqlen_q", "head_dim"), "attention result")
        return AttentionSubject(
            device=device_key(str(data["device"])),
            batch=int(s["batch"]),
            heads=int(s["heads"]),
            seqlen=int(s["seqlen_q"]),
            head_dim=int(s["head_dim"]),
            kv_heads=s.get("kv_heads"),
            seqlen_kv=s.get("seqlen_kv"),
            head_dim_v=s.get("head_dim_v"),
            causal=bool(s.get("causal", False)),
            dtype=str(s.get("dtype", "bf16")),
            kernel=str(data["kernel"]),
            pass_=str(s.get("pass", "fwd")),
            detail=str(data.get("detail", "cta")),
        )
    if "cluster" in data and "ep" in data:
        # the recorded inputs (`args`) win over the result's own fields: a result's `nodes` is
        # the nodes the ranks span, not the topology's node count given with --nodes
        args = {**data, **data.get("args", {})}
        if "tokens" not in args and "tokens_per_rank" in args:
            args["tokens"] = args["tokens_per_rank"]
        _need(args, ("tokens", "experts", "topk"), "MoE all-to-all result")
        return MoeSubject(
            cluster=str(args["cluster"]),
            ep=int(args["ep"]),
            tokens=int(args["tokens"]),
            hidden=int(args.get("hidden", 7168)),
            experts=int(args["experts"]),
            topk=int(args["topk"]),
            topk_groups=args.get("topk_groups"),
            phase=str(args.get("phase", "dispatch")),
            dtype=str(args.get("dtype", "fp8")),
            kernel=str(args.get("kernel", "normal")),
            routing=str(args.get("routing", "deepep")),
            seed=int(args.get("seed", 0)),
            comm_sms=None if args.get("comm_sms") is None else int(args["comm_sms"]),
            nodes=None if args.get("nodes") is None else int(args["nodes"]),
            redundant=int(args.get("redundant", 0)),
        )
    if "model" in data and "phase" in data and "layout" in data:
        from hwsim.report.explain_decode import model_key

        lay = data["layout"] if isinstance(data["layout"], dict) else {}
        return DecodeSubject(
            model=model_key(str(data["model"])),
            device=device_key(str(data["device"])),
            batch=int(data["batch"]),
            context=int(data["context"]),
            dtype=str(data.get("dtype", "bf16")),
            kv_dtype=str(data.get("kv_dtype", "bf16")),
            tp=int(lay.get("tp", 1)),
            ep=int(lay.get("ep", 1)),
            pp=int(lay.get("pp", 1)),
            dp=int(lay.get("dp", 1)),
            phase=str(data["phase"]),
        )
    raise SpecError(
        "cannot tell which run this JSON describes (expected the --json output of hwsim "
        "explain, gemm, attention, moe or a model step)"
    )
