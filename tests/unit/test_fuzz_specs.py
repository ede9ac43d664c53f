"""Fuzzed spec loading: valid specs load (and run through the roofline), near-valid ones are
refused with a one-line SpecError - never another exception type, never a traceback.

Strategies build random *valid* device and model specs of every kind (random unit prefixes,
optional sections, 1-4 memory levels), then *near-valid* ones by one random mutation: a key
deleted, renamed or added, a value replaced by garbage (NaN, inf, huge, negative, wrong type,
wrong unit), or a random edit of the YAML text itself. Example counts are bounded (CI).
"""

from __future__ import annotations

import copy
import math
import warnings
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwsim.roofline import analytic, ops
from hwsim.sim import budget, invariants
from hwsim.sim import topology as topology_mod
from hwsim.spec import cluster as cluster_mod
from hwsim.spec import model as model_mod
from hwsim.spec.device import Device
from hwsim.spec.errors import SpecError, SpecWarning
from hwsim.spec.load import parse_yaml_text, validate

FILE = "fuzz.yaml"
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---- value strategies ---------------------------------------------------------------------------
_PREFIX = {"": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15}


@st.composite
def quantity(draw: Any, si_lo: float, si_hi: float, unit: str, prefixes: str = "kMGTP") -> str:
    """Text such as '3.35 TB/s' for an SI value in [si_lo, si_hi], with a random prefix."""
    si = draw(st.floats(si_lo, si_hi, allow_nan=False, allow_infinity=False))
    options = [p for p in ["", *prefixes] if 1e-3 <= si / _PREFIX[p] < 1e7]
    p = draw(st.sampled_from(options or [""]))
    return f"{si / _PREFIX[p]:.6g} {p}{unit}"


def sourced(text: Any) -> dict[str, Any]:
    return {"value": text, "source": "ds"}


@st.composite
def memory_levels(draw: Any, kind: str, units: int) -> list[dict[str, Any]]:
    """Innermost → outermost, each level larger and slower (per chip) than the one inside."""
    names = {
        "gpu": ["smem", "l2", "hbm"],
        "wafer_scale": ["sram", "memoryx"],
        "dataflow": ["sram", "hbm", "ddr"],
        "lpu": ["sram"],
    }[kind]
    if kind == "gpu":
        names = names[: draw(st.integers(1, 3))] if draw(st.booleans()) else names
    out = []
    cap, bw = draw(st.floats(1e4, 1e6)), draw(st.floats(1e13, 1e15))
    for i, name in enumerate(names):
        scope = "per_chip" if i else draw(st.sampled_from(["per_unit", "per_chip"]))
        if kind == "wafer_scale" and name == "memoryx":
            scope = "per_system"
        out.append(
            {
                "name": name,
                "scope": scope,
                "capacity": sourced(draw(quantity(cap, cap, "B"))),
                "bandwidth": sourced(draw(quantity(bw, bw, "B/s"))),
                "latency": sourced(draw(quantity(1e-9, 1e-6, "s", prefixes=""))),
            }
        )
        # a per_unit level counts once per compute unit: the next level must beat the total
        instances = units if scope == "per_unit" else 1
        cap *= instances * draw(st.floats(100.0, 1e4))
        bw = bw * instances / draw(st.floats(1.5, 20.0))
    return out


