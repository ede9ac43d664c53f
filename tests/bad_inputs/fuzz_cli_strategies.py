"""Hypothesis strategies for hostile ``hwsim`` command lines and files (test_fuzz_cli.py).

Every strategy yields a :class:`Case`: an argv and the files it reads (sweep YAML, Hugging
Face configs, saved results), written by the test into a scratch folder (``@DIR@`` in the argv).
Sizes are log-uniform from 1 to 10^18 (:func:`sizes`), with zero, negatives and just-past-int64
values mixed in, because the bugs live where a size is absurd but well-formed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import yaml
from hypothesis import strategies as st

DIR = "@DIR@"
GPUS = ("h100-sxm", "a100-sxm-80gb", "mi300x", "b200")
DEVICES = (*GPUS, "groq-lpu", "cerebras-wse3", "sambanova-sn40l")
CLUSTERS = ("h800-deepseek", "dgx-h100", "groq-rack", "mi300x-8")
MODELS = ("llama-3.1-8b", "llama-3.1-70b", "deepseek-v3", "mixtral-8x7b", "qwen3-30b-a3b")
DTYPES = ("bf16", "fp16", "fp8", "fp32", "int8", "fp4", "x")


@dataclass(frozen=True)
class Case:
    """One command line and the files it reads (name -> text)."""

    argv: tuple[str, ...]
    files: dict[str, str] = field(default_factory=dict)

    def show(self) -> str:
        return " ".join(self.argv)


def log_int(max_exp: float = 18.0) -> st.SearchStrategy[int]:
    """Integers log-uniform in [1, 10^max_exp]."""
    return st.floats(0.0, max_exp).map(lambda e: round(10.0**e))


EDGE = st.sampled_from([0, -1, -(10**18), 2**63 - 1, 2**63, 2**64 + 1])


def sizes(max_exp: float = 18.0) -> st.SearchStrategy[int]:
    """Mostly log-uniform sizes, a quarter edge values."""
    return st.one_of(log_int(max_exp), log_int(max_exp), log_int(max_exp), EDGE)


def floats_text() -> st.SearchStrategy[str]:
    return st.one_of(
        st.floats(-3.0, 18.0).map(lambda e: f"{10.0**e:.6g}"),
        st.sampled_from(["0", "-1", "nan", "inf", "1e400", "-inf", "abc"]),
    )


def opt(name: str, values: st.SearchStrategy[Any]) -> st.SearchStrategy[list[str]]:
    """``[name, value]`` or nothing (half the time)."""
    return st.one_of(st.just([]), values.map(lambda v: [name, str(v)]))


def _cmd(head: list[str], *options: st.SearchStrategy[list[str]]) -> st.SearchStrategy[Case]:
    return st.tuples(*options).map(lambda parts: Case((*head, *(x for p in parts for x in p))))


# ---- commands that take sizes ----------------------------------------------------------------
def gemm_cases() -> st.SearchStrategy[Case]:
    return st.sampled_from(["gemm", "explain gemm"]).flatmap(
        lambda c: _cmd(
            c.split(),
            st.sampled_from(GPUS).map(lambda d: ["--device", d]),
            sizes().map(lambda v: ["--m", str(v)]),
            sizes().map(lambda v: ["--n", str(v)]),
            sizes().map(lambda v: ["--k", str(v)]),
            opt("--dtype", st.sampled_from(DTYPES)),
        )
    )


def op_cases() -> st.SearchStrategy[Case]:
    ops = st.sampled_from(["softmax", "layernorm", "rmsnorm", "gelu", "swiglu", "add", "x"])
    return ops.flatmap(
        lambda o: _cmd(
            ["op", o],
            st.sampled_from(GPUS).map(lambda d: ["--device", d]),
            sizes().map(lambda v: ["--m", str(v)]),
            opt("--n", sizes()),
            opt("--dtype", st.sampled_from(DTYPES)),
        )
    )


def attention_cases() -> st.SearchStrategy[Case]:
    kernels = st.sampled_from(["fa2", "fa3", "naive", "flash-decoding", "x"])
    return st.sampled_from(["attention", "explain attention"]).flatmap(
        lambda c: _cmd(
            c.split(),
            st.sampled_from(DEVICES).map(lambda d: ["--device", d]),
            opt("--batch", sizes()),
            opt("--heads", sizes(4)),
            opt("--kv-heads", sizes(3)),
            opt("--seqlen", sizes()),
            opt("--seqlen-kv", sizes()),
            opt("--head-dim", sizes(4)),
            opt("--kernel", kernels),
            opt("--pass", st.sampled_from(["fwd", "bwd", "fwd+bwd"])),
            opt("--detail", st.sampled_from(["cta", "tile"])),
            st.sampled_from([[], ["--causal"]]),
        )
    )


def moe_cases() -> st.SearchStrategy[Case]:
    kernels = st.sampled_from(["normal", "low-latency", "nccl"])
    routing = st.sampled_from(["deepep", "uniform", "zipf:1.2", "zipf:1e300", "zipf:-1", "x"])
    explain = _cmd(
        ["explain", "moe"],
        st.sampled_from(CLUSTERS).map(lambda c: ["--cluster", c]),
        sizes(4).map(lambda v: ["--ep", str(v)]),
        opt("--tokens", sizes()),
        opt("--experts", sizes(6)),
        opt("--topk", sizes(2)),
        opt("--kernel", kernels),
    )
    run = _cmd(
        ["moe"],
        opt("--cluster", st.sampled_from(CLUSTERS)),
        opt("--ep", sizes(4)),
        opt("--tokens", sizes()),
        opt("--hidden", sizes()),
        opt("--experts", sizes(6)),
        opt("--topk", sizes(2)),
        opt("--topk-groups", sizes(2)),
        opt("--kernel", kernels),
        opt("--routing", routing),
        opt("--redundant", sizes()),
        opt("--nodes", sizes(3)),
        opt("--seed", sizes()),
        st.sampled_from([[], ["--overlap"]]),
    )
    topo = _cmd(
        ["topology"],
        st.sampled_from(CLUSTERS).map(lambda c: [c]),
        opt("--nodes", sizes(4)),
        opt("--tokens", sizes()),
        st.sampled_from([[], ["--no-load"]]),
    )
    return st.one_of(run, explain, topo)


def misc_cases() -> st.SearchStrategy[Case]:
    """Commands without sizes: their options, with hostile text."""
    text = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=3, max_size=12)
    return st.one_of(
        st.sampled_from(DEVICES).map(lambda d: Case(("show", d, "--json"))),
        st.just(Case(("devices",))),
        st.just(Case(("schema",))),
        _cmd(
            ["roofline"],
            st.sampled_from(DEVICES).map(lambda d: [d]),
            opt("--dtype", st.sampled_from(DTYPES)),
            opt("-k", st.sampled_from(["gemm-8192", "attn-decode", "moe-decode", "x"])),
        ),
        text.map(lambda t: Case(("check", "--quick", "-k", t))),
        text.map(lambda t: Case(("validate", "--suite", t))),
        st.sampled_from(["explain", "attention", "op"]).map(lambda c: Case((c, "--bogus"))),
    )


# ---- files ------------------------------------------------------------------------------------
JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), sizes(), st.floats(allow_nan=True), st.text(max_size=8)),
    lambda c: st.one_of(
        st.lists(c, max_size=3), st.dictionaries(st.text(max_size=6), c, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def hf_config(draw: st.DrawFn) -> str:
    """A Hugging Face config.json: sizes log-uniform, sometimes of the wrong type."""
    if draw(st.integers(0, 9)) == 0:
        depth = draw(log_int(5))
        return "[" * depth + "]" * depth
    value = st.one_of(sizes(), sizes(), JSON_VALUES)
    keys = (
        "hidden_size",
        "num_attention_heads",
        "num_key_value_heads",
        "num_hidden_layers",
        "vocab_size",
        "intermediate_size",
        "head_dim",
        "n_routed_experts",
        "num_experts_per_tok",
        "moe_intermediate_size",
    )
    cfg = {k: draw(value) for k in keys if draw(st.integers(0, 4)) > 0}
    return json.dumps(cfg)


def serve_cases() -> st.SearchStrategy[Case]:
    """decode, prefill, capacity, map, compare, size, whatif, serve: the serving layer."""
    model: st.SearchStrategy[tuple[str, dict[str, str]]] = st.one_of(
        st.sampled_from(MODELS).map(lambda m: (m, {})),
        hf_config().map(lambda t: (f"{DIR}/config.json", {"config.json": t})),
    )

    def step(cmd: str) -> st.SearchStrategy[Case]:
        extra = (
            [
                opt("--devices", st.one_of(sizes(), st.just("auto"))),
                opt("--layout", sizes(4).map(lambda v: f"tp={v}")),
            ]
            if cmd in ("decode", "prefill")
            else []
        )
        parts = st.tuples(
            model,
            st.sampled_from(DEVICES),
            opt("--batch", sizes()),
            opt("--context", sizes()),
            opt("--dtype", st.sampled_from(DTYPES)),
            *extra,
        )
        return parts.map(
            lambda p: Case(
                (cmd, "--model", p[0][0], "--device", p[1], *(x for q in p[2:] for x in q)),
                p[0][1],
            )
        )

    size = st.tuples(
        st.sampled_from(MODELS), st.sampled_from(DEVICES), floats_text(), floats_text()
    ).map(
        lambda p: Case(
            (
                "size",
                "--model",
                p[0],
                "--device",
                p[1],
                "--tokens-per-s-per-user",
                p[2],
                "--total-tokens-per-s",
                p[3],
            )
        )
    )
    compare = st.tuples(st.sampled_from(MODELS), sizes(), sizes()).map(
        lambda p: Case(
            (
                "compare",
                "--model",
                p[0],
                "--devices",
                "h100-sxm,groq-lpu",
                "--batch",
                f"{p[1]},{p[2]}",
            )
        )
    )
    whatif = st.tuples(st.sampled_from(MODELS), floats_text(), sizes()).map(
        lambda p: Case(
            (
                "whatif",
                "--device",
                "h100-sxm",
                "--set",
                f"memory.hbm.bandwidth=x{p[1]}",
                "--",
                "decode",
                "--model",
                p[0],
                "--batch",
                str(p[2]),
            )
        )
    )
    steps = st.sampled_from(["decode", "prefill", "capacity", "map"]).flatmap(step)
    serve = st.tuples(
        st.sampled_from(["llama-3.1-8b", "mixtral-8x7b"]),
        st.sampled_from(["sharegpt", "mlperf-llama2-70b", "splitwise-code"]),
        st.one_of(
            st.tuples(st.just("--qps"), floats_text()).map(list),
            st.just(["--offline"]),
            st.tuples(st.just("--concurrency"), sizes(6).map(str)).map(list),
        ),
        opt("--requests", sizes(6)),
        opt("--duration", floats_text()),
        opt("--max-batch", sizes(6)),
        opt("--token-budget", sizes(6)),
        opt("--replicas", sizes(3)),
        opt("--slo", floats_text().map(lambda v: f"ttft_p99={v}s")),
        opt("--disaggregate", st.tuples(sizes(2), sizes(2)).map(lambda t: f"prefill={t[0]},decode={t[1]}")),  # noqa: E501
    ).map(
        lambda p: Case(
            ("serve", "--model", p[0], "--device", "h100-sxm", "--traffic", p[1],
             "--layout", "tp=2", *p[2], *(x for q in p[3:] for x in q))
        )
    )  # fmt: skip
    return st.one_of(steps, steps, size, compare, whatif, serve)


def traffic_cases() -> st.SearchStrategy[Case]:
    """size --traffic, compare --traffic and explain serve: the traffic-level searches (under
    the fuzzer's ``--max-sims 20`` most are refused up front; tiny searches run)."""
    traffic = st.sampled_from(["chat", "low-latency", "batch", "sharegpt", "x"])
    common = (
        opt("--qps", floats_text()),
        opt("--price", floats_text().map(lambda v: f"{v} USD/h")),
        opt("--hours", floats_text().map(lambda v: f"{v} h")),
    )
    size = _cmd(["size"], st.sampled_from(MODELS).map(lambda m: ["--model", m]),
                st.sampled_from(DEVICES).map(lambda d: ["--device", d]),
                traffic.map(lambda t: ["--traffic", t]), *common)  # fmt: skip
    compare = _cmd(["compare"], st.sampled_from(MODELS).map(lambda m: ["--model", m]),
                   st.sampled_from(["h100-sxm,groq-lpu", "b200,cerebras-wse3"]).map(
                       lambda d: ["--devices", d]),
                   st.sampled_from(["chat", "chat,batch", "low-latency,x"]).map(
                       lambda t: ["--traffic", t]), *common)  # fmt: skip
    explain = _cmd(["explain", "serve"], st.sampled_from(MODELS).map(lambda m: ["--model", m]),
                   st.sampled_from(DEVICES).map(lambda d: ["--device", d]),
                   traffic.map(lambda t: ["--traffic", t]), *common)  # fmt: skip
    return st.one_of(size, compare, explain)


def train_cases() -> st.SearchStrategy[Case]:
    """hwsim train: sizes log-uniform for GPUs, sequence, batch, micro-batch and degrees; about
    half the draws are plausible jobs (real GPU counts, valid names) so that some run."""

    def word(valid: list[str]) -> st.SearchStrategy[str]:
        return st.one_of(st.sampled_from(valid), st.sampled_from(valid), st.just("x"))

    gpus = st.one_of(st.sampled_from([8, 16, 64, 256, 2048]), sizes())
    plausible = st.tuples(
        st.sampled_from(MODELS),
        st.sampled_from(["dgx-h100", "h800-deepseek", "mi300x-8"]),
        st.sampled_from([8, 16, 64, 512]),
        log_int(5.3),
        st.integers(0, 12),
        st.sampled_from(["1f1b", "gpipe"]),  # the others need pp >= 2 (a --layout)
        st.sampled_from(["none", "selective", "full"]),
    ).map(
        lambda p: Case(
            ("train", "--model", p[0], "--cluster", p[1], "--gpus", str(p[2]), "--seqlen",
             str(p[3]), "--global-batch", str(p[2] * 2 ** p[4]), "--schedule", p[5],
             "--recompute", p[6], "--layout", f"tp=8,pp={p[2] // 8}")
        )
    )  # fmt: skip
    return plausible | _cmd(
        ["train"],
        st.sampled_from(MODELS).map(lambda m: ["--model", m]),
        st.sampled_from(CLUSTERS).map(lambda c: ["--cluster", c]),
        gpus.map(lambda v: ["--gpus", str(v)]),
        st.one_of(log_int(5), sizes()).map(lambda v: ["--seqlen", str(v)]),
        st.one_of(log_int(4), sizes()).map(lambda v: ["--global-batch", str(v)]),
        opt("--micro-batch", st.one_of(log_int(1), sizes())),
        opt("--layout", st.tuples(sizes(2), sizes(2)).map(lambda t: f"tp={t[0]},pp={t[1]}")),
        opt("--vpp", sizes(2)),
        opt("--zero", st.integers(-1, 4)),
        opt("--schedule", word(["gpipe", "1f1b", "interleaved", "zb", "dualpipe"])),
        opt("--recompute", word(["none", "selective", "full"])),
        opt("--routing", word(["deepep", "uniform", "zipf:1.2", "zipf:1e9"])),
        opt("--node-limit", sizes(2)),
        opt("--tokens", st.one_of(st.sampled_from(["15T", "1e12", "1e30"]), floats_text())),
    )


# ---- sweep files ------------------------------------------------------------------------------
def expressions(names: list[str]) -> st.SearchStrategy[str]:
    """Constraint expressions: names, log-uniform numbers, every allowed operator and function,
    nested; powers often (``9 ** 9 ** 9``)."""
    atom = st.one_of(
        st.sampled_from(names),
        st.floats(-3.0, 400.0).map(lambda e: f"{10.0**e:.3g}" if e < 308 else f"1e{e:.0f}"),
        log_int(30).map(str),
        st.sampled_from(["9", "True", "'bf16'", "0"]),
    )
    ops = st.sampled_from(["+", "-", "*", "/", "//", "%", "**", "**", "<", "==", "and", "or"])
    funcs = st.sampled_from(["min", "max", "abs", "log", "log2", "log10", "sqrt"])
    return st.recursive(
        atom,
        lambda c: st.one_of(
            st.tuples(c, ops, c).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
            st.tuples(c, c).map(lambda t: f"{t[0]} ** {t[1]}"),
            st.tuples(funcs, c).map(lambda t: f"{t[0]}({t[1]})"),
            c.map(lambda x: f"-{x}"),
            c.map(lambda x: f"not {x}"),
        ),
        max_leaves=10,
    ).map(lambda e: f"{e} > 0")


#: per metric kind: base, fixed workload, the workload parameters an axis may vary
KIND_SETUPS: dict[str, tuple[dict[str, str], dict[str, Any], tuple[str, ...]]] = {
    "fa_decode": ({"device": "h100-sxm", "model": "llama-3.1-8b"}, {}, ("batch", "context")),
    "decode_roofline": ({"device": "h100-sxm", "model": "llama-3.1-70b"}, {}, ("batch", "context")),
    "attention": ({"device": "mi300x", "model": "llama-3.1-8b"}, {}, ("batch", "context")),
    "attention_sim": ({"device": "h100-sxm", "model": "llama-3.1-8b"}, {}, ("batch", "context")),
    "gemm": ({"device": "h100-sxm"}, {"m": 4096, "n": 4096, "k": 4096}, ("m", "n", "k")),
    "gemm_sim": ({"device": "h100-sxm"}, {"m": 512, "n": 512, "k": 512}, ("m", "n", "k")),
    "moe_alltoall": (
        {"device": "h800", "cluster": "h800-deepseek", "model": "deepseek-v3"},
        {},
        ("tokens", "ep", "experts", "top_k", "redundant"),
    ),
}


def axis_values() -> st.SearchStrategy[Any]:
    rng = st.fixed_dictionaries(
        {
            "from": sizes(),
            "to": sizes(),
            "num": st.one_of(log_int(), st.just(2)),
            "scale": st.sampled_from(["lin", "log"]),
            "integer": st.booleans(),
        }
    )
    return st.one_of(st.lists(sizes(), min_size=1, max_size=4), rng)


@st.composite
def sweep_file(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(sorted(KIND_SETUPS)))
    base, workload, params = KIND_SETUPS[kind]
    varied = draw(st.lists(st.sampled_from(params), min_size=1, max_size=3, unique=True))
    axes: dict[str, Any] = {"workload": {p: draw(axis_values()) for p in varied}}
    if draw(st.booleans()):
        axes["spec"] = {
            "memory.hbm.bandwidth": {"from": "x0.5", "to": "x2", "num": draw(log_int())}
        }
    data: dict[str, Any] = {
        "name": "fuzz",
        "base": base,
        "workload": {k: v for k, v in workload.items() if k not in varied},
        "axes": axes,
        "metrics": [{"kind": kind}],
        "constraints": draw(
            st.lists(expressions([*varied, "batch" if kind != "gemm" else "m"]), max_size=2)
        ),
    }
    if draw(st.booleans()):
        data["sampling"] = {"method": "random", "n": draw(sizes()), "seed": 0}
    return yaml.safe_dump(data, sort_keys=False)


def sweep_cases() -> st.SearchStrategy[Case]:
    return sweep_file().map(
        lambda text: Case(
            (
                "sweep",
                f"{DIR}/s.yaml",
                "--out",
                f"{DIR}/out.csv",
                "--no-cache",
                "--workers",
                "1",
                "--json",
            ),
            {"s.yaml": text},
        )
    )


def plot_cases(table: str, names: list[str]) -> st.SearchStrategy[Case]:
    """``hwsim plot`` on a small saved table with a hostile ``--where``."""
    return expressions(names).map(
        lambda e: Case(("plot", table, "--where", e, "--html", f"{DIR}/p.html", "--json"))
    )


def explain_from_cases() -> st.SearchStrategy[Case]:
    """``explain --from`` a saved result whose numbers and types are hostile."""
    gemm = st.fixed_dictionaries(
        {
            "device": st.sampled_from(GPUS),
            "dtype": st.sampled_from(DTYPES),
            "m": JSON_VALUES,
            "n": sizes(),
            "k": sizes(),
        }
    )
    explain = st.fixed_dictionaries(
        {
            "explain": st.sampled_from(["gemm", "moe", "attention", "decode", "x"]),
            "params": st.dictionaries(
                st.sampled_from(["device", "m", "n", "k", "ep", "cluster", "batch", "x"]),
                JSON_VALUES,
            ),
        }
    )
    doc = st.one_of(gemm, explain, JSON_VALUES)
    return doc.map(
        lambda d: Case(("explain", "--from", f"{DIR}/r.json"), {"r.json": json.dumps(d)})
    )
