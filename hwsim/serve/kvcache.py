"""The KV cache of one engine as fixed-size blocks (PagedAttention, Kwon et al., SOSP 2023) with
prefix caching (vLLM's automatic prefix caching, SGLang's RadixAttention, reduced to one cached
prefix per group).

* A sequence holds ``⌈private tokens / block⌉`` blocks of its own; tokens of a shared prefix it
  found cached live in the prefix's blocks and are counted once.
* A prefix group (``prefix_id``: a system prompt, or a conversation) keeps its cached tokens in
  whole blocks. Blocks become cached when a sequence of the group finishes its prefill (its
  prefix) or finishes (its whole conversation so far); a later request of the group skips the
  prefill of the cached part.
* Cached prefixes that no running sequence uses are evicted least recently used first when
  blocks run out (as vLLM frees evictable blocks before it preempts anything).

All counts are blocks (integers) or tokens.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from hwsim.spec.errors import SpecError


@dataclass
class _Prefix:
    blocks: int
    refs: int = 0


@dataclass
class BlockPool:
    """``total`` blocks of ``block_tokens`` tokens each (see the module docstring)."""

    total: int
    block_tokens: int
    private: int = 0  #: blocks held by sequences
    prefixes: OrderedDict[int, _Prefix] = field(default_factory=OrderedDict)
    evictions: int = 0

    def __post_init__(self) -> None:
        if self.total < 1 or self.block_tokens < 1:
            raise SpecError(
                f"a KV pool needs at least one block of one token, got {self.total} blocks of "
                f"{self.block_tokens} tokens"
            )

    # ---- counts ------------------------------------------------------------------------------
    @property
    def cached(self) -> int:
        """Blocks held by cached prefixes."""
        return sum(p.blocks for p in self.prefixes.values())

    @property
    def used(self) -> int:
        return self.private + self.cached

    @property
    def free(self) -> int:
        return self.total - self.used

    def blocks_for(self, tokens: float) -> int:
        """Blocks that hold ``tokens`` tokens."""
        return -int(-tokens // self.block_tokens) if tokens > 0 else 0

    def evictable(self) -> int:
        """Blocks of cached prefixes no sequence uses."""
        return sum(p.blocks for p in self.prefixes.values() if p.refs == 0)

    # ---- private blocks ----------------------------------------------------------------------
    def take(self, blocks: int) -> bool:
        """Allocate ``blocks`` private blocks, evicting unused prefixes if needed; False (and
        nothing taken) when even eviction does not make room."""
        if blocks <= 0:
            return True
        if blocks > self.free + self.evictable():
            return False
        while blocks > self.free:
            self._evict_one()
        self.private += blocks
        return True

    def give(self, blocks: int) -> None:
        """Return ``blocks`` private blocks."""
        self.private -= blocks
        assert self.private >= 0, "returned more KV blocks than were taken"

    def _evict_one(self) -> None:
        for key, p in self.prefixes.items():  # oldest use first
            if p.refs == 0:
                del self.prefixes[key]
                self.evictions += 1
                return
        raise AssertionError("no evictable prefix although the count said so")

    # ---- prefixes ----------------------------------------------------------------------------
    def lookup(self, prefix_id: int, prefix_tokens: int) -> int:
        """Tokens of the first ``prefix_tokens`` of group ``prefix_id`` found cached (whole
        blocks). The sequence holds the group from now on (its cached blocks cannot be
        evicted) until it calls :meth:`release`; ``prefix_id < 0`` is no group."""
        if prefix_id < 0:
            return 0
        p = self.prefixes.get(prefix_id)
        if p is None:
            p = self.prefixes[prefix_id] = _Prefix(0)
        self.prefixes.move_to_end(prefix_id)
        p.refs += 1
        return min(prefix_tokens // self.block_tokens, p.blocks) * self.block_tokens

    def release(self, prefix_id: int) -> None:
        """A sequence that looked the group up no longer holds it."""
        p = self.prefixes.get(prefix_id)
        if p is not None and p.refs > 0:
            p.refs -= 1

    def publish(self, prefix_id: int, tokens: float, from_private: int) -> int:
        """Cache the first ``tokens`` tokens of group ``prefix_id`` (whole blocks), moving up
        to ``from_private`` of the publishing sequence's private blocks into the cache instead
        of allocating new ones; returns how many private blocks moved (the sequence gives back
        that many fewer)."""
        if prefix_id < 0:
            return 0
        want = int(tokens // self.block_tokens)
        p = self.prefixes.get(prefix_id)
        have = p.blocks if p is not None else 0
        grow = want - have
        if grow <= 0:
            return 0
        moved = min(grow, from_private)
        extra = grow - moved
        if p is None:
            p = self.prefixes[prefix_id] = _Prefix(0)
        p.refs += 1  # not evictable while it grows
        ok = extra <= 0 or self.take(extra)
        p.refs -= 1
        if not ok:
            return 0  # no room to cache the rest: the prefix stays as it was
        self.private -= moved + max(extra, 0)
        p.blocks = want
        self.prefixes.move_to_end(prefix_id)
        return moved
