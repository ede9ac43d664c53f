"""The one numerics helper of hwsim: seeded inputs, per-dtype tolerances, comparison against a
float64 reference, and the registry of check cases that ``hwsim check`` runs.

Every functional check in the project (attention, GEMM, MoE) goes through here::

    from hwsim.functional.check import CheckResult, compare, inputs, register_case

    def _my_case() -> CheckResult:
        x = inputs((64, 128), "bf16", seed=0)            # float32 holding bf16 values
        y, nbytes = my_executor(x)                       # the plan-driven numpy run
        r = compare(y, my_reference_f64(x), "bf16", case="gemm/bf16")
        return r.with_bytes(nbytes == plan_bytes)        # bytes_match feeds the table

    register_case("gemm/bf16", _my_case, quick=True)

A case function returns a :class:`CheckResult` or a list of them (e.g. one per output).
``hwsim check`` imports :data:`CASE_MODULES` (add your module's name there with a one-line edit)
and runs every registered case; ``--quick`` runs the ``quick=True`` ones only.

Error metric: ``max_abs = max |result - reference|`` and ``max_rel = max_abs / max |reference|``
(normwise: elementwise relative error is meaningless where an output is ~0). The case passes
when ``max_abs <= atol + rtol · max |reference|``, nothing is NaN, and the bytes match.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from hwsim.functional.dtypes import canonical, quantize


@dataclass(frozen=True)
class Tolerance:
    """``atol`` absolute floor, ``rtol`` relative to max |reference|, and why."""

    atol: float
    rtol: float
    reason: str


#: Tolerances of outputs computed from inputs already rounded to the dtype (the reference uses
#: the same rounded inputs, so input quantisation is not part of the error). The error then
#: comes from fp32 accumulation and from the kernel rounding intermediates (P, dS) and outputs
#: to the storage format: ~ one unit roundoff u of the format, times a safety factor.
TOLERANCES: dict[str, Tolerance] = {
    "fp64": Tolerance(
        1e-12, 1e-10, "float64 end to end: only reassociation of sums (~K·2^-53) differs"
    ),
    "fp32": Tolerance(
        1e-6,
        2e-5,
        "fp32 accumulation over K ≤ ~10^4 terms: ~√K·2^-24 ≈ 6e-6 relative, 3× margin",
    ),
    "bf16": Tolerance(
        1e-5,
        2e-2,
        "P/dS and outputs rounded to bf16 (u = 2^-8 = 3.9e-3); errors of a few such roundings "
        "add up to ~2-3u; 2e-2 ≈ 5u",
    ),
    "fp16": Tolerance(
        1e-6,
        3e-3,
        "P/dS and outputs rounded to fp16 (u = 2^-11 = 4.9e-4); ~6u allows the same few "
        "roundings as bf16",
    ),
    "fp8_e4m3": Tolerance(
        1e-4,
        1.25e-1,
        "P rounded to e4m3 (u = 2^-4, subnormals below 2^-6 lose more); output bf16; ~2u",
    ),
    "fp8_e5m2": Tolerance(
        1e-4,
        2.5e-1,
        "P rounded to e5m2 (u = 2^-3); output bf16; ~2u",
    ),
}


def tolerance(dtype: str) -> Tolerance:
    return TOLERANCES[canonical(dtype)]


@dataclass(frozen=True)
class CheckResult:
    """Outcome of one comparison. ``bytes_match`` is None when the case counts no bytes."""

    case: str
    dtype: str
    max_abs: float
    max_rel: float
    tol: float
    ok: bool
    bytes_match: bool | None = None
    detail: str = ""
    wall_s: float = 0.0

    @property
    def rel_tol(self) -> float:
        """The tolerance as a fraction of the error scale (compare with ``max_rel``)."""
        if self.max_abs > 0 and self.max_rel > 0 and np.isfinite(self.max_rel):
            return self.tol * self.max_rel / self.max_abs
        return float("nan")

    @property
    def passed(self) -> bool:
        return self.ok and self.bytes_match is not False

    def with_bytes(self, match: bool, detail: str = "") -> CheckResult:
        return replace(self, bytes_match=bool(match), detail=detail or self.detail)

    def as_dict(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "dtype": self.dtype,
            "max_abs": self.max_abs,
            "max_rel": self.max_rel,
            "tol": self.tol,
            "rel_tol": self.rel_tol,
            "ok": self.ok,
            "bytes_match": self.bytes_match,
            "passed": self.passed,
            "detail": self.detail,
            "wall_s": self.wall_s,
        }


def inputs(
    shape: tuple[int, ...] | Mapping[str, tuple[int, ...]],
    dtype: str,
    seed: int,
    scale: float = 1.0,
) -> Any:
    """Seeded standard-normal inputs × ``scale``, quantized to ``dtype`` (see
    :func:`hwsim.functional.dtypes.quantize`): one array for a shape, a dict for a mapping of
    names to shapes (drawn in the mapping's order from one generator)."""
    rng = np.random.default_rng(seed)

    def one(s: tuple[int, ...]) -> np.ndarray:
        return quantize(rng.standard_normal(s) * scale, dtype)

    if isinstance(shape, Mapping):
        return {k: one(tuple(v)) for k, v in shape.items()}
    return one(tuple(shape))


def compare(
    result: Any,
    reference: Any,
    dtype: str,
    case: str = "",
    bytes_match: bool | None = None,
    tol: Tolerance | None = None,
    scale: float | None = None,
) -> CheckResult:
    """Compare ``result`` to a float64 ``reference`` under ``dtype``'s tolerance. Equal
    infinities (e.g. LSE = +inf of fully masked rows) count as exact; a NaN fails.

    ``scale`` overrides ``max |reference|`` as the magnitude the relative error refers to: use
    it when the reference is (near) zero by cancellation of O(1) terms, e.g. dK with a single
    key (the softmax is constant), where rounding of the cancelling terms sets the error."""
    r = np.asarray(result, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    if r.shape != ref.shape:
        return CheckResult(case, dtype, np.inf, np.inf, 0.0, False, bytes_match, "shape mismatch")
    t = tol or tolerance(dtype)
    same = r == ref  # equal infinities are exact; NaN never equals anything
    with np.errstate(invalid="ignore"):
        diff = np.where(same, 0.0, np.abs(r - ref))
    diff = np.where(np.isnan(diff), np.inf, diff)
    finite = ref[np.isfinite(ref)]
    if scale is None:
        scale = float(np.max(np.abs(finite))) if finite.size else 0.0
    max_abs = float(diff.max()) if diff.size else 0.0
    max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else np.inf)
    bound = t.atol + t.rtol * scale
    ok = bool(max_abs <= bound and not np.isnan(r).any())
    return CheckResult(case, canonical(dtype), max_abs, max_rel, bound, ok, bytes_match)


# ---- registry ----------------------------------------------------------------------------------
CaseFn = Callable[[], "CheckResult | Sequence[CheckResult]"]


@dataclass(frozen=True)
class Case:
    name: str
    fn: CaseFn
    quick: bool


_CASES: dict[str, Case] = {}

#: Modules that register cases on import (missing ones are skipped: areas land at their pace).
CASE_MODULES: tuple[str, ...] = (
    "hwsim.functional.attention_cases",
    "hwsim.functional.moe",
    "hwsim.functional.moe_cases",
    "hwsim.functional.gemm",
    "hwsim.functional.gemm_cases",
)


def register_case(name: str, fn: CaseFn, quick: bool = False) -> None:
    """Register a check case (idempotent by name: re-registration replaces)."""
    _CASES[name] = Case(name, fn, quick)


def load_cases() -> list[Case]:
    """Import :data:`CASE_MODULES` and return every registered case in registration order."""
    for mod in CASE_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as err:
            if err.name != mod:  # a real missing dependency inside the module: surface it
                raise
    return list(_CASES.values())


def run_cases(quick: bool = False, match: str | None = None) -> list[CheckResult]:
    """Run every registered case (``quick``: only quick ones; ``match``: substring filter).
    An exception inside a case becomes a failed result, so one bug does not hide the rest."""
    out: list[CheckResult] = []
    for c in load_cases():
        if (quick and not c.quick) or (match and match not in c.name):
            continue
        t0 = time.perf_counter()
        try:
            res = c.fn()
            results = [res] if isinstance(res, CheckResult) else list(res)
        except Exception as err:  # report, do not crash the whole suite
            results = [CheckResult(c.name, "", np.inf, np.inf, 0.0, False, None, f"error: {err!r}")]
        dt = (time.perf_counter() - t0) / max(1, len(results))
        out += [replace(r, case=r.case or c.name, wall_s=dt) for r in results]
    return out
