"""Four-option questions whose options a guesser that knows only frequencies cannot tell apart.

The answer of a question is one person's value; its three distractors are values of the
same field held by *other people of the same split* (the original LLM Engram protocol:
"randomly sampled from other records in the dataset"), so every option occurs in the
training text. Drawing them naively -- three other people at random -- is not enough:
a value held by many people is the answer of many questions, but it can appear only once
in each option set, so it ends up an answer more often than a distractor, and a guesser
that picks the most frequent option beats chance (0.27 on ``company_city``, where 9% of
the people work in New York).

The fix is to make the answer exchangeable with its distractors. The option *sets* follow
a conditional Poisson design (sampling without replacement with P(set) proportional to
the product of per-value weights), with the weights fitted so that each value is in a set
exactly ``4 * n_value / n_people`` times as often as a set is drawn -- four times its share
of the answers. Given the answer, the three distractors are then a conditional Poisson
draw of three values from the rest. Every value is then, on average, an option exactly
as often as it is an answer, so whatever a guesser computes from an option's value alone
(its frequency in the training text, its length, its token count), it picks the answer a
quarter of the time.

Exactness needs every value to be held by under a quarter of the group; a value above
that is capped (it cannot be in more than every set) and the design is then only as fair
as it can be. ``OptionSampler.exact`` says which case holds.
"""

from __future__ import annotations

import bisect
import random
from collections import Counter
from collections.abc import Sequence

import numpy as np

from engram_data.contract import NUM_CHOICES


def protocol(candidates: str) -> str:
    """How the options were drawn, for a manifest; ``candidates`` says where distractors come from."""
    return (
        f"distractors: three {candidates}; option sets drawn by conditional Poisson sampling with weights "
        "fitted so that each value is an option as often as it is an answer (a guesser that sees only "
        "option values, e.g. their frequency, scores 1/4)"
    )


PROTOCOL = protocol("values of the same field held by other people of the same split")
_CAP = 0.95  # the largest inclusion probability a value may get when its share is too large
_TOLERANCE = 1e-12
_MAX_ITERATIONS = 2000


def _prefix_esym(w: np.ndarray, k: int) -> np.ndarray:
    """``E[j, i]`` = elementary symmetric polynomial of degree j of ``w[:i]`` (j < k+1).

    Every term is a sum of positive products: no cancellation, unlike Newton's identities.
    """
    e = np.zeros((k + 1, len(w) + 1))
    e[0] = 1.0
    for j in range(1, k + 1):
        e[j, 1:] = np.cumsum(w * e[j - 1, :-1])
    return e


def inclusion_probabilities(w: np.ndarray, k: int = NUM_CHOICES) -> np.ndarray:
    """P(value i is in a set) under conditional Poisson sampling of ``k`` of ``len(w)``
    values: ``w_i * e_{k-1}(w without i) / e_k(w)``."""
    pre = _prefix_esym(w, k - 1)  # over w[:i]
    suf = _prefix_esym(w[::-1], k - 1)[:, ::-1]  # suf[:, i] over w[i:]
    # e_{k-1} of all values but i: products of a prefix part and a suffix part.
    leave_out = sum(pre[a, :-1] * suf[k - 1 - a, 1:] for a in range(k))
    total = (w * leave_out).sum() / k  # e_k(w) = sum_i w_i e_{k-1}(w without i) / k
    return w * leave_out / total


def fit_weights(counts: Sequence[int], k: int = NUM_CHOICES) -> tuple[np.ndarray, bool]:
    """Weights whose conditional Poisson design includes value i with probability
    ``k * counts[i] / sum(counts)``; and whether that target was reachable exactly."""
    n = np.asarray(counts, dtype=np.float64)
    if len(n) == k:  # every set holds every value: only equal counts make it fair
        return np.full(k, 1.0 / k), bool((n == n[0]).all())
    target = k * n / n.sum()
    exact = bool(target.max() < 1.0)
    if not exact:
        # Cap the over-represented values and share what they lose among the rest.
        for _ in range(len(n)):
            over = target > _CAP
            if not over.any():
                break
            target[over] = _CAP
            rest = ~over
            target[rest] *= (k - target[over].sum()) / target[rest].sum()
    w = target.copy()
    for _ in range(_MAX_ITERATIONS):
        pi = inclusion_probabilities(w, k)
        if np.abs(pi - target).max() < _TOLERANCE:
            break
        w *= target / pi
        w /= w.sum()
    return w, exact


class OptionSampler:
    """Distractors for the answers of one group (one field of one split)."""

    def __init__(self, answers: Sequence[str], spare: Sequence[str] = (), k: int = NUM_CHOICES):
        """``answers``: the group's answers, one per question (repeats are its frequencies).
        ``spare``: values of nobody in the group, used (as if held once) only when the
        group has fewer than ``k`` distinct values."""
        counts = Counter(answers)
        for value in spare:
            if len(counts) >= k:
                break
            counts.setdefault(value, 1)
        if len(counts) < k:
            raise ValueError(f"{len(counts)} distinct values cannot make {k} distinct options")
        self.values = sorted(counts)
        self.k = k
        weights, self.exact = fit_weights([counts[v] for v in self.values], k)
        self._cumulative = np.cumsum(weights).tolist()
        self._total = self._cumulative[-1]

    def distractors(self, answer: str, rng: random.Random) -> list[str]:
        """``k - 1`` distinct values other than ``answer``: independent draws by weight,
        redrawn together until distinct, which is the conditional Poisson draw."""
        values, cumulative, total = self.values, self._cumulative, self._total
        draw = rng.random
        while True:
            chosen = [values[bisect.bisect_right(cumulative, draw() * total)] for _ in range(self.k - 1)]
            if answer not in chosen and len(set(chosen)) == len(chosen):
                return chosen


def make_choices(answer: str, sampler: OptionSampler, rng: random.Random) -> tuple[list[str], int]:
    """Four distinct options: the answer at a seeded position among three distractors."""
    options = sampler.distractors(answer, rng)
    label = int(rng.random() * sampler.k)
    options.insert(label, answer)
    return options, label
