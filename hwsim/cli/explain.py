"""``hwsim explain``: where the time of a run goes, and what-ifs that are re-simulated.

``hwsim explain gemm|attention|moe|decode [options]`` takes the same options as the simulator
commands; ``hwsim explain --from result.json`` takes a result any of them saved with ``--json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn

from hwsim.cli.common import console, narrow_table, print_json
from hwsim.serve.request import STEP_DEFAULTS
from hwsim.spec.errors import SpecError

#: Largest --from file read (bytes): a saved --json result is tens of kB (a DeepSeek-V3 decode
#: step with --ops: 39 kB), so anything near this is not one
MAX_RESULT_BYTES = 16_000_000

if TYPE_CHECKING:
    from hwsim.report.explain import Explanation

explain_app = typer.Typer(
    name="explain",
    help="Where the time of a run goes, in sentences backed by numbers, with what-ifs that "
    "are re-simulated (not guessed).\n\n"
    "Example: hwsim explain gemm --device a100-sxm-80gb --m 8192 --n 8192 --k 8192",
    no_args_is_help=False,
    invoke_without_command=True,
)

DeviceOpt = Annotated[
    str, typer.Option("--device", "-d", help="device name (file stem) or path to a YAML file")
]
HtmlOpt = Annotated[
    Path | None,
    typer.Option("--html", help="write the story with figures (roofline moves, time by "
                 "resource, bytes pyramid) to this HTML file"),
]  # fmt: skip
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output")]


def _show(e: Explanation, html: Path | None, json_out: bool) -> None:
    from hwsim.report.explain import fmt_delta, fmt_time
    from hwsim.report.explain_figures import write_explanation_page

    if html is not None:
        write_explanation_page(html, e)
    if json_out:
        data = e.to_dict()
        data["html"] = str(html) if html else None
        print_json(data)
        return
    n_head = len(e.sentences) - len(e.whatifs)
    for s in e.sentences[:n_head]:
        console.print(s, highlight=False, soft_wrap=True)
        console.print()
    # 80 columns: what each what-if changed goes under the table, with why it helps
    cols = ("what-if", "lever", "time", "vs. as given", "bound")
    t = narrow_table("What-ifs, each re-simulated (fastest first)", cols, text=("what-if",),
                     labels=("lever", "bound"))  # fmt: skip
    t.add_row("as given", "", fmt_time(e.base.time_s), "", e.base.bound)
    for w in e.whatifs:
        c = w.candidate
        t.add_row(c.title, c.lever, fmt_time(w.outcome.time_s), fmt_delta(w.delta),
                  w.outcome.bound)  # fmt: skip
    console.print(t)
    console.print("Why each helps or not:", highlight=False)
    for w in e.whatifs:
        c = w.candidate
        console.print(f"  • {c.title}: {c.reason}; re-simulated with {c.change.describe()}.",
                      highlight=False)  # fmt: skip
    if html is not None:
        console.print(f"wrote {html}")


def _run(subject: Any, html: Path | None, json_out: bool) -> None:
    from hwsim.report.explain import explain

    if json_out:
        e = explain(subject)
    else:
        with Progress(
            SpinnerColumn(), TextColumn("simulating {task.description}"), console=console,
            transient=True,
        ) as progress:  # fmt: skip
            task = progress.add_task("as given", total=None)
            e = explain(subject, on_step=lambda label: progress.update(task, description=label))
    _show(e, html, json_out)


@explain_app.callback()
def explain_main(
    ctx: typer.Context,
    from_file: Annotated[
        Path | None,
        typer.Option(
            "--from",
            help="a result saved with --json (gemm, attention, moe, a model "
            "step, or explain itself)",
        ),
    ] = None,
    html: HtmlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Explain a run: the subcommand's options, or --from a saved --json result.

    Example: hwsim gemm --device h100-sxm --m 16 --n 8192 --k 8192 --json > g.json && hwsim
    explain --from g.json
    """
    from hwsim.report.explain_subjects import subject_from_json

    if ctx.invoked_subcommand is not None:
        if from_file is not None:
            raise SpecError("give either --from FILE or a subcommand, not both", key="--from")
        return
    if from_file is None:
        console.print(ctx.get_help())
        raise typer.Exit(0)
    try:
        # sized before it is read: a saved result is tens of kB, never gigabytes
        if from_file.exists() and not from_file.is_file() and not from_file.is_dir():
            raise SpecError("not a regular file", file=str(from_file), key="--from")
        if from_file.is_file() and from_file.stat().st_size > MAX_RESULT_BYTES:
            raise SpecError(
                f"file is {from_file.stat().st_size:,} bytes; saved results are limited to "
                f"{MAX_RESULT_BYTES:,}",
                file=str(from_file),
                key="--from",
            )
        data = json.loads(from_file.read_text(encoding="utf-8"))
    except OSError as err:
        raise SpecError(f"cannot read {from_file}: {err}", key="--from") from None
    except json.JSONDecodeError as err:
        raise SpecError(f"not JSON: {err}", file=str(from_file), key="--from") from None
    except RecursionError:
        raise SpecError("JSON nested too deeply", file=str(from_file), key="--from") from None
    except (ValueError, UnicodeDecodeError) as err:  # a 5000-digit integer; not UTF-8
        reason = str(err).split(";")[0][:120]
        raise SpecError(f"cannot read JSON: {reason}", file=str(from_file), key="--from") from None
    try:
        subject = subject_from_json(data)
    except (TypeError, ValueError, OverflowError, KeyError, AttributeError) as err:
        # a value of the wrong type or size where a saved result has a number or a mapping
        raise SpecError(
            "not a result hwsim wrote: a field has the wrong type or size "
            f"({str(err).splitlines()[0][:160] if str(err) else type(err).__name__})",
            file=str(from_file),
            key="--from",
        ) from None
    _run(subject, html, json_out)


