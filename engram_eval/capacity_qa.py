"""Bits extractable through QA (``engram-capacity --measure qa``; the default measure, Physics
of LM 3.3's own bound, is :mod:`engram_eval.capacity_bound`): how many bits of a dataset's facts
a model gives back when asked, and per parameter.

For each person and attribute: the bits needed to pick the value from its pool (log2 of the
pool's size) minus the model's cross-entropy of the value given the person (in bits); summed
over the people, floored at zero per attribute, summed over attributes (the paper's
bit-complexity lower bound, which uses each attribute's loss over all people). A floor per
person would count noise as knowledge: an untrained tiny model's per-person values scatter
around zero, and keeping only the positive ones gave it 7% of the maximum.

The cross-entropy: the model's log-likelihood of the value's tokens after the QA prompt
(``Question: ...\\nAnswer:``, scored as lm-eval scores an option), normalized over every
value of the field's pool (a softmax over the pool), so that it is a proper distribution
over the possible answers: a model cannot score bits by giving every value a high raw
likelihood. The pools are the values the dataset's people take (``people.jsonl``). A birth
date is normalized as a chain, each link small enough to enumerate: month over the months,
day given the month, year given both (enumerating whole dates would mean up to 67,200
options per person). Company city is fixed by the employer (one headquarters each), so its
bits are reported but not added to the total. Names: the reverse question (name from birth
date and city) as a chain of first, middle and last name, reported beside the total.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch

from engram_data.contract import FIELDS, PEOPLE, REVERSE, qa_prompt, read_jsonl, read_qa_file
from engram_eval.params import parameter_counts
from engram_eval.recall import Question, encode_pair, score_batch

COUNTED = ("birth_date", "birth_city", "university", "major", "employer")  # company_city follows the employer
NAME = "name"
_DATE = re.compile(r"^(\w+) (\d+), (\d+)$")


def bits_from_scores(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per row: log2(options) − cross-entropy of the labelled option (bits) under a softmax
    over the row's log-likelihoods, not floored (a chain adds its links, then floors)."""
    logp = torch.log_softmax(scores.double(), dim=-1).gather(-1, labels.view(-1, 1)).squeeze(-1)
    return math.log2(scores.shape[-1]) + logp / math.log(2)


def _links(field: str, value: str, person: dict) -> list[tuple[str, str]]:
    """(text before, the link's own text) for each link of a value's chain."""
    if field == "birth_date" and _DATE.match(value):
        month, day, year = _DATE.match(value).groups()
        return [("", f" {month}"), (f" {month}", f" {day},"), (f" {month} {day},", f" {year}")]
    if field == NAME:
        first, middle, last = person["first_name"], person["middle_name"], person["last_name"]
        return [("", f" {first}"), (f" {first}", f" {middle}"), (f" {first} {middle}", f" {last}")]
    return [("", f" {value}")]


