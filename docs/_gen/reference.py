"""Block generators for reference material: the CLI (from the typer app), the YAML schema (from
pydantic), validation tables (``hwsim validate --json``), the numerics check table
(``hwsim check``), the device table (``hwsim devices --json``) and any command's console output."""

from __future__ import annotations

import json
import math
import os
import re
import shlex
from typing import Any

from _gen.core import DocsError, Table

# ---- running commands ---------------------------------------------------------------------------


def _invoke(argv: list[str], ok_codes: tuple[int, ...] = (0,)) -> str:
    """Run ``hwsim ARGV`` in-process (as the console script would) and return its stdout; an
    exit code outside ``ok_codes`` fails the build, naming the command."""
    from typer.testing import CliRunner

    from hwsim.cli.app import app

    env = {"COLUMNS": "110", "NO_COLOR": "1", "TERM": "dumb"}
    res = CliRunner().invoke(app, argv, env=env)
    if res.exit_code not in ok_codes:
        detail = res.output.strip().splitlines()[-1:] if res.output else [repr(res.exception)]
        raise DocsError(f"`hwsim {shlex.join(argv)}` exited {res.exit_code}: {detail}")
    return res.stdout


def _commands() -> dict[str, Any]:
    import typer.main

    from hwsim.cli.app import app

    group = typer.main.get_command(app)
    return dict(getattr(group, "commands", {}))


def has_command(name: str) -> bool:
    return name in _commands()


def run_command(*argv: str) -> str:
    """``<!-- hwsim: run roofline h100-sxm -k gemm-8192 -->``: the command line and its console
    output in a code block."""
    out = _invoke(list(argv)).rstrip()
    return f"```console\n$ hwsim {shlex.join(argv)}\n{out}\n```\n"


def run_json(*argv: str, ok_codes: tuple[int, ...] = (0,)) -> Any:
    """Parsed ``--json`` output of a command."""
    return json.loads(_invoke([*argv, "--json"], ok_codes))


# ---- CLI reference ------------------------------------------------------------------------------
def _type_name(p: Any) -> str:
    """A short type name for a typer/click parameter (duck-typed: newer typer vendors click)."""
    desc = getattr(p, "type_descriptor", None)
    ann = getattr(desc, "annotation", None)
    if ann is not None:
        args = getattr(ann, "__args__", None)
        base = args[0] if getattr(ann, "__origin__", None) in (list, tuple) and args else ann
        base = next(a for a in getattr(base, "__args__", (base,)) if a is not type(None))
        name = getattr(base, "__name__", str(base)).lower()
        return {"str": "text", "path": "path", "bool": "flag"}.get(name, name)
    t = getattr(p, "type", None)
    return str(getattr(t, "name", "text")).lower()


def _param_row(p: Any) -> list[str]:
    if getattr(p, "param_type_name", "") == "argument":
        name = f"`{p.name.upper()}`"
        kind = _type_name(p) + (" (one or more)" if p.nargs == -1 else "")
    else:
        flags = [*p.opts, *p.secondary_opts]
        name = ", ".join(f"`{f}`" for f in flags)
        kind = "flag" if getattr(p, "is_flag", False) else _type_name(p)
        if getattr(p, "multiple", False):
            kind += " (repeatable)"
    default = p.default
    if p.required:
        shown = "required"
    elif callable(default) or default is None or default == () or default == []:
        shown = ""
    elif isinstance(default, bool):
        shown = "on" if default else "off"
    else:
        shown = f"`{default}`"
    help_text = getattr(p, "help", None) or ""
    return [name, kind, shown, " ".join(help_text.split())]


def _help_markdown(text: str) -> str:
    """A command docstring as Markdown: paragraphs kept, ``Example:`` lines as code."""
    out = []
    for para in re.split(r"\n\s*\n", text.strip()):
        para = " ".join(para.split())
        m = re.match(r"Example:\s*(.*)", para)
        if m:
            examples = [e.strip() for e in re.split(r"(?=\bhwsim )", m.group(1)) if e.strip()]
            out.append("Example:\n\n```bash\n" + "\n".join(examples) + "\n```")
        else:
            out.append(para)
    return "\n\n".join(out)