@st.composite
def valid_device(draw: Any) -> dict[str, Any]:
    kind = draw(st.sampled_from(["gpu", "wafer_scale", "dataflow", "lpu"]))
    units = draw(st.integers(1, 1000))
    dtypes = draw(st.sets(st.sampled_from(["fp32", "tf32", "fp8", "int8"])))
    dtypes |= {draw(st.sampled_from(["bf16", "fp16"]))}
    peak = {
        d: sourced(draw(quantity(1e12, 1e16, "OP/s" if d == "int8" else "FLOP/s")))
        for d in sorted(dtypes)
    }
    spec: dict[str, Any] = {
        "name": draw(st.text(min_size=1, max_size=20)),
        "kind": kind,
        "vendor": "Fuzz",
        "arch": draw(st.sampled_from(["hopper", "ampere", "fuzzarch"])),
        "sources": {"ds": "a datasheet"},
        "compute": {
            "units": sourced(units if draw(st.booleans()) else str(units)),
            "clock": sourced(draw(quantity(1e8, 3e9, "Hz"))),
            "peak": peak,
        },
        "memory": draw(memory_levels(kind, units)),
        "power": {"tdp": sourced(draw(quantity(10.0, 2e4, "W", prefixes="k")))},
    }
    if draw(st.booleans()):
        spec["compute"]["vector_fp32"] = sourced(draw(quantity(1e12, 1e14, "FLOP/s")))
    if draw(st.booleans()):
        spec["compute"]["special"] = sourced(draw(quantity(1e11, 1e13, "FLOP/s")))
    if draw(st.booleans()):
        spec["price"] = {"usd": sourced(f"{draw(st.integers(100, 10**7))} USD")}
    if draw(st.booleans()):
        spec["interconnect"] = [
            {
                "kind": draw(st.sampled_from(["nvlink", "pcie", "ethernet", "c2c"])),
                "count": sourced(draw(st.integers(1, 64))),
                "bandwidth": sourced(draw(quantity(1e9, 1e12, "B/s"))),
                "latency": sourced(draw(quantity(1e-7, 1e-5, "s", prefixes=""))),
            }
        ]
    if kind == "wafer_scale":
        spec["mesh"] = {
            "rows": sourced(draw(st.integers(1, 1000))),
            "cols": sourced(draw(st.integers(1, 1000))),
            "hop_latency": sourced("1 ns"),
            "link_bandwidth": sourced(draw(quantity(1e9, 1e12, "B/s"))),
        }
    elif kind == "dataflow":
        spec["tiles"] = {"pcus": sourced(units), "pmus": sourced(units)}
    elif kind == "lpu":
        spec["lpu"] = {"c2c_hop_latency": sourced("100 ns")}
    return spec


# ---- mutations ----------------------------------------------------------------------------------
GARBAGE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(
        [
            "nan GB",
            "-inf TB/s",
            "1e400 B/s",
            "-5 GB",
            "0 GHz",
            "3 TB",
            "3 TB/s",
            "80 GiB",
            "1.98 GHz",
            "989 TFLOP/s",
            "900 ns",
            "1e30 EB",
            "12 parsecs",
            "",
        ]
    ),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def _parent(doc: Any, path: tuple[Any, ...]) -> Any:
    for p in path[:-1]:
        doc = doc[p]
    return doc


@st.composite
def near_valid(draw: Any, base: Any) -> dict[str, Any]:
    """``base`` with one random mutation somewhere."""
    doc = copy.deepcopy(draw(base))
    path = draw(st.sampled_from(_paths(doc)))
    parent, last = _parent(doc, path), path[-1]
    action = draw(st.sampled_from(["delete", "garbage", "rename", "add", "negate"]))
    if action == "delete":
        del parent[last]
    elif action == "garbage":
        parent[last] = draw(GARBAGE)
    elif action == "rename" and isinstance(parent, dict):
        parent[str(last) + draw(st.sampled_from(["s", "_", "x"]))] = parent.pop(last)
    elif action == "add" and isinstance(parent, dict):
        parent[draw(st.text(min_size=1, max_size=8))] = draw(GARBAGE)
    elif action == "negate" and isinstance(parent[last], str):
        parent[last] = "-" + parent[last]
    else:
        parent[last] = draw(GARBAGE)
    return doc


def _must_be_clean_spec_error(exc: BaseException) -> None:
    assert isinstance(exc, SpecError), f"{type(exc).__name__}: {exc}"
    text = str(exc)
    assert "\n" not in text and text.startswith(FILE), text


