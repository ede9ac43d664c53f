"""``hwsim devices``, ``hwsim show`` and ``hwsim schema``: the device library."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from hwsim.cli.common import Wide, console, narrow_table, print_json
from hwsim.spec.units import Dim, format_quantity

if TYPE_CHECKING:
    from hwsim.spec.device import Device


def _summary(name: str, d: Device) -> dict[str, object]:
    main = d.main_memory
    return {
        "name": name,
        "display_name": d.name,
        "kind": d.kind,
        "arch": d.arch,
        "units": d.compute.units_count,
        "bf16_flops": d.peak_flops("bf16"),
        "fp8_flops": d.peak_flops("fp8"),
        "main_memory": main.name,
        "main_memory_bytes": d.level_capacity_bytes(main.name),
        "main_memory_Bps": d.level_bandwidth_Bps(main.name),
        # on-chip memory = the levels inside the main memory (for an LPU the SRAM is main memory)
        "on_chip_sram_bytes": sum(
            d.level_capacity_bytes(m.name) for m in d.memory[: d.memory.index(main)]
        )
        or d.level_capacity_bytes(main.name),
        "tdp_W": d.tdp_W,
        "price_usd": d.price_usd,
    }


def _cells(r: dict[str, object]) -> dict[str, str]:
    """One device's cells by column (numbers with their units)."""

    def q(key: str, dim: Dim) -> str:
        return format_quantity(float(r[key]), dim)  # type: ignore[arg-type]

    return {
        "name": str(r["name"]),
        "kind": str(r["kind"]),
        "units": str(r["units"]),
        "BF16 peak": q("bf16_flops", Dim.RATE),
        "FP8 peak": q("fp8_flops", Dim.RATE),
        "main memory": f"{r['main_memory']} {q('main_memory_bytes', Dim.BYTES)}",
        "bandwidth": q("main_memory_Bps", Dim.BANDWIDTH),
        "other SRAM": q("on_chip_sram_bytes", Dim.BYTES),
        "TDP": q("tdp_W", Dim.POWER),
    }


#: ``hwsim devices`` in 80 columns: two tables, compute then memory and power (``--wide``: one)
_GROUPS = (
    ("compute", ("name", "kind", "units", "BF16 peak", "FP8 peak")),
    ("memory and power", ("name", "main memory", "bandwidth", "other SRAM", "TDP")),
)


def devices_cmd(
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    wide: Wide = False,
) -> None:
    """List the built-in devices with their key numbers.

    Example: hwsim devices --json
    """
    from hwsim.spec.load import list_devices, load_device

    rows = [_summary(n, load_device(n)) for n in list_devices()]
    if json_out:
        print_json(rows)
        return
    cells = [_cells(r) for r in rows]
    title = "built-in devices (devices/*.yaml)"
    groups = [(title, tuple(cells[0]) if cells else ())] if wide else [
        (f"{title}: {what}", cols) for what, cols in _GROUPS]  # fmt: skip
    for name, cols in groups:
        t = narrow_table(name, cols, text=("name", "kind", "main memory"), wide=wide)
        for c in cells:
            t.add_row(*(c[col] for col in cols))
        console.print(t)


def show_cmd(
    device: Annotated[str, typer.Argument(help="device name (file stem) or path to a YAML file")],
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    wide: Wide = False,
) -> None:
    """Print a device's full spec, every number with its source (in 80 columns: the SI values
    with --wide, the derivations and notes under the table).

    Example: hwsim show h100-sxm
    """
    from hwsim.spec.load import load_device

    d = load_device(device)
    if json_out:
        print_json(d.model_dump(mode="json"))
        return
    console.print(f"[bold]{d.name}[/]  kind={d.kind} arch={d.arch} vendor={d.vendor}")
    if d.description:
        console.print(d.description)
    cols = ["field", "value", "SI", "source", "derivation / note"] if wide else [
        "field", "value", "source"]  # fmt: skip
    t = narrow_table(None, cols, text=cols, wide=wide)
    notes = []
    for path, q in d.iter_sourced():
        note = " ".join(x for x in (q.derived, q.note) if x)
        if wide:
            t.add_row(path, q.text, f"{q.value:.6g} {q.dim.value}", q.source, note)
        else:
            t.add_row(path, q.text, q.source)
            if note:
                notes.append(f"  {path}: {note}")
    console.print(t)
    if notes:
        console.print("derivations and notes:")
        for line in notes:
            console.print(line, highlight=False)
    s = narrow_table("sources", ["key", "citation"], text=("key", "citation"))
    for k, v in d.sources.items():
        s.add_row(k, v)
    console.print(s)


def schema_cmd() -> None:
    """Print the device spec's JSON Schema, for editor autocompletion.

    Example: hwsim schema > device.schema.json
    """
    from hwsim.spec.device import Device

    print(json.dumps(Device.model_json_schema(by_alias=True), indent=2))


def register(app: typer.Typer) -> None:
    app.command("devices")(devices_cmd)
    app.command("show")(show_cmd)
    app.command("schema")(schema_cmd)
