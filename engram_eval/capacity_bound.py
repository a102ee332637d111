"""Knowledge capacity as Physics of Language Models 3.3 bounds it (Allen-Zhu and Li, 2024,
arXiv:2404.05405): the bits of a bioS population that a model provably stores, from its loss
on the name and attribute tokens inside the biographies.

For N people, names drawn from N0 possible ones and attribute combinations from S0:

    bits >= N * log2((N0 - N) / e^p1) + N * log2(S0 / e^p2)

p1: the model's cross-entropy (nats) on a person's name tokens where the biography opens,
averaged over the people; p2: the summed cross-entropy on the attribute values' tokens in
the biography (the company city and, with gender drawn on its own, the first pronoun
included), averaged over the people. Each term is floored at zero (a model that knows less
than a guess stores nothing). N0 and S0 are the generator's pools: first x middle x last
names (per gender with ``--gender by-name``); S0 = birth dates (12 x 28 x 200) x cities x
universities x majors x employers (x 2 genders when gender is independent of the name; the
company city follows the employer). The paper's "2 bits per parameter" is the peak over its
models (counted with the vocabulary rows the data uses), when the data has more bits than the
model has parameters and each fact was seen about 1,000 times.

:mod:`engram_eval.capacity_qa` measures another quantity: bits extractable through QA prompts.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from engram_data.contract import FIELDS, MANIFEST, PEOPLE, read_jsonl
from engram_eval.params import parameter_counts, used_vocabulary_params

BIRTH_DATES = 12 * 28 * 200  # the generator's months x days x years
ATTRIBUTE_POOLS = ("birth_city", "university", "major", "employer")


def pool_sizes(data_dir: Path, people: list[dict]) -> dict:
    """N0 and S0 from the dataset's manifest (the generator's pools; an import's observed values)."""
    import json

    manifest = json.loads((Path(data_dir) / MANIFEST).read_text("utf-8"))
    sizes, gender = manifest.get("pool_sizes", {}), manifest.get("args", {}).get("gender")
    independent = gender == "independent" or bool(manifest.get("args", {}).get("fields_dir"))
    first, middle, last = (
        sizes.get(k) or len({p[k[:-1]] for p in people}) for k in ("first_names", "middle_names", "last_names")
    )
    # By name: each gender draws first and middle names from its own half of the lists.
    names = first * middle * last if independent else 2 * (first // 2) * (middle // 2) * last
    combos = BIRTH_DATES * math.prod(sizes.get(f) or len({p[f] for p in people}) for f in ATTRIBUTE_POOLS)
    return {"N0": names, "S0": combos * (2 if independent else 1), "gender_is_a_fact": independent}


def spans(person: dict, text: str, gender_is_a_fact: bool) -> tuple[tuple[int, int], list[tuple[int, int]]]:
    """Character spans in ``text`` of the opening name and of each attribute value."""
    assert text.startswith(person["name"]), "a bioS biography opens with the full name"
    values = []
    for field in FIELDS:
        at = text.index(person[field], len(person["name"]))
        values.append((at, at + len(person[field])))
    if gender_is_a_fact:  # the first pronoun after the first sentence carries the gender
        after = text.index(". ", len(person["name"])) + 2
        values.append((after, text.index(" ", after)))
    return (0, len(person["name"])), values


class BoundEvaluator:
    """Physics of LM 3.3's bit-complexity lower bound of a model on a generated population,
    from each person's ``variant`` biography (its first, for the five-biography variants)."""

    def __init__(
        self,
        data_dir,
        tokenizer,
        variant: str = "bioS",
        limit: int | None = None,
        batch_size: int = 8,
        split: str = "all",
    ):
        people = read_jsonl(Path(data_dir) / PEOPLE)
        self.pools = pool_sizes(Path(data_dir), people)
        self.people = [p for p in people if split == "all" or p["split"] == split][:limit]
        self.tokenizer, self.batch_size = tokenizer, batch_size
        self.items = []
        # The vocabulary the data uses: every token of every person's biographies of the variant.
        self.used_tokens = len(
            {
                t
                for p in people
                for text in ([p[variant]] if isinstance(p[variant], str) else p[variant])
                for t in tokenizer(text, add_special_tokens=True)["input_ids"]
            }
        )
        for p in self.people:
            text = p[variant] if isinstance(p[variant], str) else p[variant][0]
            name, values = spans(p, text, self.pools["gender_is_a_fact"])
            enc = tokenizer(text, return_offsets_mapping=True, add_special_tokens=True)
            ids, offsets = enc["input_ids"], enc["offset_mapping"]

            def covering(span, offsets=offsets):  # tokens overlapping the span (special tokens have (0, 0))
                return [i for i, (a, b) in enumerate(offsets) if b > a and a < span[1] and b > span[0]]

            self.items.append((ids, covering(name), sorted({i for v in values for i in covering(v)})))

    @torch.no_grad()
    def token_losses(self, model, device=None) -> list[torch.Tensor]:
        """Per person, the cross-entropy (nats) of every token given those before it (the
        first token, with nothing before it, is scored against a uniform guess)."""
        device = device or next(model.parameters()).device
        was_training = model.training
        model.eval()
        out = []
        try:
            for b in range(0, len(self.items), self.batch_size):
                batch = [ids for ids, _, _ in self.items[b : b + self.batch_size]]
                width = max(map(len, batch))
                pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
                ids = torch.tensor([x + [pad] * (width - len(x)) for x in batch], device=device)
                mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in batch], device=device)
                logits = model(input_ids=ids, attention_mask=mask).logits.float()
                # cross_entropy, not a log-softmax over the whole vocabulary kept in memory (128k on Llama 3)
                nll = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none")
                nll = nll.double().cpu()
                first = torch.full((len(batch), 1), math.log(logits.shape[-1]), dtype=torch.float64)
                out += [torch.cat([first[i], nll[i, : len(x) - 1]]) for i, x in enumerate(batch)]
        finally:
            model.train(was_training)
        return out

    def evaluate(self, model, device=None) -> dict:
        return self.summarize(self.token_losses(model, device), model)

    def summarize(self, losses: list[torch.Tensor], model) -> dict:
        n = len(self.items)
        p1 = sum(float(loss[name].sum()) for loss, (_, name, _) in zip(losses, self.items)) / n
        p2 = sum(float(loss[values].sum()) for loss, (_, _, values) in zip(losses, self.items)) / n
        n0, s0 = self.pools["N0"], self.pools["S0"]
        name_bits = n * max(0.0, math.log2(n0 - n) - p1 / math.log(2))
        value_bits = n * max(0.0, math.log2(s0) - p2 / math.log(2))
        params, non_embedding = parameter_counts(model)
        used_params = used_vocabulary_params(model, self.used_tokens)
        bits = name_bits + value_bits
        most = n * (math.log2(n0 - n) + math.log2(s0))
        return {
            "measure": "Physics of LM 3.3 bit-complexity lower bound",
            "people": n,
            "N0": n0,
            "S0": s0,
            "gender_is_a_fact": self.pools["gender_is_a_fact"],
            "name_loss_nats": p1,
            "value_loss_nats": p2,
            "name_bits": name_bits,
            "value_bits": value_bits,
            "bits": bits,
            "max_bits": most,
            "share": bits / most,
            "params": params,
            "non_embedding_params": non_embedding,
            "bits_per_param": bits / params,
            "used_tokens": self.used_tokens,
            "params_used_vocabulary": used_params,
            "bits_per_param_used_vocabulary": bits / used_params,
            "bits_per_non_embedding_param": bits / max(non_embedding, 1),
        }


