"""The top fraction of changed weights by |Δ|, exactly, streamed tensor by tensor.

For a group of tensors (all of them, a layer's, or one tensor's, by ``--scope``) and a
fraction f, k = round(f × n_changed) weights are chosen: every weight whose |Δ| is above
the k-th largest, and of those equal to it the first ones in streaming order (tensors in
natural name order, elements in row-major order) until there are k. The k-th largest is
found by radix selection on the bits of |Δ| as float32 (for non-negative floats the bit
pattern orders like the value): one pass counts the high 16 bits, a second the low 16
bits inside the one high bucket that holds the k-th, so memory stays at a few histograms
whatever the model's size.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from engram_localize.checkpoints import OUTSIDE, Checkpoint, classify, pairs

SCOPES = ("global", "layer", "module")
_HI = 1 << 15  # |Δ| >= 0, so the sign bit is 0 and the high half of the bits is below 2**15
_LO = 1 << 16


@dataclass(frozen=True)
class Cut:
    """Which weights of a group are chosen: |Δ| bits above ``tau``, and the first ``ties``
    whose bits equal ``tau``; ``k`` in all (none when k is 0)."""

    k: int
    n_changed: int
    tau: int = 0
    ties: int = 0


def delta_bits(base: torch.Tensor, tuned: torch.Tensor) -> torch.Tensor:
    """|tuned − base| in float32, as int32 bits, flattened (0 where unchanged)."""
    return (tuned.float() - base.float()).abs().reshape(-1).view(torch.int32)


def groups_of(names: list[str], scope: str) -> dict[str, str]:
    """Each tensor's group: one for all (global), its layer's (layer), or its own (module)."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; choose from {', '.join(SCOPES)}")
    if scope == "global":
        return dict.fromkeys(names, "all")
    if scope == "module":
        return {n: n for n in names}
    return {n: str(OUTSIDE if classify(n)[0] is None else classify(n)[0]) for n in names}


def _first_reaching(hist: torch.Tensor, k: int) -> tuple[int, int]:
    """The bucket holding the k-th largest element, and how many lie in buckets above it."""
    from_top = hist.flip(0).cumsum(0)
    i = int(torch.searchsorted(from_top, torch.tensor(k, dtype=from_top.dtype)))
    bucket = len(hist) - 1 - i
    return bucket, int(from_top[i] - hist[bucket])


def cuts(
    base: Checkpoint, tuned: Checkpoint, names: list[str], group: dict[str, str], fractions, progress=None
) -> dict[float, dict[str, Cut]]:
    """For each fraction, each group's Cut: two streaming passes for all fractions together."""
    wrap = progress or (lambda it, **_: it)
    hi = {g: torch.zeros(_HI, dtype=torch.int64) for g in set(group.values())}
    changed = dict.fromkeys(hi, 0)
    for name, b, t in wrap(pairs(base, tuned, names), total=len(names), desc="rank |Δ| (1/2)"):
        bits = delta_bits(b, t)
        hi[group[name]] += torch.bincount(bits >> 16, minlength=_HI)
        changed[group[name]] += int((bits != 0).sum())
    plan: dict[tuple[float, str], tuple[int, int, int]] = {}  # (f, g) -> (k, high bucket, count above it)
    for f in fractions:
        for g in hi:
            k = round(f * changed[g])
            plan[f, g] = (k, *_first_reaching(hi[g], k)) if k else (0, -1, 0)
    needed = {(g, bucket) for (_, g), (k, bucket, _) in plan.items() if k}
    lo = {key: torch.zeros(_LO, dtype=torch.int64) for key in needed}
    by_group: dict[str, list[int]] = {}
    for g, bucket in needed:
        by_group.setdefault(g, []).append(bucket)
    if needed:
        for name, b, t in wrap(pairs(base, tuned, names), total=len(names), desc="rank |Δ| (2/2)"):
            bits = delta_bits(b, t)
            high = bits >> 16
            for bucket in by_group.get(group[name], ()):
                lo[group[name], bucket] += torch.bincount(bits[high == bucket] & 0xFFFF, minlength=_LO)
    result: dict[float, dict[str, Cut]] = {}
    for (f, g), (k, bucket, above) in plan.items():
        if not k:
            result.setdefault(f, {})[g] = Cut(0, changed[g])
            continue
        low, above_low = _first_reaching(lo[g, bucket], k - above)
        result.setdefault(f, {})[g] = Cut(k, changed[g], (bucket << 16) | low, k - above - above_low)
    return result


def masks(
    base: Checkpoint, tuned: Checkpoint, names: list[str], group: dict[str, str], cut: dict[str, Cut]
) -> Iterator[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """``(name, base, tuned, chosen)`` for every tensor, ``chosen`` a bool tensor of its shape."""
    taken = dict.fromkeys(cut, 0)
    for name, b, t in pairs(base, tuned, names):
        c, g = cut[group[name]], group[name]
        if not c.k:
            yield name, b, t, torch.zeros(b.shape, dtype=torch.bool)
            continue
        bits = delta_bits(b, t)
        chosen = bits > c.tau
        if taken[g] < c.ties:
            equal = (bits == c.tau).nonzero().reshape(-1)[: c.ties - taken[g]]
            chosen[equal] = True
            taken[g] += len(equal)
        yield name, b, t, chosen.view(b.shape)
