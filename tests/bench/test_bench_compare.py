"""Benchmark of ``hwsim compare --traffic`` (``make bench``; prints what it measured).

The three built-in workload classes on the seven device types of the issue, Llama-3.1-70B, two
worker processes (this machine's cores): under 10 minutes from an empty step-time cache (a fresh
HOME), under 2 minutes with the step-time models cached. Each run is the CLI in a subprocess,
as a user runs it; one run each (a run is minutes; the limits have margin for noise).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

DEVICES = "h100-sxm,h200,b200,mi300x,cerebras-wse3,groq-lpu,sambanova-sn40l"
ARGS = ["compare", "--model", "llama-3.1-70b", "--traffic", "chat,low-latency,batch",
        "--devices", DEVICES, "--workers", "2", "--json"]  # fmt: skip


def _run(home: Path) -> tuple[float, list[dict[str, object]]]:
    env = {**os.environ, "HOME": str(home)}
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "hwsim.cli.app", *ARGS], env=env, capture_output=True, text=True,
        timeout=1800, check=True,
    )  # fmt: skip
    return time.perf_counter() - t0, json.loads(out.stdout)


@pytest.mark.bench
def test_bench_compare_classes_cold_and_cached(tmp_path: Path) -> None:
    cold, rows = _run(tmp_path)
    warm, again = _run(tmp_path)
    met = sum(bool(r["meets_slo"]) for r in rows)
    print(f"\ncompare 3 classes x 7 devices, Llama-3.1-70B, 2 workers: cold {cold:.0f} s "
          f"(limit 600), cached {warm:.0f} s (limit 120); {met} of {len(rows)} rows meet "
          "their SLOs")  # fmt: skip
    def same(rs: list[dict[str, object]]) -> list[dict[str, object]]:
        return [{k: v for k, v in r.items() if k != "wall_s"} for r in rs]

    assert len(rows) == 21 and same(rows) == same(again)  # the same answer from the cache
    assert cold < 600 and warm < 120
