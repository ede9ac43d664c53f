"""Every built-in device YAML loads, cites its sources and has sane derived numbers."""

from __future__ import annotations

import pytest

from hwsim.spec.load import list_devices, load_device


@pytest.mark.parametrize("name", list_devices())
def test_builtin_device_loads(name: str) -> None:
    d = load_device(name)
    assert d.compute.units_count >= 1
    assert d.peak_flops("bf16") > 0
    for path, q in d.iter_sourced():
        assert q.source in d.sources, path
    assert d.level_capacity_bytes(d.main_memory.name) > 0