class CapacityEvaluator:
    """Bits stored per field for the people of a split, as Physics of LM 3.3 counts them."""

    def __init__(
        self,
        data_dir: str | Path,
        tokenizer,
        split: str = "train",
        limit: int | None = None,
        batch_size: int = 4,
        names: bool = True,
    ):
        people = read_jsonl(Path(data_dir) / PEOPLE)
        chosen = [p for p in people if split == "all" or p["split"] == split][:limit]
        self.people = len(chosen)
        by_id = {p["id"]: p for p in chosen}
        fields = [*FIELDS, *([NAME] if names and all("first_name" in p for p in people) else [])]
        # Each link's pool: the values the population takes at that point of the chain.
        pools: dict[tuple[str, int], list[str]] = {}
        for field in fields:
            for p in people:
                for i, (_, text) in enumerate(_links(field, p.get(field, ""), p)):
                    pools.setdefault((field, i), set()).add(text)
        self.pools = {k: sorted(v) for k, v in pools.items()}
        self.batch_size = batch_size
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.queries: dict[tuple[str, int], list[tuple[int, Question]]] = {}
        for field in fields:
            rows = read_qa_file(data_dir, REVERSE if field == NAME else field)
            for row in rows:
                person = by_id.get(row["person_id"])
                if person is None:
                    continue
                context = qa_prompt(row["question"])
                for i, (before, text) in enumerate(_links(field, person.get(field, ""), person)):
                    pool = self.pools[field, i]
                    pairs = [encode_pair(tokenizer, context + before, option) for option in pool]
                    q = Question(
                        field,
                        field,
                        pairs[0][0],
                        tuple(p[1] for p in pairs),
                        tuple(len(o) for o in pool),
                        pool.index(text),
                    )
                    self.queries.setdefault((field, i), []).append((person["id"], q))

    @torch.no_grad()
    def evaluate(self, model, device=None) -> dict:
        was_training = model.training
        model.eval()
        bits: dict[str, dict[int, float]] = {}
        try:
            for (field, _), items in self.queries.items():
                for b in range(0, len(items), self.batch_size):
                    batch = items[b : b + self.batch_size]
                    scores = score_batch(model, [q for _, q in batch], self.pad_id, device).cpu()
                    got = bits_from_scores(scores, torch.tensor([q.label for _, q in batch]))
                    per_person = bits.setdefault(field, {})
                    for (pid, _), value in zip(batch, got.tolist()):
                        per_person[pid] = per_person.get(pid, 0.0) + value  # a chain's links add up
        finally:
            model.train(was_training)
        return self.summarize(bits, model)

    def max_bits(self, field: str) -> float:
        return sum(math.log2(len(pool)) for (f, _), pool in self.pools.items() if f == field)

    def summarize(self, bits: dict[str, dict[int, float]], model) -> dict:
        fields = {}
        for field, per_person in bits.items():
            stored = max(0.0, sum(per_person.values()))  # floored per attribute, over all its people
            most = self.max_bits(field) * len(per_person)
            links = [len(self.pools[field, i]) for i in range(sum(1 for f, _ in self.pools if f == field))]
            fields[field] = {
                "people": len(per_person),
                "pool": links,
                "bits": stored,
                "max_bits": most,
                "share": stored / most if most else 0.0,
                "method": "chain" if len(links) > 1 else "enumerated",
                "in_total": field in COUNTED,
            }
        total = sum(f["bits"] for k, f in fields.items() if k in COUNTED)
        most = sum(f["max_bits"] for k, f in fields.items() if k in COUNTED)
        params, non_embedding = parameter_counts(model)
        return {
            "people": self.people,
            "fields": fields,
            "bits": total,
            "max_bits": most,
            "share": total / most if most else 0.0,
            "params": params,
            "non_embedding_params": non_embedding,
            "bits_per_param": total / params,
            "bits_per_non_embedding_param": total / max(non_embedding, 1),
        }


def metric_names(result: dict, prefix: str = "eval") -> dict[str, float]:
    """What the plugin logs: total bits, bits per parameter, and bits per field."""
    logs = {
        f"{prefix}_engram_capacity_bits": result["bits"],
        f"{prefix}_engram_capacity_bits_per_param": result["bits_per_param"],
    }
    logs.update({f"{prefix}_engram_capacity_bits_{f}": v["bits"] for f, v in result["fields"].items()})
    return logs


def markdown(result: dict, model: str, split: str) -> str:
    lines = [
        f"# Knowledge capacity of `{model}`",
        "",
        f"{result['people']} people ({split}); bits per attribute = max(0, Σ over people (log2 pool − cross-entropy "
        "in bits)), the value's probability normalized over its pool (a chain of enumerable links for dates and names).",
        "",
        "| field | method | pool | bits | max bits | share | in total |",
        "| --- | --- | --- | ---: | ---: | ---: | --- |",
    ]
    for field, f in result["fields"].items():
        lines.append(
            f"| {field} | {f['method']} | {' × '.join(map(str, f['pool']))} | {f['bits']:.1f} | "
            f"{f['max_bits']:.1f} | {f['share']:.3f} | {'yes' if f['in_total'] else 'no'} |"
        )
    lines += [
        "",
        f"**{result['bits']:.1f} of {result['max_bits']:.1f} bits ({result['share']:.1%})**; "
        f"{result['params']:,} parameters: {result['bits_per_param']:.5f} bits per parameter, "
        f"{result['bits_per_non_embedding_param']:.5f} per non-embedding parameter "
        "(Physics of LM 3.3: about 2 at saturation).",
        "",
    ]
    return "\n".join(lines)
