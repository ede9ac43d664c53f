"""The built-in device kinds: importing this module registers each kind's mapper
(:func:`hwsim.sim.mapper.register_mapper`). A new built-in kind adds its module here; a kind
defined outside the package registers itself when its module is imported."""

from __future__ import annotations

from hwsim.sim import dataflow, gpu_mapper, lpu, wafer

#: kind → the module that registers its mapper
BUILTIN: dict[str, str] = {
    "gpu": gpu_mapper.__name__,
    "wafer_scale": wafer.__name__,
    "dataflow": dataflow.__name__,
    "lpu": lpu.__name__,
}
