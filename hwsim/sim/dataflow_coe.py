"""Composition of Experts on a dataflow rack: many models (or experts) live in DDR, the active
ones are cached in HBM, and a request for an uncached one pays a DDR → HBM copy.

Prabhakar et al. (arXiv 2405.07518, sec. on Samba-CoE) keep 150 7B experts of Samba-CoE in the
DDR of one 8-socket node and serve whichever the router picks from HBM; switching is a bulk copy
of the expert's weights, spread over every socket's DDR channels in parallel (Hot Chips 2024
quotes 0.01 s for Llama-3.1-8B on 16 sockets: 16 GB / 1.6 TB/s). :func:`simulate_coe` replays a
request trace against an LRU cache of the rack's HBM; each miss is played on the engine as one
flow per socket over that socket's DDR link, so the time is
``latency + bytes / (sockets · BW_ddr · hbm_efficiency)``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hwsim.sim.dataflow import DataflowMapper
from hwsim.sim.engine import Engine
from hwsim.spec.errors import SpecError
from hwsim.spec.fit import human_bytes


@dataclass(frozen=True)
class CoeRequest:
    """One request: which expert, whether HBM already held it, the switch it cost."""

    expert: str
    hit: bool
    switch_s: float
    evicted: tuple[str, ...] = ()


@dataclass(frozen=True)
class CoeResult:
    """A replayed trace (seconds, bytes for the whole rack)."""

    device: str
    sockets: int
    hbm_cache_bytes: float
    ddr_bytes: float
    expert_bytes: float
    requests: tuple[CoeRequest, ...]
    switch_time_s: float
    events: int

    @property
    def hits(self) -> int:
        return sum(r.hit for r in self.requests)

    @property
    def misses(self) -> int:
        return len(self.requests) - self.hits

    def to_dict(self) -> dict[str, object]:
        return {
            "device": self.device,
            "sockets": self.sockets,
            "hbm_cache_bytes": self.hbm_cache_bytes,
            "ddr_bytes": self.ddr_bytes,
            "expert_bytes": self.expert_bytes,
            "requests": len(self.requests),
            "hits": self.hits,
            "misses": self.misses,
            "switch_time_s": self.switch_time_s,
            "events": self.events,
            "trace": [
                {"expert": r.expert, "hit": r.hit, "switch_s": r.switch_s, "evicted": r.evicted}
                for r in self.requests
            ],
        }


def switch_time_s(model_bytes: float, mapper: DataflowMapper, sockets: int) -> float:
    """DDR → HBM copy of ``model_bytes`` spread evenly over ``sockets`` (closed form)."""
    ddr = mapper.device.level("ddr")
    return ddr.latency_s + model_bytes / (sockets * mapper.tier_Bps("ddr"))


def simulate_coe(
    experts: Mapping[str, float],
    trace: Sequence[str],
    mapper: DataflowMapper,
    sockets: int = 16,
    hbm_reserved_bytes: float = 0.0,
) -> CoeResult:
    """Replay ``trace`` (expert names) against an LRU cache of the ``sockets``' HBM, minus
    ``hbm_reserved_bytes`` kept for KV cache and activations. ``experts``: name → weight bytes.
    Misses copy the expert from DDR, evicting the least recently used experts first."""
    if sockets < 1:
        raise SpecError(f"expected at least 1 socket, got {sockets}", key="sockets")
    dev = mapper.device
    hbm = sockets * mapper.capacity_bytes - hbm_reserved_bytes
    ddr = sockets * dev.level_capacity_bytes("ddr")
    total = float(sum(experts.values()))
    if total > ddr:
        raise SpecError(
            f"{len(experts)} experts of {human_bytes(total)} do not fit the "
            f"{human_bytes(ddr)} DDR of {sockets} sockets; needs ≥ "
            f"{-(-total // dev.level_capacity_bytes('ddr')):.0f} sockets"
        )
    for name, b in experts.items():
        if b > hbm:
            raise SpecError(
                f"expert {name!r} of {human_bytes(b)} does not fit the {human_bytes(hbm)} of HBM "
                f"left on {sockets} sockets"
            )
    unknown = sorted(set(trace) - set(experts))
    if unknown:
        raise SpecError(f"trace names unknown experts: {', '.join(unknown[:5])}", key="trace")
    eng = Engine()
    lat = dev.level("ddr").latency_s
    links = [eng.link(f"ddr{s}", mapper.tier_Bps("ddr"), lat, "ddr") for s in range(sockets)]
    cache: OrderedDict[str, float] = OrderedDict()
    used = 0.0
    out: list[CoeRequest] = []
    for name in trace:
        if name in cache:
            cache.move_to_end(name)
            out.append(CoeRequest(name, True, 0.0))
            continue
        need = experts[name]
        evicted = []
        while used + need > hbm and cache:
            old, b = cache.popitem(last=False)
            used -= b
            evicted.append(old)
        start = eng.env.now
        done = [eng.env.process(_copy(eng, link, need / sockets)) for link in links]
        eng.run(until=eng.env.all_of(done))
        cache[name] = need
        used += need
        out.append(CoeRequest(name, False, eng.env.now - start, tuple(evicted)))
    return CoeResult(
        dev.name,
        sockets,
        hbm,
        ddr,
        total,
        tuple(out),
        float(eng.env.now),
        eng.events,
    )


def _copy(eng: Engine, link: Any, nbytes: float) -> Generator[Any, Any, None]:
    yield eng.transfer([link], nbytes, label="ddr->hbm")
