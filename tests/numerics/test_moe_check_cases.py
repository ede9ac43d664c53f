"""The MoE cases registered for ``hwsim check`` exist and pass in their quick form."""

from __future__ import annotations

from hwsim.functional.check import load_cases, run_cases


def test_moe_cases_registered_and_pass() -> None:
    names = {c.name for c in load_cases()}
    assert {"moe/v3/two_hop/fp64", "moe/switch-capacity/two_hop/fp64"} <= names
    results = run_cases(quick=True, match="moe/")
    assert len(results) >= 5
    for r in results:
        # tolerance: the table in hwsim.functional.check for the coarsest wire dtype
        assert r.passed, (r.case, r.max_rel, r.tol, r.detail)
        assert r.bytes_match is True
