"""``hwsim devices``, ``hwsim show`` and ``hwsim schema``: the device library."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from hwsim.cli.common import console, print_json
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


def devices_cmd(
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """List the built-in devices with their key numbers.

    Example: hwsim devices --json
    """
    from hwsim.spec.load import list_devices, load_device

    rows = [_summary(n, load_device(n)) for n in list_devices()]
    if json_out:
        print_json(rows)
        return
    t = Table(title="built-in devices (devices/*.yaml)")
    for col in (
        "name",
        "kind",
        "units",
        "BF16 peak",
        "FP8 peak",
        "main memory",
        "bandwidth",
        "other SRAM",
        "TDP",
    ):
        t.add_column(col, justify="left" if col in ("name", "kind") else "right")
    for r in rows:
        t.add_row(
            str(r["name"]),
            str(r["kind"]),
            str(r["units"]),
            format_quantity(float(r["bf16_flops"]), Dim.RATE),  # type: ignore[arg-type]
            format_quantity(float(r["fp8_flops"]), Dim.RATE),  # type: ignore[arg-type]
            f"{r['main_memory']} " + format_quantity(float(r["main_memory_bytes"]), Dim.BYTES),  # type: ignore[arg-type]
            format_quantity(float(r["main_memory_Bps"]), Dim.BANDWIDTH),  # type: ignore[arg-type]
            format_quantity(float(r["on_chip_sram_bytes"]), Dim.BYTES),  # type: ignore[arg-type]
            format_quantity(float(r["tdp_W"]), Dim.POWER),  # type: ignore[arg-type]
        )
    console.print(t)


def show_cmd(
    device: Annotated[str, typer.Argument(help="device name (file stem) or path to a YAML file")],
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Print a device's full spec, every number with its source.

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
    t = Table()
    for col in ("field", "value", "SI", "source", "derivation / note"):
        t.add_column(col)
    for path, q in d.iter_sourced():
        t.add_row(
            path,
            q.text,
            f"{q.value:.6g} {q.dim.value}",
            q.source,
            " ".join(x for x in (q.derived, q.note) if x),
        )
    console.print(t)
    s = Table(title="sources")
    s.add_column("key")
    s.add_column("citation")
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
