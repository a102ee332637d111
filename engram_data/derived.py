"""The files derived from a Population: training text per variant, the QA training text,
and the four-option questions (fields and reverse) with options drawn by ``options.py``."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator, Sequence

from engram_data.contract import (
    FIELDS,
    MULTI_VARIANTS,
    NUM_CHOICES,
    PEOPLE,
    QA_PREFIX,
    QA_REVERSE_TRAIN,
    QA_TRAIN,
    REVERSE,
    qa_file,
    qa_text,
    train_file,
)
from engram_data.options import OptionSampler, make_choices
from engram_data.pools import load_pools
from engram_data.population import Population, seeded
from engram_data.render import REVERSE_GIVEN, REVERSE_QUESTION, random_date


def interleave(groups: Sequence[Sequence[str]], rng: random.Random) -> list[str]:
    """Rows of several rounds (round k holds every person's k-th text), each round in a
    fresh random order, so no two neighbouring rows belong to the same person."""
    n = len(groups)
    rows: list[str] = []
    prev_last = None
    for k in range(max((len(g) for g in groups), default=0)):
        order = [i for i in range(n) if k < len(groups[i])]
        rng.shuffle(order)
        if order and order[0] == prev_last and len(order) > 1:
            order.append(order.pop(0))
        rows.extend(groups[i][k] for i in order)
        prev_last = order[-1] if order else prev_last
    return rows


def option_samplers(answers: Sequence[str], splits: Sequence[str], spare) -> dict[str, OptionSampler]:
    """One sampler per split, drawing distractors from the answers of that split's questions.

    A split with fewer than four distinct values (a tiny population) borrows the other
    split's values, then ``spare()`` values of nobody, each as if held once.
    """
    everyone = sorted(set(answers))
    samplers = {}
    for split in sorted(set(splits)):
        mine = [a for a, s in zip(answers, splits) if s == split]
        if len(set(mine)) >= NUM_CHOICES:
            samplers[split] = OptionSampler(mine)
        else:
            samplers[split] = OptionSampler(mine, spare=[*everyone, *spare()])
    return samplers


def qa_rows(pop: Population, field: str) -> tuple[list[dict], dict[str, bool]]:
    """The field's questions, and per split whether its option design is exact (options.py)."""
    rng = seeded(pop.seed, f"choices:{field}")
    prefix = QA_PREFIX[field]
    people = pop.people
    samplers = option_samplers(
        [p[field] for p in people], [p["split"] for p in people], lambda: _spare_values(pop, field)
    )
    rows = []
    for p in people:
        choices, label = make_choices(p[field], samplers[p["split"]], rng)
        rows.append(
            {
                "id": f"{field}-{p['id']}",
                "person_id": p["id"],
                "split": p["split"],
                "field": field,
                "question": p[f"{prefix}_q"],
                "answer": p[f"{prefix}_a"],
                "choices": choices,
                "label": label,
            }
        )
    return rows, {split: sampler.exact for split, sampler in samplers.items()}


def reverse_rows(pop: Population) -> tuple[list[dict], dict[str, bool]]:
    """Name the person from attributes, only where those attributes identify one person;
    the other three names are of people of the same split who have a reverse question."""
    rng = seeded(pop.seed, "choices:reverse")
    key_count = Counter(tuple(p[f] for f in REVERSE_GIVEN) for p in pop.people)
    asked = [p for p in pop.people if key_count[tuple(p[f] for f in REVERSE_GIVEN)] == 1]
    samplers = option_samplers([p["name"] for p in asked], [p["split"] for p in asked], lambda: _spare_names(pop, rng))
    rows = []
    for p in asked:
        choices, label = make_choices(p["name"], samplers[p["split"]], rng)
        rows.append(
            {
                "id": f"reverse-{p['id']}",
                "person_id": p["id"],
                "split": p["split"],
                "field": "name",
                "given": {f: p[f] for f in REVERSE_GIVEN},
                "question": REVERSE_QUESTION.format(**{f: p[f] for f in REVERSE_GIVEN}),
                "answer": p["name"],
                "choices": choices,
                "label": label,
            }
        )
    return rows, {split: sampler.exact for split, sampler in samplers.items()}


def _spare_values(pop: Population, field: str) -> list[str]:
    """Values of ``field`` that nobody in a tiny population holds (sorted, or seeded dates)."""
    taken = {p[field] for p in pop.people}
    if field == "birth_date":
        rng = seeded(pop.seed, "spare:birth_date")
        candidates = [random_date(rng) for _ in range(4 * NUM_CHOICES)]
    else:
        candidates = list(load_pools().field_values(field))
    return [v for v in dict.fromkeys(candidates) if v not in taken]


def _spare_names(pop: Population, rng: random.Random) -> list[str]:
    """Names of nobody in a tiny population, so reverse questions still get four options."""
    pools, taken = load_pools(), {p["name"] for p in pop.people}
    spare: list[str] = []
    while len(spare) < NUM_CHOICES:
        g = rng.choice(("male", "female"))
        name = f"{rng.choice(pools.first_names[g])} {rng.choice(pools.middle_names[g])} {rng.choice(pools.last_names)}"
        if name not in taken and name not in spare:
            spare.append(name)
    return spare


def dataset_files(pop: Population) -> Iterator[tuple[str, list, list[str | None], dict]]:
    """Every file of the layout, built one at a time: (path relative to the dataset, rows,
    split of each row or None where a row has no single person, notes for the manifest)."""
    people = pop.people
    splits = [p["split"] for p in people]
    yield PEOPLE, people, splits, {}
    for v in pop.variants:
        if v in MULTI_VARIANTS:
            stream = "order:multi5" if v == "bioS_multi5_permutes" else f"order:{v}"  # each its own
            texts = interleave([p[v] for p in people], seeded(pop.seed, stream))
            yield str(train_file(".", v)), [{"text": t} for t in texts], [None] * len(texts), {}
        else:
            yield str(train_file(".", v)), [{"text": p[v]} for p in people], splits, {}
    trained = [p for p in people if p["split"] == "train"]
    qa_groups = [[qa_text(p[f"{QA_PREFIX[f]}_q"], p[f"{QA_PREFIX[f]}_a"]) for f in FIELDS] for p in trained]
    qa_texts = interleave(qa_groups, seeded(pop.seed, "order:qa_train"))
    yield str(train_file(".", QA_TRAIN)), [{"text": t} for t in qa_texts], ["train"] * len(qa_texts), {}
    for field in FIELDS:
        rows, exact = qa_rows(pop, field)
        yield str(qa_file(".", field)), rows, [r["split"] for r in rows], {"options_exact": exact}
    rev, exact = reverse_rows(pop)
    yield str(qa_file(".", REVERSE)), rev, [r["split"] for r in rev], {"options_exact": exact}
    # A reversal remedy: the reverse questions of train people as training text (heldout
    # people's stay untrained, so qa/reverse.jsonl's heldout rows test whether it generalizes).
    texts = [qa_text(r["question"], r["answer"]) for r in rev if r["split"] == "train"]
    texts = [texts[i] for i in _shuffled(len(texts), seeded(pop.seed, "order:qa_reverse_train"))]
    yield str(train_file(".", QA_REVERSE_TRAIN)), [{"text": t} for t in texts], ["train"] * len(texts), {}


def _shuffled(n: int, rng: random.Random) -> list[int]:
    order = list(range(n))
    rng.shuffle(order)
    return order


def num_dataset_files(pop: Population) -> int:
    return 1 + len(pop.variants) + 1 + len(FIELDS) + 1 + 1