def cli_reference() -> str:
    """Every registered command of ``hwsim.cli.app.app``: help text, usage and options."""
    from hwsim.cli.app import app

    parts = [_help_markdown(app.info.help or "") if isinstance(app.info.help, str) else ""]
    cmds = _commands()
    parts.append("Commands: " + ", ".join(f"[`{n}`](#hwsim-{n})" for n in sorted(cmds)) + ".\n")

    def one(prefix: str, name: str, cmd: Any) -> None:
        full = f"{prefix} {name}"
        parts.append(f"## `{full}` {{#{full.replace(' ', '-')}}}\n")
        parts.append(_help_markdown(cmd.help or ""))
        ctx = cmd.context_class(cmd, info_name=full)
        usage = " ".join(cmd.collect_usage_pieces(ctx))
        usage = re.sub(r"\{(\w+)\}", lambda m: m.group(1).upper(), usage)
        parts.append(f"```text\nUsage: {full} {usage}\n```")
        rows = [_param_row(p) for p in cmd.params if getattr(p, "name", "") != "help"]
        if rows:
            parts.append(Table(["parameter", "type", "default", "help"], rows, "llll").markdown())
        if hasattr(cmd, "commands"):
            for sub in sorted(cmd.commands):
                one(full, sub, cmd.commands[sub])

    for name in sorted(cmds):
        one("hwsim", name, cmds[name])
    return "\n\n".join(parts) + "\n"


# ---- schema -------------------------------------------------------------------------------------
def _type_of(node: dict[str, Any]) -> str:
    if "$ref" in node:
        ref = node["$ref"].split("/")[-1]
        return f"[{ref}](#{ref.lower()})"
    if "anyOf" in node:
        kinds = [_type_of(n) for n in node["anyOf"]]
        return " or ".join(k for k in kinds if k != "null") + (
            " (optional)" if "null" in kinds else ""
        )
    if "enum" in node:
        return " \\| ".join(f"`{v}`" for v in node["enum"])
    if "const" in node:
        return f"`{node['const']}`"
    t = node.get("type", "any")
    if t == "array":
        return f"list of {_type_of(node.get('items', {}))}"
    if t == "object" and isinstance(node.get("additionalProperties"), dict):
        return f"map of name → {_type_of(node['additionalProperties'])}"
    return str(t)


def _props_table(schema: dict[str, Any]) -> str:
    req = set(schema.get("required", []))
    rows = []
    for key, node in schema.get("properties", {}).items():
        desc = node.get("description", "")
        default = node.get("default")
        extra = (
            f" Default `{json.dumps(default)}`."
            if "default" in node and default is not None
            else ""
        )
        rows.append(
            [f"`{key}`", _type_of(node), "yes" if key in req else "", (desc + extra).strip()]
        )
    return Table(["key", "type", "required", "meaning"], rows, "llll").markdown()


def _schema_section(title: str, schema: dict[str, Any]) -> list[str]:
    parts = [f"## {title}\n", " ".join(schema.get("description", "").split()), _props_table(schema)]
    for name, sub in sorted(schema.get("$defs", {}).items()):
        parts.append(f"### {name} {{#{name.lower()}}}\n")
        if sub.get("description"):
            parts.append(" ".join(sub["description"].split()))
        if "properties" in sub:
            parts.append(_props_table(sub))
        else:
            parts.append(f"Type: {_type_of(sub)}")
    return parts


def schema_reference(which: str = "device") -> str:
    """The pydantic JSON schema of a spec model as tables, plus the raw schema (collapsed)."""
    if which == "device":
        from hwsim.spec.device import Device as Model
    elif which == "model":
        from hwsim.spec.model import ModelConfig as Model  # type: ignore[assignment]
    elif which == "cluster":
        from hwsim.spec import cluster

        Model = cluster.Cluster  # type: ignore[assignment,attr-defined]
    else:
        raise DocsError(f"schema: unknown model {which!r} (device, model, cluster)")
    schema = Model.model_json_schema(by_alias=True)
    parts = _schema_section(schema.get("title", which), schema)
    raw = json.dumps(schema, indent=2)
    parts.append(
        f'??? note "Raw JSON schema of `{schema.get("title", which)}`"\n\n'
        + "\n".join("    " + ln for ln in f"```json\n{raw}\n```".splitlines())
    )
    return "\n\n".join(parts) + "\n"


# ---- validation, checks, devices ----------------------------------------------------------------
def _pct(x: float) -> str:
    return f"{100 * x:+.1f}%" if math.isfinite(x) else "—"


_suites: dict[str, dict[str, Any]] = {}


