"""Sampling internals of :mod:`hwsim.serve.traffic` (read its docstring): arrival times, token
lengths with shared prefixes, and fitting requests into the model's context. Everything here
works on plain numpy arrays and draws from ``numpy`` streams keyed by purpose, so one purpose
never shifts another's random numbers (common random numbers across rates and request counts).
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from hwsim.serve.traffic_spec import Gamma, Poisson, SystemPrompt, TrafficSpec
from hwsim.spec.errors import SpecError, SpecWarning

#: random-stream keys: one independent stream per purpose, so changing one never shifts another
ARRIVAL, PROMPT, OUTPUT, KIND, GROUP, GROUP_LEN, TURNS, THINK, USER = range(9)


def stream(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def arrivals(
    arrival: Poisson | Gamma, n: int | None, duration_s: float | None, seed: int, limit: int
) -> np.ndarray:
    """Arrival times: a unit-rate stream of mean-1 gaps scaled by 1/qps (common random numbers)."""
    rng = stream(seed, ARRIVAL)
    cv = arrival.cv if isinstance(arrival, Gamma) else 1.0
    shape = 1.0 / (cv * cv)

    def gaps(k: int) -> np.ndarray:
        if isinstance(arrival, Gamma):
            return rng.standard_gamma(shape, k) / shape
        return rng.standard_exponential(k)

    if duration_s is None:
        assert n is not None
        return np.cumsum(gaps(n)) / arrival.qps
    horizon = duration_s * arrival.qps  # expected count
    if horizon > limit:
        raise SpecError(
            f"{duration_s:g} s at {arrival.qps:g} requests/s is about {horizon:,.0f} requests, "
            f"more than max_requests = {limit:,}; shorten it or raise --max-requests",
            key="--duration",
        )
    want = n if n is not None else limit
    chunk = int(horizon + 6 * cv * math.sqrt(horizon) + 64)
    parts: list[np.ndarray] = []
    total, drawn = 0.0, 0
    while total <= horizon and drawn < want:
        p = total + np.cumsum(gaps(chunk))
        parts.append(p)
        total, drawn = float(p[-1]), drawn + len(p)
    u = np.concatenate(parts)
    u = u[u < horizon][:want]
    if n is None and len(u) >= limit:
        raise SpecError(
            f"more than max_requests = {limit:,} requests arrive; raise --max-requests",
            key="--duration",
        )
    return u / arrival.qps


def lengths(
    spec: TrafficSpec, count: int, seed: int, max_context: int | None, users: tuple[int, int] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(prompt, output, prefix_id, prefix_tokens) of ``count`` requests in order. ``users =
    (u, U)``: the stream of user u of U (its own seeds; one conversation open at a time)."""
    key = (USER, users[0]) if users else ()
    prompt = spec.prompt_tokens.sample(stream(seed, *key, PROMPT).random(count))
    output = spec.output_tokens.sample(stream(seed, *key, OUTPUT).random(count))
    pid = np.full(count, -1, dtype=np.int64)
    ptok = np.zeros(count, dtype=np.int64)
    if not spec.prefixes:
        return prompt, output, pid, ptok
    u_kind = stream(seed, *key, KIND).random(count)
    u_group = stream(seed, *key, GROUP).random(count)
    lo, next_id = 0.0, 0
    for j, pre in enumerate(spec.prefixes):
        mine = (u_kind >= lo) & (u_kind < lo + pre.fraction)
        lo += pre.fraction
        if isinstance(pre, SystemPrompt):
            # group lengths are global (shared by every user): seeded without the user key
            glen = pre.tokens.sample(stream(seed, GROUP_LEN, j).random(pre.groups))
            g = np.minimum((u_group * pre.groups).astype(np.int64), pre.groups - 1)
            pid[mine] = next_id + g[mine]
            ptok[mine] = glen[g[mine]]
            prompt[mine] += glen[g[mine]]
            next_id += pre.groups
        else:
            active = 1 if users else pre.active
            turns = pre.turns.sample(stream(seed, *key, TURNS, j).random(max(1, int(mine.sum()))))
            local = chain(
                np.flatnonzero(mine), u_group, active, turns, prompt, output, ptok, max_context
            )
            pid[mine] = next_id + (local if users is None else users[0] + users[1] * local)
    return prompt, output, pid, ptok


def chain(
    idx: np.ndarray,
    u_group: np.ndarray,
    active: int,
    turns: np.ndarray,
    prompt: np.ndarray,
    output: np.ndarray,
    ptok: np.ndarray,
    max_context: int | None,
) -> np.ndarray:
    """Thread the requests ``idx`` (in arrival order) into conversations held in ``active`` slots;
    update prompt/prefix in place with each turn's history; return each request's conversation
    number. A conversation ends after its turns, or when the next turn would not fit."""
    slot_conv = np.full(active, -1, dtype=np.int64)
    slot_left = np.zeros(active, dtype=np.int64)
    slot_hist = np.zeros(active, dtype=np.int64)
    conv = np.empty(len(idx), dtype=np.int64)
    started = 0
    cap = max_context if max_context is not None else None
    slots = np.minimum((u_group[idx] * active).astype(np.int64), active - 1)
    for k, (i, s) in enumerate(zip(idx.tolist(), slots.tolist(), strict=True)):
        hist = int(slot_hist[s])
        full = hist + int(prompt[i]) + int(output[i])
        if slot_left[s] <= 0 or (cap is not None and full > cap):
            slot_conv[s], slot_left[s], hist = started, turns[started], 0
            started += 1
        conv[k] = slot_conv[s]
        ptok[i] = hist
        prompt[i] += hist
        slot_hist[s] = prompt[i] + output[i]
        slot_left[s] -= 1
    return conv


def check_context(max_context: int | None, overflow: str) -> None:
    if max_context is not None and (
        isinstance(max_context, bool)
        or not isinstance(max_context, int | np.integer)
        or max_context < 2
    ):
        raise SpecError(
            f"must be a whole number of tokens >= 2, got {max_context!r}", key="max_context"
        )
    if overflow not in ("clip", "refuse"):
        raise SpecError(f"must be 'clip' or 'refuse', got {overflow!r}", key="--context-overflow")


def fit_context(
    prompt: np.ndarray,
    output: np.ndarray,
    ptok: np.ndarray,
    max_context: int | None,
    overflow: str,
    where: str,
    lines: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Make every request fit ``prompt + output <= max_context``: clip (warning) or refuse."""
    if max_context is None:
        return prompt, output, ptok
    total = prompt + output
    over = total > max_context
    k = int(over.sum())
    if not k:
        return prompt, output, ptok
    if overflow == "refuse":
        if lines is not None:
            i = int(np.flatnonzero(over)[0])
            raise SpecError(
                f"prompt_tokens + output_tokens = {int(total[i])} exceeds the model's context of "
                f"{max_context} tokens ({k} such rows); pass --context-overflow clip to clip them",
                file=where,
                line=int(lines[i]),
            )
        raise SpecError(
            f"{k} of {len(total)} sampled requests need more than the model's context of "
            f"{max_context} tokens (longest {int(total.max())}); pass --context-overflow clip to "
            "clip them",
            file=where,
        )
    prompt = np.minimum(prompt, max_context - 1)
    output = np.minimum(output, max_context - prompt)
    ptok = np.minimum(ptok, prompt)
    warnings.warn(
        SpecWarning(
            f"{where}: {k} of {len(total)} requests exceed the model's context of {max_context} "
            "tokens; clipped to fit (output first); pass --context-overflow refuse to refuse them"
        ),
        stacklevel=3,
    )
    return prompt, output, ptok
