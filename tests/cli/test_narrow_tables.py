"""Every table the CLI prints is readable in an 80-column terminal: no cell cut short with "…",
no line wider than 80, the headers whole. Representative commands, in-process (the quick cases
and small models); ``--wide`` tables are meant for wider terminals and are not checked here."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from hwsim.cli import common
from hwsim.cli.app import app

runner = CliRunner()
WIDTH = 80
#: Box-drawing characters of rich's tables: a line with one is part of a table.
BOX = set("│┃┏┓┗┛┡┩└┘├┤┼╇╋┳┻━─")

#: (name, argv, words that must appear whole: headers and a few cells)
CASES: list[tuple[str, list[str], list[str]]] = [
    ("check", ["check", "--match", "gemm"],
     ["case", "dtype", "err/tol", "bytes", "result", "gemm/mxfp4 96x130x2080 mi355x"]),
    ("compare", ["compare", "--model", "llama-3.1-8b", "--devices", "h100-sxm,mi300x",
                 "--batch", "1,64"],
     ["devices", "batch", "tok/s/user", "total", "(tok/s)", "bound", "8 × h100-sxm"]),
    ("size", ["size", "--model", "llama-3.1-8b", "--device", "h100-sxm",
              "--tokens-per-s-per-user", "50", "--total-tokens-per-s", "5000",
              "--max-devices-per-instance", "2"],
     ["pick", "deployment", "tok/s/user", "power", "price", "2 × tp=1", "1 × tp=2"]),
    ("decode", ["decode", "--model", "llama-3.1-8b", "--device", "h100-sxm"],
     ["time per token (per user)", "busy time per step"]),
    ("prefill", ["prefill", "--model", "llama-3.1-8b", "--device", "h100-sxm", "--batch", "2"],
     ["TTFT", "share of step"]),
    ("whatif", ["whatif", "--device", "h100-sxm", "--set", "hbm.bandwidth=x2", "--",
                "decode", "--model", "llama-3.1-8b"],
     ["baseline", "what-if", "change", "time_per_token_s"]),
    ("devices", ["devices"],
     ["BF16 peak", "FP8 peak", "main memory", "bandwidth", "other SRAM", "sambanova-sn40l",
      "cerebras-wse3", "wafer_scale"]),
    ("show", ["show", "h100-sxm"],
     ["compute.matrix_paths.mma_sync.fraction", "citation", "derivations and notes"]),
    ("roofline", ["roofline", "h100-sxm", "mi300x", "-k", "attn-decode", "-k", "gemm-8192"],
     ["% peak", "FLOP/s", "infinity_cache", "attn decode 8k"]),
    ("gemm", ["gemm", "--device", "h100-sxm", "--m", "1024", "--n", "4096", "--k", "4096"],
     ["quantity", "TFLOP/s"]),
    ("attention", ["attention", "--device", "h100-sxm", "--batch", "1", "--heads", "8",
                   "--seqlen", "1024", "--causal"],
     ["TFLOP/s (FA convention)", "expected error"]),
    ("moe", ["moe", "--cluster", "h800-deepseek", "--ep", "16", "--tokens", "256"],
     ["RDMA GB/s (DeepEP def.)", "imbalance (max/mean recv)"]),
    ("topology", ["topology", "h800-deepseek", "--nodes", "2", "--tokens", "256"],
     ["link kind", "directed links", "bandwidth"]),
    ("validate", ["validate", "--suite", "fa3-h100"],
     ["measured", "predicted", "unit", "error", "d128 causal s16384 b1 h16"]),
    ("sweep kinds", ["sweep", "ci-small", "--list-kinds"],
     ["workload parameters", "metrics", "intensity_flop_per_byte", "dense_active_params"]),
    ("train", ["train", "--model", "llama-3.1-8b", "--cluster", "dgx-h100", "--gpus", "8",
               "--layout", "tp=2,dp=4", "--seqlen", "4096", "--global-batch", "32"],
     ["step time", "param_gather_exposed"]),
    ("train search", ["train", "--model", "llama-3.1-8b", "--cluster", "dgx-h100", "--gpus", "2",
                      "--seqlen", "2048", "--global-batch", "8", "--search"],
     ["layout", "schedule", "recompute", "zero", "MFU", "selective"]),
    ("map", ["map", "--model", "llama-3.1-8b", "--device", "groq-lpu", "--dtype", "fp8"],
     ["tokens/s per user"]),
    ("serve", ["serve", "--model", "llama-3.1-8b", "--device", "h100-sxm", "--traffic",
               "sharegpt", "--qps", "4", "--requests", "100"],
     ["TTFT (s)", "end to end (s)", "p99"]),
    ("explain", ["explain", "gemm", "--device", "h100-sxm", "--m", "1024", "--n", "4096",
                 "--k", "4096"],
     ["what-if", "lever", "vs. as given", "bound", "re-simulated with"]),
]  # fmt: skip
#: Commands whose prose (not tables) is printed soft-wrapped, for the terminal to wrap.
PROSE = {"explain"}


@pytest.fixture(autouse=True)
def _eighty_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shared console as an 80-column terminal, whatever COLUMNS was at import."""
    monkeypatch.setattr(common.console, "_width", WIDTH)


def _problems(name: str, out: str, words: list[str]) -> list[str]:
    bad = []
    for line in out.splitlines():
        table = bool(BOX & set(line))
        if table and "…" in line:
            bad.append(f"cut short: {line}")
        if len(line) > WIDTH and (table or name not in PROSE):
            bad.append(f"{len(line)} columns: {line}")
    bad += [f"missing (split or cut): {w!r}" for w in words if w not in out]
    return bad


@pytest.mark.parametrize(("name", "argv", "words"), CASES, ids=[c[0] for c in CASES])
def test_tables_fit_80_columns(name: str, argv: list[str], words: list[str]) -> None:
    res = runner.invoke(app, argv, env={"COLUMNS": str(WIDTH)})
    assert res.exit_code == 0, res.output
    assert BOX & set(res.stdout), "no table printed"
    assert _problems(name, res.stdout, words) == []


def test_sweep_summary_fits_80_columns(tmp_path: Path) -> None:
    out = tmp_path / "ci.parquet"
    argv = ["sweep", "ci-small", "--out", str(out), "--no-cache"]
    res = runner.invoke(app, argv, env={"COLUMNS": str(WIDTH)})
    assert res.exit_code == 0, res.output
    words = ["computed", "decode_roofline", "local median", "local range", "memory.hbm.bandwidth"]
    assert _problems("sweep", res.stdout, words) == []


def test_wide_shows_every_column(monkeypatch: pytest.MonkeyPatch) -> None:
    """--wide: the columns the 80-column tables leave out (for a wider terminal)."""
    monkeypatch.setattr(common.console, "_width", 200)
    for argv, words in (
        (["check", "--match", "gemm/fp16", "--wide"], ["max abs err", "rel tol", "bytes match"]),
        (["devices", "--wide"], ["BF16 peak", "other SRAM", "TDP"]),
        (["compare", "--model", "llama-3.1-8b", "--devices", "h100-sxm", "--batch", "1",
          "--wide"], ["layout", "tok/s/device", "tok/J", "Pareto"]),
    ):  # fmt: skip
        res = runner.invoke(app, argv, env={"COLUMNS": "200"})
        assert res.exit_code == 0, res.output
        assert [w for w in words if w not in res.stdout] == [], argv
