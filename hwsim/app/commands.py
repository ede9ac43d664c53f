"""The "copy as command" box: the exact ``hwsim`` command lines that reproduce a page.

Each function returns the text of the box: command lines, and ``#`` comment lines where the
reader has a step to take (save the what-if YAML the page offers for download). The commands
name every control of the page, so that they reproduce the view whatever the CLI's defaults
become; a test runs each line through the CLI and compares the numbers with the page's.

What-ifs: a model step has its own command (``hwsim whatif --set ... -- decode ...``); the other
commands take a device or cluster YAML path, so the what-if line names the edited spec as the
file the page's "Download what-if YAML" button saves.
"""

from __future__ import annotations

import shlex

from hwsim.app.params import AttentionParams, DeviceParams, MoeParams, ServingParams, StepParams
from hwsim.app.specs import display_name, whatif_filename


def _line(args: list[str]) -> str:
    return shlex.join(["hwsim", *args])


def _save_note(key: str, what: str = "spec") -> str:
    return (
        f"# what-if: save the edited {what} with 'Download what-if YAML' as "
        f"{whatif_filename(key)}, then"
    )


def _layout_args(layout: str) -> list[str]:
    return ["--layout", layout] if layout.strip() else ["--devices", "auto"]


def roofline_command(p: DeviceParams) -> str:
    """``hwsim roofline``: the baseline, or baseline and what-if side by side."""
    kernels = [a for k in p.kernels for a in ("-k", k)]
    tail = [*kernels, "--dtype", p.dtype, "--html", "out/roofline.html"]
    dev = display_name(p.device)
    if not p.whatif.active:
        return _line(["roofline", dev, *tail])
    both = ["roofline", dev, whatif_filename(p.device), *tail]
    return "\n".join([_save_note(p.device), _line(both)])


def step_args(p: StepParams) -> list[str]:
    """The ``decode``/``prefill`` options of a model step (without ``--device``)."""
    return [
        p.phase,
        "--model",
        p.model,
        *_layout_args(p.layout),
        "--batch",
        str(p.batch),
        "--context",
        str(p.context),
        "--dtype",
        p.dtype,
        "--kv-dtype",
        p.kv_dtype,
    ]


def step_command(p: StepParams) -> str:
    """``hwsim decode``/``prefill``, or ``hwsim whatif --set ... -- decode ...``."""
    dev = display_name(p.device)
    args = step_args(p)
    if not p.whatif.active:
        return _line([args[0], *args[1:3], "--device", dev, *args[3:]])
    sets = [a for o in p.whatif.overrides for a in ("--set", o)]
    return _line(["whatif", "--device", dev, *sets, "--", *args])


def attention_args(p: AttentionParams, device: str, kernel: str | None = None) -> list[str]:
    """``hwsim attention`` options for ``device`` (a name or a YAML file name)."""
    return [
        "attention",
        "--device",
        device,
        "--batch",
        str(p.batch),
        "--heads",
        str(p.heads),
        "--kv-heads",
        str(p.kv_heads),
        "--seqlen",
        str(p.seqlen),
        "--head-dim",
        str(p.head_dim),
        *(["--causal"] if p.causal else []),
        "--dtype",
        p.dtype,
        "--kernel",
        kernel or p.kernel,
        "--pass",
        p.pass_,
    ]


def attention_command(p: AttentionParams, compare_kernel: str | None = None) -> str:
    """``hwsim attention`` for the chosen kernel, the kernel it is compared with, and the
    what-if device."""
    dev = display_name(p.device)
    lines = [_line(attention_args(p, dev))]
    if compare_kernel:
        lines += [
            f"# compared with {compare_kernel}:",
            _line(attention_args(p, dev, compare_kernel)),
        ]
    if p.whatif.active:
        lines += [_save_note(p.device), _line(attention_args(p, whatif_filename(p.device)))]
    return "\n".join(lines)


def serve_args(p: ServingParams, device: str, qps: float | None = None) -> list[str]:
    return [
        "serve",
        "--model",
        p.model,
        "--device",
        device,
        *_layout_args(p.layout),
        "--traffic",
        p.traffic,
        "--qps",
        f"{qps if qps is not None else p.qps:g}",
        "--requests",
        str(p.requests),
        "--seed",
        str(p.seed),
    ]


def serve_command(p: ServingParams, curve: tuple[float, ...] = ()) -> str:
    """``hwsim serve`` at the page's rate (the curve's other rates in a comment)."""
    dev = display_name(p.device)
    lines = [_line(serve_args(p, dev))]
    others = [q for q in curve if q != p.qps]
    if others:
        lines.append(
            f"# the latency-vs-QPS curve: the same with --qps {', '.join(f'{q:g}' for q in others)}"
        )
    if p.whatif.active:
        lines += [_save_note(p.device), _line(serve_args(p, whatif_filename(p.device)))]
    return "\n".join(lines)


def moe_args(p: MoeParams, cluster: str) -> list[str]:
    return [
        "moe",
        "--cluster",
        cluster,
        "--ep",
        str(p.ep),
        "--tokens",
        str(p.tokens),
        "--hidden",
        str(p.hidden),
        "--experts",
        str(p.experts),
        "--topk",
        str(p.topk),
        "--topk-groups",
        str(p.topk_groups),
        "--phase",
        p.phase,
        "--kernel",
        p.kernel,
        "--routing",
        p.routing,
    ]


def moe_command(p: MoeParams) -> str:
    """``hwsim moe`` on the cluster, and on the what-if cluster."""
    lines = [_line(moe_args(p, display_name(p.cluster)))]
    if p.whatif.active:
        lines += [_save_note(p.cluster, "cluster"), _line(moe_args(p, whatif_filename(p.cluster)))]
    return "\n".join(lines)


def command_lines(text: str) -> list[list[str]]:
    """The commands of a box as argument lists without the leading ``hwsim`` (for running
    them through the CLI, as the tests do)."""
    out = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            args = shlex.split(line)
            out.append(args[1:] if args and args[0] == "hwsim" else args)
    return out