def _load_device_dict(doc: Any) -> Device:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SpecWarning)  # a mutated spec may well look odd
        return validate(Device, doc, file=FILE)


def _load_device_text(text: str) -> Device:
    data, node = parse_yaml_text(text, FILE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SpecWarning)
        return validate(Device, data, file=FILE, node=node)


# ---- devices ------------------------------------------------------------------------------------
@FUZZ
@given(valid_device())
def test_valid_devices_load_and_run_the_roofline(doc: dict[str, Any]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # well-ordered levels: not even a warning
        data, node = parse_yaml_text(yaml.safe_dump(doc, sort_keys=False), FILE)
        dev = validate(Device, data, file=FILE, node=node)
    assert dev.kind == doc["kind"]

    for kernel in ops.example_kernels(dev):
        r = analytic.roofline(kernel, dev)
        invariants.check_result(r, kernel.name)
        invariants.check_time(r.time_s, kernel.name)


@FUZZ
@given(near_valid(valid_device()))
def test_near_valid_devices_are_refused_cleanly(doc: dict[str, Any]) -> None:
    try:
        _load_device_dict(doc)
    except Exception as exc:  # the point: whatever went wrong must be a clean SpecError
        _must_be_clean_spec_error(exc)


@FUZZ
@given(valid_device(), st.data())
def test_edited_yaml_text_is_refused_cleanly(doc: dict[str, Any], data: Any) -> None:
    """Random character edits of a valid file: syntax errors, broken units, truncation."""
    text = yaml.safe_dump(doc, sort_keys=False)
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(text)))
        edit = data.draw(st.sampled_from(["insert", "delete", "truncate"]))
        if edit == "insert":
            text = text[:i] + data.draw(st.sampled_from(list(":{}[]-#&*!|>'\"\t\n x9."))) + text[i:]
        elif edit == "delete":
            text = text[:i] + text[i + 1 :]
        else:
            text = text[:i]
    try:
        _load_device_text(text)
    except Exception as exc:
        _must_be_clean_spec_error(exc)


@FUZZ
@given(st.text(max_size=200))
def test_arbitrary_text_is_refused_cleanly(text: str) -> None:
    try:
        _load_device_text(text)
    except Exception as exc:
        _must_be_clean_spec_error(exc)


# ---- models -------------------------------------------------------------------------------------


@st.composite
def valid_model(draw: Any) -> dict[str, Any]:
    kind = draw(st.sampled_from(["mha", "gqa", "mqa"]))
    kv = draw(st.integers(1, 16))
    heads = {"mha": kv, "gqa": kv * draw(st.integers(1, 8)), "mqa": draw(st.integers(1, 64))}[kind]
    if kind == "mqa":
        kv = 1
    spec: dict[str, Any] = {
        "name": "fuzz-model",
        "family": "fuzz",
        "sources": {"ds": "a config"},
        "layers": sourced(draw(st.integers(1, 128))),
        "hidden": sourced(draw(st.integers(1, 16384))),
        "vocab": sourced(draw(st.integers(1, 300000))),
        "attention": {
            "kind": kind,
            "heads": sourced(heads),
            "kv_heads": sourced(kv),
            "head_dim": sourced(draw(st.sampled_from([64, 96, 128, 256]))),
        },
        "ffn": {"intermediate": sourced(draw(st.integers(1, 65536)))},
    }
    if draw(st.booleans()):
        experts = draw(st.integers(1, 256))
        spec["moe"] = {
            "n_routed_experts": sourced(experts),
            "top_k": sourced(draw(st.integers(1, experts))),
            "moe_intermediate": sourced(draw(st.integers(1, 8192))),
        }
    return spec


def _load_model_dict(doc: Any) -> Any:
    return validate(model_mod.ModelConfig, doc, file=FILE)


@FUZZ
@given(valid_model())
def test_valid_models_load(doc: dict[str, Any]) -> None:
    cfg = _load_model_dict(doc)
    assert cfg.total_params() > 0
    assert math.isfinite(cfg.kv_cache_bytes_per_token(2.0))