def reset() -> None:
    """Forget the previous build's suite results (a build computes each suite at most once)."""
    _suites.clear()


def _suite_names() -> list[str]:
    import hwsim.validate.all  # noqa: F401  (registers the suites)
    from hwsim.validate.core import suites

    return sorted(suites())


def _suite_dict(name: str) -> dict[str, Any]:
    """One suite's results, from ``hwsim validate --suite NAME --json`` when the command exists
    (the registry otherwise), computed once per build even when several pages show it."""
    if name not in _suites:
        if has_command("validate"):
            # exit 1 = a target is missed: the table shows it (the suite's tests enforce targets)
            data = run_json("validate", "--suite", name, ok_codes=(0, 1))
            if isinstance(data, dict) and "suites" in data:
                data = data["suites"]
            if isinstance(data, list):
                data = next(d for d in data if (d.get("suite") or d.get("name")) == name)
            _suites[name] = data
        else:
            from hwsim.validate.core import suites

            _suites[name] = suites()[name]().to_dict()
    return _suites[name]


def _suite_dicts(suite: str | None) -> list[dict[str, Any]]:
    names = _suite_names()
    if suite is not None and suite not in names:
        raise DocsError(f"validate: no suite {suite!r} (registered: {names})")
    return [_suite_dict(n) for n in ([suite] if suite else names)]


def validation_tables(*args: str) -> str:
    """``<!-- hwsim: validate [--suite NAME] -->``: measured vs predicted for every row, then
    MAPE and max error against the suite's targets."""
    suite = None
    if args[:1] == ("--suite",) and len(args) > 1:
        suite = args[1]
    elif args:
        suite = args[0]
    dicts = _suite_dicts(suite)
    if not dicts:
        return "_No validation suite is registered yet._\n"
    parts = []
    for d in dicts:
        name = d.get("suite") or d.get("name", "suite")
        rows = d.get("rows", [])
        unit = rows[0].get("unit", "") if rows else ""
        table = Table(
            ["case", "group", f"measured ({unit})", f"predicted ({unit})", "error"],
            [
                [
                    r["case"],
                    r.get("group", ""),
                    f"{r['measured']:.4g}",
                    f"{r['predicted']:.4g}",
                    _pct(r["error"]),
                ]
                for r in rows
            ],
            "llrrr",
        )
        targets = d.get("targets") or {}
        summary = (
            f"**{name}**: {len(rows)} rows, MAPE {100 * d['mape']:.1f}%, max |error| "
            f"{100 * d['max_error']:.1f}%"
        )
        if targets:
            summary += (
                " (targets: " + ", ".join(f"{k} ≤ {100 * v:.0f}%" for k, v in targets.items()) + ")"
            )
        if "meets_targets" in d:
            summary += "; targets met" if d["meets_targets"] else "; **targets not met**"
        groups = d.get("group_mape") or {}
        if len(groups) > 1:
            summary += "; MAPE by group: " + ", ".join(
                f"{g} {100 * v:.1f}%" for g, v in groups.items()
            )
        if suite is None:
            parts.append(f"## {name}\n")
        parts += [summary + ".", table.markdown()]
    return "\n\n".join(parts) + "\n"


def check_table(*args: str) -> str:
    """``<!-- hwsim: check [--quick] [--match TEXT] -->``: every numerics check case against its
    float64 reference, with the tolerance and whether the executor's bytes equal the plan's."""
    quick = "--quick" in args
    match = args[args.index("--match") + 1] if "--match" in args else None
    if has_command("check"):
        argv = ["check", *(["--quick"] if quick else []), *(["--match", match] if match else [])]
        data = run_json(*argv, ok_codes=(0, 1))  # 1: some check failed; the table shows which
        results = data.get("results", data) if isinstance(data, dict) else data
    else:
        from hwsim.functional.check import run_cases

        results = [r.as_dict() for r in run_cases(quick=quick, match=match)]
    rows = []
    for r in results:
        bm = r.get("bytes_match")
        rows.append(
            [
                f"`{r['case']}`",
                r["dtype"],
                f"{r['max_rel']:.2e}",
                f"{r['tol']:.2e}",
                "—" if bm is None else ("yes" if bm else "**no**"),
                "pass" if r["passed"] else "**FAIL**",
            ]
        )
    n_ok = sum(1 for r in results if r["passed"])
    head = f"{n_ok} of {len(results)} checks pass.\n\n"
    cols = ["case", "dtype", "max rel. error", "tolerance", "bytes = plan", "result"]
    return head + Table(cols, rows, "llrrcc").markdown() + "\n"


