"""Replicas behind a router, and prefill/decode disaggregation, as one simpy simulation.

* A **replica** is one model instance on its devices, run by one engine
  (:class:`hwsim.serve.engine.VirtualEngine`; a pipeline's stages hold micro-batches of it).
* The **router** sends each arriving request to a replica: ``round-robin``, ``least-outstanding``
  (fewest unfinished requests, vLLM's production stack and SGLang's router default) or
  ``least-kv`` (the smallest share of KV blocks in use).
* **Disaggregation** (DistServe, Splitwise, DeepSeek's deployment, NVIDIA Dynamo): prefill
  replicas only prefill; when a prompt is done its KV cache moves to the decode replica with the
  fewest outstanding requests as a flow on the cluster's graph (:mod:`hwsim.serve.kv_route`:
  replicas placed in rank order, each device's shard on its ECMP route, max-min fair sharing
  with every other transfer in flight; without a cluster, the two replicas' NICs), and the
  decode replica takes it when it has the blocks.
* **Arrivals**: open loop (each request at its time), offline (all at once) or a closed loop of
  users who each send their next request a think time after the last one finished.

Requests a deployment can never serve (a KV cache larger than one replica's whole pool) are
refused at arrival with the reason, so that completed + refused = arrived.
"""

from __future__ import annotations

import itertools
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import simpy

from hwsim.serve.engine import EngineConfig, Role, VirtualEngine
from hwsim.serve.kv_route import KvNetwork
from hwsim.serve.ledger import Ledger
from hwsim.serve.steptime import StepTimeModel
from hwsim.serve.traffic import Requests, UserStreams
from hwsim.sim.engine import Engine, Link

RouterPolicy = Literal["round-robin", "least-outstanding", "least-kv"]
ROUTERS: tuple[str, ...] = ("round-robin", "least-outstanding", "least-kv")


@dataclass(frozen=True)
class ReplicaSpec:
    """How to build one kind of replica (every replica of a pool is alike)."""

    model: StepTimeModel
    cfg: EngineConfig
    pp: int
    devices: int
    kv_bytes_per_token: float  #: the whole model's KV cache per token (all layers), bytes
    nic_Bps: float  #: the replica's network bandwidth out of (or into) its devices, B/s
    nic_latency_s: float


class Replica:
    """One model instance (see the module docstring)."""

    def __init__(
        self,
        env: simpy.Environment,
        name: str,
        spec: ReplicaSpec,
        ledger: Ledger,
        role: Role,
        on_prefilled: Any = None,
    ) -> None:
        self.name, self.spec, self.role = name, spec, role
        self.engines = [VirtualEngine(env, name, spec.cfg, spec.model, ledger, role, on_prefilled)]
        self.capacity_tokens = spec.cfg.kv_blocks * spec.cfg.block_tokens
        self.link: Link | None = None

    @property
    def outstanding(self) -> int:
        return sum(e.outstanding for e in self.engines)

    @property
    def kv_load(self) -> float:
        return sum(e.pool.used for e in self.engines) / sum(e.pool.total for e in self.engines)

    def _engine(self) -> VirtualEngine:
        return min(self.engines, key=lambda e: e.outstanding)

    def submit(self, rid: int) -> None:
        self._engine().submit(rid)

    def accept(self, rid: int, kv_tokens: float) -> None:
        self._engine().accept(rid, kv_tokens)

    def busy(self) -> dict[str, float]:
        """Seconds of iterations per kind, of its engine."""
        out = {"prefill": 0.0, "decode": 0.0, "mixed": 0.0}
        for e in self.engines:
            for k, v in e.busy.items():
                out[k] += v
        return out


class Router:
    """Picks a replica for each request (see the module docstring)."""

    def __init__(self, replicas: Sequence[Replica], policy: RouterPolicy) -> None:
        self.replicas, self.policy = list(replicas), policy
        self._next = itertools.cycle(range(len(self.replicas)))

    def pick(self) -> Replica:
        if self.policy == "round-robin":
            return self.replicas[next(self._next)]
        if self.policy == "least-kv":
            return min(self.replicas, key=lambda r: (r.kv_load, r.outstanding))
        return min(self.replicas, key=lambda r: r.outstanding)


