"""Tile detail of :class:`hwsim.sim.gpu.GpuRun`: every inner-loop step as events.

Per CTA slot three simpy processes: a *producer* that takes CTAs and issues their loads (the
first tile directly, then one K/V tile per step into a ring of ``stages`` buffers), the SM's
*copy engine* that completes those loads in issue order (each copy's latency overlapping the
transfer before it), and a *consumer* (the MMA warps) that waits for each tile, computes the
step, frees its buffer, drains and stores the output. Warp-specialised kernels hand the Q buffer
to the producer ``stages - 1`` steps before the end, so the next CTA's first tile loads during
the last steps and the drain. The CTA detail in ``gpu.py`` follows the same rules analytically.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import simpy

if TYPE_CHECKING:
    from hwsim.sim.engine import Engine, TraceEvent
    from hwsim.sim.gpu import CtaLaunch, GpuFabric, LaunchCounters, _Cta, _L2Reuse

Proc = Generator[Any, Any, None]


class TileDetail:
    """Mixin of :class:`hwsim.sim.gpu.GpuRun` holding the tile-granularity processes."""

    eng: Engine
    fabric: GpuFabric
    reuse: _L2Reuse
    trace_sms: frozenset[int]
    spans: list[TraceEvent]
    counters: LaunchCounters

    def _span(self, sm: int, track: str, name: str, t0: float, **args: float) -> None:
        raise NotImplementedError

    def _name(self, ln: CtaLaunch, i: int) -> str:
        raise NotImplementedError

    def _slot_tile(self, ln: CtaLaunch, c: _Cta, sm: int, queue: deque[int]) -> Proc:
        """One CTA slot at tile granularity: a producer issuing loads, the SM's copy engine
        moving them in order, and a consumer computing step by step."""
        env = self.eng.env
        cta_q: simpy.Store = simpy.Store(env)
        full: simpy.Store = simpy.Store(env)
        copies: simpy.Store = simpy.Store(env)
        free = simpy.Container(env, capacity=max(ln.stages, 1), init=max(ln.stages, 1))
        q_free = simpy.Container(env, capacity=1, init=1)
        prod = env.process(self._producer(c, queue, cta_q, full, free, q_free, copies))
        cons = env.process(self._consumer(ln, c, sm, cta_q, full, free, q_free, copies))
        dma = env.process(self._copy_engine(sm, copies))
        yield simpy.AllOf(env, [prod, cons])
        copies.put(None)
        yield dma

    def _copy(
        self, copies: simpy.Store, nbytes: float, l2_bytes: float, hbm_bytes: float, name: str
    ) -> simpy.Event:
        """Queue a copy on the SM's copy engine; the event fires when its bytes have arrived."""
        done = self.eng.env.event()
        copies.put((nbytes, l2_bytes, hbm_bytes, self.eng.env.now, done, name))
        return done

    def _copy_engine(self, sm: int, copies: simpy.Store) -> Proc:
        """The SM's copy engine (TMA): copies complete in issue order; the latency of a copy
        overlaps the transfer of the ones before it, so a busy engine never idles."""
        eng = self.eng
        while True:
            req = yield copies.get()
            if req is None:
                return
            nbytes, l2_bytes, hbm_bytes, t_issue, done, name = req
            fab = self.fabric
            if nbytes > 0:
                idx, w, lat = fab.route(hbm_bytes / nbytes, l2_bytes / nbytes)
            else:
                idx, w, lat = fab.route(0.0)
            wait = t_issue + lat - eng.env.now
            if wait > 0:
                yield eng.delay(wait)
            t0 = eng.env.now
            if nbytes > 0:
                yield eng.send(idx, w, nbytes, 0.0, fab.sm_port_Bps, label=name)[1]
            self._span(sm, " · copy", name, t0, bytes=nbytes)
            done.succeed()

    def _producer(
        self,
        c: _Cta,
        queue: deque[int],
        cta_q: simpy.Store,
        full: simpy.Store,
        free: simpy.Container,
        q_free: simpy.Container,
        copies: simpy.Store,
    ) -> Proc:
        fab = self.fabric
        while True:
            yield q_free.get(1)
            if not queue:
                yield cta_q.put(None)
                return
            i = queue.popleft()
            g = c.group[i]
            hit = self.reuse.acquire(g, c.gbytes[g] if g >= 0 else 0.0)
            self.counters.hits += hit
            if not hit:
                self.counters.hbm_stream += c.sbytes[i] * c.steps[i]
            # the first tile (Q) is fetched alongside the K/V stream, not queued behind it
            q_ev = self.eng.transfer(
                fab.miss_path, c.first[i], max_rate_Bps=fab.sm_port_Bps, label="load first"
            )
            yield cta_q.put((i, hit, q_ev))
            name = "load" + (" (L2 hit)" if hit else "")
            mc = self.counters.multicast
            nbytes = c.sbytes[i] + c.ubytes[i]
            l2 = c.ubytes[i] + (c.sbytes[i] / mc if hit else c.sbytes[i])
            hbm = c.ubytes[i] + (0.0 if hit else c.sbytes[i])
            for _ in range(c.steps[i]):
                yield free.get(1)
                yield full.put(self._copy(copies, nbytes, l2, hbm, name))

    def _consumer(
        self,
        ln: CtaLaunch,
        c: _Cta,
        sm: int,
        cta_q: simpy.Store,
        full: simpy.Store,
        free: simpy.Container,
        q_free: simpy.Container,
        copies: simpy.Store,
    ) -> Proc:
        eng, fab = self.eng, self.fabric
        env = eng.env
        stores = []
        while True:
            item = yield cta_q.get()
            if item is None:
                break
            i, _hit, q_ev = item
            t0 = env.now
            yield q_ev
            steps = c.steps[i]
            for j in range(steps):
                ev = yield full.get()
                yield ev
                if j == 0:
                    t1 = env.now
                    yield eng.delay(c.fill[i])
                    self._span(sm, " · pipe", "fill", t1)
                t1 = env.now
                yield eng.delay(c.step[i])
                self._span(sm, " · pipe", f"step {j}", t1)
                yield free.put(1)
            if steps == 0:
                yield eng.delay(c.fill[i])
            if ln.prefetch:
                yield q_free.put(1)
            t1 = env.now
            yield eng.delay(c.drain[i])
            self._span(sm, " · pipe", "drain", t1)
            # stores leave through their own queue: they never wait behind the next loads
            st = eng.transfer(
                fab.miss_path, c.store[i], max_rate_Bps=fab.sm_port_Bps, label="store"
            )
            stores.append(st)
            yield eng.delay(c.over[i])
            if not ln.prefetch:
                yield st
                yield q_free.put(1)
            self.reuse.release(c.group[i])
            self._span(sm, "", self._name(ln, i), t0, steps=steps)
        yield simpy.AllOf(env, stores)