def bound_markdown(result: dict, model: str, variant: str) -> str:
    r = result
    return "\n".join(
        [
            f"# Knowledge capacity of `{model}` (Physics of LM 3.3's bound)",
            "",
            f"{r['people']} people, their `{variant}` biographies; N0 = {r['N0']:,} names, S0 = {r['S0']:,} attribute "
            f"combinations (gender {'a fact' if r['gender_is_a_fact'] else 'follows the name'}).",
            "",
            "| term | loss per person (nats) | bits |",
            "| --- | ---: | ---: |",
            f"| names: N log2((N0 - N) / e^p1) | {r['name_loss_nats']:.2f} | {r['name_bits']:.1f} |",
            f"| attributes: N log2(S0 / e^p2) | {r['value_loss_nats']:.2f} | {r['value_bits']:.1f} |",
            "",
            f"**{r['bits']:.1f} of {r['max_bits']:.1f} bits ({r['share']:.1%})**; {r['params']:,} parameters: "
            f"{r['bits_per_param']:.5f} bits per parameter, {r['bits_per_param_used_vocabulary']:.5f} counting only the "
            f"{r['used_tokens']:,} vocabulary rows the data uses ({r['params_used_vocabulary']:,} parameters, as Physics "
            f"of LM 3.3 counts them), {r['bits_per_non_embedding_param']:.5f} per non-embedding parameter. Physics of "
            "LM 3.3's 2 bits per parameter is the peak over its models, reached when the data holds more bits than the "
            "model has parameters and each fact was seen ~1,000 times.",
            "",
        ]
    )


def metric_names(result: dict, prefix: str = "eval") -> dict[str, float]:
    """What the plugin logs with ``engram_capacity_measure: bound``: the bound, per parameter, and its two terms."""
    return {f"{prefix}_engram_capacity_{k}": result[k] for k in ("bits", "bits_per_param", "name_bits", "value_bits")}