@FUZZ
@given(near_valid(valid_model()))
def test_near_valid_models_are_refused_cleanly(doc: dict[str, Any]) -> None:
    try:
        _load_model_dict(doc)
    except Exception as exc:
        _must_be_clean_spec_error(exc)


def test_model_source_that_is_a_list_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match="source"):
        _load_model_dict(
            {
                "name": "m",
                "family": "f",
                "sources": {"ds": "a config"},
                "layers": {"value": 1, "source": ["ds"]},
                "hidden": sourced(64),
                "vocab": sourced(100),
                "attention": {
                    "kind": "mha",
                    "heads": sourced(1),
                    "kv_heads": sourced(1),
                    "head_dim": sourced(64),
                },
                "ffn": {"intermediate": sourced(128)},
            }
        )


# ---- clusters -----------------------------------------------------------------------------------


@st.composite
def valid_cluster(draw: Any) -> dict[str, Any]:
    """A fat tree, a dragonfly-free single node, or a 2-D mesh of nodes, on a built-in GPU."""
    per_node = draw(st.sampled_from([1, 2, 4, 8]))
    kind = draw(st.sampled_from(["fat_tree", "none", "mesh2d"]))
    nodes = 1 if kind == "none" else draw(st.integers(1, 16))
    spec: dict[str, Any] = {
        "name": "fuzz-cluster",
        "sources": {"ds": "a datasheet"},
        "device": draw(st.sampled_from(["h100-sxm", "mi300x", "a100-sxm-80gb"])),
        "nodes": sourced(nodes),
        "devices_per_node": sourced(per_node),
    }
    if per_node > 1:
        spec["intra_node"] = {
            "kind": draw(st.sampled_from(["switch", "full_mesh"])),
            "name": "fabric",
            "bandwidth": sourced(draw(quantity(1e10, 1e12, "B/s"))),
            "latency": sourced("1 us"),
            "devices_forward": kind == "mesh2d",
        }
    if kind == "fat_tree":
        spec["nics"] = {
            "name": "nic",
            "per_device": sourced(1),
            "bandwidth": sourced(draw(quantity(1e9, 1e11, "B/s"))),
            "latency": sourced("0.5 us"),
        }
        spec["network"] = {
            "kind": "fat_tree",
            "switch_radix": sourced(64),
            "oversubscription": sourced(draw(st.sampled_from([1, 2, 3]))),
            "link_bandwidth": sourced("400 Gb/s"),
            "switch_latency": sourced("150 ns"),
        }
    elif kind == "mesh2d":
        spec["network"] = {
            "kind": "mesh2d",
            "link_bandwidth": sourced(draw(quantity(1e9, 1e11, "B/s"))),
            "hop_latency": sourced("100 ns"),
            "torus": draw(st.booleans()),
        }
    else:
        spec["network"] = {"kind": "none"}
    return spec


def _build_cluster(doc: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SpecWarning)
        cluster = validate(cluster_mod.Cluster, doc, file=FILE)
    return topology_mod.build_topology(cluster)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_cluster())
def test_valid_clusters_build_connected_graphs(doc: dict[str, Any]) -> None:
    topo = _build_cluster(doc)
    assert topo.ranks == doc["nodes"]["value"] * doc["devices_per_node"]["value"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(near_valid(valid_cluster()))
def test_near_valid_clusters_are_refused_cleanly(doc: dict[str, Any]) -> None:
    # huge node counts must be refused before they are built; a 64 MiB budget (~65,000 graph
    # elements and links) keeps every accepted example fast
    try:
        with budget.limits(max_memory_bytes=64 * 2**20):
            _build_cluster(doc)
    except SpecError as exc:
        # validation names the fuzz file; the graph builder names the cluster's own file
        assert "\n" not in str(exc), str(exc)
    except Exception as exc:
        _must_be_clean_spec_error(exc)