@explain_app.command("gemm")
def explain_gemm(
    device: DeviceOpt,
    m: Annotated[int, typer.Option("--m", help="rows of A and C")],
    n: Annotated[int, typer.Option("--n", help="columns of B and C")],
    k: Annotated[int, typer.Option("--k", help="inner dimension")],
    dtype: Annotated[str, typer.Option(help="element type")] = "fp16",
    html: HtmlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Explain one GEMM on a GPU (the `hwsim gemm` simulator).

    Example: hwsim explain gemm --device a100-sxm-80gb --m 8192 --n 8192 --k 8192 --dtype fp16
    """
    from hwsim.report.explain_gemm import GemmSubject

    _run(GemmSubject(device, m, n, k, dtype), html, json_out)


@explain_app.command("attention")
def explain_attention(
    device: DeviceOpt,
    batch: Annotated[int, typer.Option(help="sequences")] = 2,
    heads: Annotated[int, typer.Option(help="query heads")] = 16,
    kv_heads: Annotated[int | None, typer.Option(help="KV heads (default: heads)")] = None,
    seqlen: Annotated[int, typer.Option(help="query tokens per sequence")] = 8192,
    seqlen_kv: Annotated[int | None, typer.Option(help="KV tokens (default: seqlen)")] = None,
    head_dim: Annotated[int, typer.Option(help="head dimension of Q and K")] = 128,
    head_dim_v: Annotated[int | None, typer.Option(help="head dimension of V")] = None,
    causal: Annotated[bool, typer.Option("--causal", help="causal mask")] = False,
    dtype: Annotated[str, typer.Option(help="bf16, fp16, fp8")] = "bf16",
    kernel: Annotated[str, typer.Option(help="naive, fa2, fa3, flash-decoding")] = "fa3",
    pass_: Annotated[str, typer.Option("--pass", help="fwd, bwd or fwd+bwd")] = "fwd",
    detail: Annotated[
        str, typer.Option(help="cta (analytic inner loop) or tile (every tile step)")
    ] = "cta",
    html: HtmlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Explain one attention call (GPUs: the attention simulator; other kinds: their mapper).

    Example: hwsim explain attention --device h100-sxm --batch 2 --heads 16 --seqlen 8192
    --head-dim 128 --kernel fa3
    """
    from hwsim.report.explain_attention import AttentionSubject

    subject = AttentionSubject(
        device, batch, heads, seqlen, head_dim, kv_heads, seqlen_kv, head_dim_v, causal, dtype,
        kernel, pass_, detail,
    )  # fmt: skip
    _run(subject, html, json_out)


@explain_app.command("moe")
def explain_moe(
    cluster: Annotated[str, typer.Option(help="cluster name (devices/clusters/*.yaml)")],
    ep: Annotated[int, typer.Option(help="expert-parallel ranks")],
    tokens: Annotated[int, typer.Option(help="tokens per rank")] = 4096,
    hidden: Annotated[int, typer.Option(help="hidden size")] = 7168,
    experts: Annotated[int, typer.Option(help="routed experts")] = 256,
    topk: Annotated[int, typer.Option(help="experts per token")] = 8,
    topk_groups: Annotated[
        int | None, typer.Option(help="node limit M: nodes a token may reach")
    ] = 4,
    phase: Annotated[str, typer.Option(help="dispatch or combine")] = "dispatch",
    dtype: Annotated[str, typer.Option(help="wire format: fp8 or bf16")] = "fp8",
    kernel: Annotated[str, typer.Option(help="normal, low-latency or nccl")] = "normal",
    routing: Annotated[str, typer.Option(help="deepep, uniform or zipf:S")] = "deepep",
    seed: Annotated[int, typer.Option(help="routing seed")] = 0,
    comm_sms: Annotated[
        int | None, typer.Option(help="SMs the kernel copies with (default: its profile's)")
    ] = None,
    nodes: Annotated[
        int | None, typer.Option(help="nodes in the topology (default: enough for --ep)")
    ] = None,
    redundant: Annotated[int, typer.Option(help="redundant expert copies")] = 0,
    html: HtmlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Explain one MoE dispatch or combine over a cluster (the all-to-all simulator).

    Example: hwsim explain moe --cluster h800-deepseek --ep 32 --tokens 1024 --topk-groups 4
    """
    from hwsim.report.explain_moe import MoeSubject

    subject = MoeSubject(
        cluster, ep, tokens, hidden, experts, topk, topk_groups, phase, dtype, kernel, routing,
        seed, comm_sms, nodes, redundant,
    )  # fmt: skip
    _run(subject, html, json_out)


@explain_app.command("decode")
def explain_decode(
    model: Annotated[str, typer.Option(help="model name (workloads/models/*.yaml)")],
    device: DeviceOpt,
    batch: Annotated[
        int,
        typer.Option(help="sequences in the deployment"),
    ] = STEP_DEFAULTS["batch"],
    context: Annotated[
        int,
        typer.Option(help="tokens already in the KV cache"),
    ] = STEP_DEFAULTS["context"],
    dtype: Annotated[str, typer.Option(help="weight dtype")] = STEP_DEFAULTS["dtype"],
    kv_dtype: Annotated[str, typer.Option(help="KV-cache dtype")] = STEP_DEFAULTS["kv_dtype"],
    tp: Annotated[int | None, typer.Option(help="tensor parallel degree")] = None,
    ep: Annotated[int | None, typer.Option(help="expert parallel degree")] = None,
    pp: Annotated[int | None, typer.Option(help="pipeline parallel degree")] = None,
    dp: Annotated[int | None, typer.Option(help="data parallel degree")] = None,
    phase: Annotated[str, typer.Option(help="decode or prefill")] = STEP_DEFAULTS["phase"],
    html: HtmlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Explain one whole-model decode (or prefill) step, as `hwsim decode` runs it (the what-if
    engine; no --tp/--ep/--pp/--dp: the fewest devices that hold the model).

    Example: hwsim explain decode --model llama-3.1-8b --device h100-sxm --batch 1
    """
    from hwsim.report.explain_decode import DecodeSubject

    subject = DecodeSubject(model, device, batch, context, dtype, kv_dtype, tp, ep, pp, dp, phase)
    _run(subject, html, json_out)


def register(app: typer.Typer) -> None:
    app.add_typer(explain_app, name="explain")