class ServingCluster:
    """Replicas, router and (optionally) the disaggregated hand-over, on one engine."""

    def __init__(
        self,
        engine: Engine,
        ledger: Ledger,
        spec: ReplicaSpec,
        replicas: int,
        router: RouterPolicy,
        decode_spec: ReplicaSpec | None = None,
        decode_replicas: int = 0,
        network: KvNetwork | None = None,
    ) -> None:
        self.eng, self.env, self.ledger = engine, engine.env, ledger
        if decode_spec is None:  # aggregated: every replica prefills and decodes
            self.front = [
                Replica(self.env, f"replica {i}", spec, ledger, "both") for i in range(replicas)
            ]
            self.back: list[Replica] = []
        else:
            self.front = [
                Replica(self.env, f"prefill {i}", spec, ledger, "prefill", self._handover)
                for i in range(replicas)
            ]
            self.back = [
                Replica(self.env, f"decode {i}", decode_spec, ledger, "decode")
                for i in range(decode_replicas)
            ]
            if network is None:  # no cluster graph: each replica's NICs, a non-blocking core
                for r in self.front + self.back:
                    r.link = engine.link(
                        f"{r.name} NICs", r.spec.nic_Bps, r.spec.nic_latency_s, "rdma"
                    )
        self.router = Router(self.front, router)
        self.decode_router = Router(self.back, "least-outstanding") if self.back else None
        self._placed: dict[int, Replica] = {}
        self.network = network

    @property
    def replicas(self) -> list[Replica]:
        return self.front + self.back

    # ---- arrivals ----------------------------------------------------------------------------
    def arrive(self, arrival: float, prompt: int, output: int, pid: int, ptok: int) -> int:
        """A request arrives now: recorded, refused if it can never fit, or routed."""
        rid = self.ledger.add(arrival, prompt, output, pid, ptok)
        rep = self.router.pick()
        fit = min(r.capacity_tokens for r in [rep, *self.back[:1]])
        need = prompt + output
        if need > fit:
            self.ledger.reject(
                rid, f"needs {need} KV tokens; one replica's pool holds {fit}", self.env.now
            )
            return rid
        self.ledger.replica[rid] = self.front.index(rep)
        rep.submit(rid)
        return rid

    def open_loop(self, reqs: Requests) -> Generator[Any, Any, None]:
        """Each request at its arrival time (offline: all at 0)."""
        t = reqs.arrival_s
        for i in range(len(reqs)):
            if t[i] > self.env.now:
                yield self.env.timeout(float(t[i]) - self.env.now)
            self.arrive(
                float(t[i]), int(reqs.prompt_tokens[i]), int(reqs.output_tokens[i]),
                int(reqs.prefix_id[i]), int(reqs.prefix_tokens[i]),
            )  # fmt: skip

    def closed_loop(
        self, streams: UserStreams, total: int | None, until_s: float | None
    ) -> list[simpy.Process]:
        """One process per user; ``total`` requests in all (or until ``until_s``)."""
        done: dict[int, simpy.Event] = {}
        sent = itertools.count()

        def finished(rid: int, _t: float) -> None:
            ev = done.pop(rid, None)
            if ev is not None:
                ev.succeed()

        self.ledger.on_finish = finished

        def user(u: int) -> Generator[Any, Any, None]:
            k = 0
            while True:
                n = next(sent)
                if (total is not None and n >= total) or (
                    until_s is not None and self.env.now >= until_s
                ):
                    return
                pause = float(streams.think_times(u, k + 1)[k])
                yield self.env.timeout(pause)
                r = streams.requests(u, k + 1)
                if len(r) <= k:
                    return  # a trace ran out for this user
                ev = self.env.event()
                rid = len(self.ledger.arrival)
                done[rid] = ev
                self.arrive(self.env.now, int(r.prompt_tokens[k]), int(r.output_tokens[k]),
                            int(r.prefix_id[k]), int(r.prefix_tokens[k]))  # fmt: skip
                if rid in self.ledger.rejected:
                    done.pop(rid, None)
                else:
                    yield ev
                k += 1

        return [self.env.process(user(u)) for u in range(streams.users)]

    # ---- disaggregation --------------------------------------------------------------------
    def _handover(self, rid: int, kv_tokens: float) -> None:
        self.env.process(self._move(rid, kv_tokens))

    def _move(self, rid: int, kv_tokens: float) -> Generator[Any, Any, None]:
        assert self.decode_router is not None
        src = self.front[self.ledger.replica[rid]]
        dst = self.decode_router.pick()
        nbytes = kv_tokens * src.spec.kv_bytes_per_token
        start = self.env.now
        if self.network is not None:  # shard by shard on the cluster graph (hwsim.serve.kv_route)
            p = self.network.path(self.front.index(src), len(self.front) + self.back.index(dst))
            if p.links:
                yield self.eng.transfer(p.links, nbytes, latency_s=p.latency_s, weights=p.weights)
        else:
            assert src.link is not None and dst.link is not None
            yield self.eng.transfer([src.link, dst.link], nbytes)
        self.ledger.transfers.append((rid, start, self.env.now, nbytes))
        dst.accept(rid, kv_tokens)


def replica_busy(replicas: Sequence[Replica], elapsed_s: float) -> list[dict[str, Any]]:
    """Per replica: the fraction of the run spent in prefill, decode, mixed iterations and
    idle."""
    out = []
    for r in replicas:
        busy = r.busy()
        frac = {k: v / elapsed_s if elapsed_s > 0 else 0.0 for k, v in busy.items()}
        frac["idle"] = max(0.0, 1.0 - float(np.sum(list(frac.values()))))
        out.append({"replica": r.name, "role": r.role, **frac})
    return out