def devices_table() -> str:
    """The built-in devices with their headline numbers (``hwsim devices --json``)."""
    from hwsim.spec.units import Dim, format_quantity

    rows = run_json("devices")
    rows = rows.get("devices", rows) if isinstance(rows, dict) else rows
    if not rows:
        return "_No devices._\n"
    dims = {"_flops": Dim.RATE, "_Bps": Dim.BANDWIDTH, "_bytes": Dim.BYTES, "_W": Dim.POWER}

    def fmt(col: str, v: Any) -> str:
        if isinstance(v, int | float) and not isinstance(v, bool):
            for suffix, dim in dims.items():
                if col.endswith(suffix):
                    return format_quantity(float(v), dim, digits=3)
            if col == "price_usd":
                return f"${v:,.0f}"
        return "—" if v is None else str(v)

    cols = list(rows[0].keys())
    body = [[fmt(c, r.get(c)) for c in cols] for r in rows]
    return Table(cols, body, "l" * len(cols)).markdown() + "\n"


def environment_note() -> str:
    return f"Built with hwsim from `{os.getcwd()}`."


def validation_summary(*args: str) -> str:
    """``<!-- hwsim: validate-summary --suite NAME -->``: MAPE and worst row per group of a suite
    against its targets, then the whole suite."""
    suite = args[1] if args[:1] == ("--suite",) and len(args) > 1 else (args[0] if args else None)
    if suite is None:
        raise DocsError("validate-summary needs --suite NAME")
    d = _suite_dicts(suite)[0]
    targets = d.get("targets") or {}
    groups: dict[str, list[float]] = {}
    for r in d.get("rows", []):
        groups.setdefault(r.get("group") or suite, []).append(abs(r["error"]))
    rows = []
    for g, errs in groups.items():
        key = next(
            (k for k in (f"mape {g}", f"mape {g.split()[-1]}", "mape") if k in targets), None
        )
        rows.append(
            [
                g,
                str(len(errs)),
                f"{100 * sum(errs) / len(errs):.1f}%",
                f"≤ {100 * targets[key]:.0f}%" if key else "—",
                f"{100 * max(errs):.1f}%",
            ]
        )
    table = Table(["group", "rows", "MAPE", "target", "worst row"], rows, "lrrrr").markdown()
    n = sum(len(v) for v in groups.values())
    tail = (
        f"All {n} rows: MAPE {100 * d['mape']:.1f}%, worst row {100 * d['max_error']:.1f}%"
        + (f" (target: none above {100 * targets['max']:.0f}%)" if "max" in targets else "")
        + "."
    )
    return table + "\n\n" + tail + "\n"


def attention_tiles(*args: str) -> str:
    """``<!-- hwsim: attention-tiles -->``: the tile sizes the attention plan picks on every
    built-in GPU (devices with the same on-chip budget share a row), fp16, 2 stages."""
    from hwsim.plan.attention import AttentionShape, onchip_budget_bytes, plan_attention
    from hwsim.spec.load import list_devices, load_device

    by_budget: dict[float, list[str]] = {}
    names: dict[float, str] = {}
    for key in list_devices():
        d = load_device(key)
        if d.kind != "gpu":
            continue
        budget, level, _ = onchip_budget_bytes(d)
        by_budget.setdefault(budget, []).append(key)
        names[budget] = level["onchip"]
    rows = []
    for budget, keys in sorted(by_budget.items(), key=lambda kv: kv[1][0]):
        cells = [f"{', '.join(keys)} ({budget / 1024:.0f} KiB {names[budget]})"]
        for dim in (64, 128, 256):
            s = AttentionShape(
                batch=1, heads=8, kv_heads=8, seqlen_q=8192, seqlen_kv=8192, head_dim=dim,
                dtype="fp16", pass_="fwd+bwd",
            )  # fmt: skip
            p = plan_attention(s, budget)
            cells.append(f"{p.block_q}×{p.block_kv} / {p.bwd_block_q}×{p.bwd_block_kv}")
        rows.append(cells)
    cols = ["device (on-chip per unit)", "d = 64 fwd / bwd (Br×Bc)", "d = 128", "d = 256"]
    return Table(cols, rows, "llll").markdown() + "\n"
