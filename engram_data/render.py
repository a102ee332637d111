"""Rendering: dates, mentions of a person, biographies in every text variant, questions.

Every random choice comes from a ``random.Random`` handed in.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence

from engram_data import reversal
from engram_data.contract import FIELDS, QA_PREFIX, TEXT_VARIANTS, VARIANTS
from engram_data.templates import TEMPLATES

QUESTIONS = {
    "birth_date": "What is the birth date of {name}?",
    "birth_city": "What is the birth city of {name}?",
    "university": "Which university did {name} study?",
    "major": "What major did {name} study?",
    "employer": "Which company did {name} work for?",
    "company_city": "Where did {name} work?",
}
REVERSE_QUESTION = "Who was born on {birth_date} in {birth_city}?"
REVERSE_GIVEN = ("birth_date", "birth_city")

NUM_PERMUTES = 5
MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
YEARS = (1900, 2099)
DAYS = (1, 28)

PRONOUNS = {
    "male": {"S": "He", "s": "he", "P": "His", "his": "his", "him": "him", "he": "he"},
    "female": {"S": "She", "s": "she", "P": "Her", "his": "her", "him": "her", "he": "she"},
}


def pick(rng: random.Random, seq: Sequence):
    """Uniform choice; ``random()`` indexing is several times faster than ``choice``."""
    return seq[int(rng.random() * len(seq))]


_DAY_RANGE = range(DAYS[0], DAYS[1] + 1)
_YEAR_RANGE = range(YEARS[0], YEARS[1] + 1)


def random_date(rng: random.Random) -> str:
    return f"{pick(rng, MONTHS)} {pick(rng, _DAY_RANGE)}, {pick(rng, _YEAR_RANGE)}"


def mention_refs(name: str, gender: str | None) -> tuple[dict[str, str], dict[str, str]]:
    """Placeholder values for a full-name mention and for a pronoun mention.

    Without a known gender (an imported row whose text has no pronouns) every mention
    is the full name and back-references are "they"/"their"/"them": nothing is guessed.
    """
    by_name = {"S": name, "s": name, "P": f"{name}'s"}
    pron = PRONOUNS.get(gender or "")
    if pron is None:
        refs = {**by_name, "his": "their", "him": "them", "he": "they"}
        return refs, refs
    return {**pron, **by_name}, pron


_PERMUTATIONS = tuple(itertools.permutations(FIELDS))
_NUM_TEMPLATES = {f: len(t) for f, t in TEMPLATES.items()}


def render_bio(
    contexts: dict[str, tuple[dict[str, str], dict[str, str]]],
    order: Sequence[str],
    template_ids: Sequence[int],
    fullname_every_sentence: bool = False,
) -> str:
    """One biography: a sentence per field in ``order``; the full name opens it.

    ``contexts[field]`` holds the placeholder values of a full-name mention and of a
    pronoun mention, each with that field's value as ``v``.
    """
    return " ".join(
        TEMPLATES[field][tid].format_map(contexts[field][0 if i == 0 or fullname_every_sentence else 1])
        for i, (field, tid) in enumerate(zip(order, template_ids))
    )


def field_contexts(values: dict[str, str], name: str, gender: str | None):
    name_refs, pron_refs = mention_refs(name, gender)
    return {f: ({**name_refs, "v": values[f]}, {**pron_refs, "v": values[f]}) for f in FIELDS}


def draw_templates(rng: random.Random, order: Sequence[str]) -> list[int]:
    """A template id per field of ``order``, uniform and independent.

    One draw per biography, read as digits in mixed radix: much faster than a draw
    per sentence, and 50**6 < 2**53 keeps every combination equally likely.
    """
    ids, r = [], int(rng.random() * _COMBINATIONS)
    for f in order:
        r, tid = divmod(r, _NUM_TEMPLATES[f])
        ids.append(tid)
    return ids


_COMBINATIONS = 1
for _n in _NUM_TEMPLATES.values():
    _COMBINATIONS *= _n
assert _COMBINATIONS < 2**53  # exact in a double, so the digits are uniform


def five_bios(contexts, rng: random.Random, permute: bool, fullname: bool = False) -> list[str]:
    """Five different biographies of one person: each with its own templates, and with
    ``permute`` its own order of the fields; never a repeat."""
    bios: list[str] = []
    while len(bios) < NUM_PERMUTES:
        order = pick(rng, _PERMUTATIONS) if permute else FIELDS
        bio = render_bio(contexts, order, draw_templates(rng, order), fullname_every_sentence=fullname)
        if bio not in bios:
            bios.append(bio)
    return bios


def permuted_five(contexts, rng: random.Random) -> list[str]:
    """Physics of LM 3.1's single + permute5: one biography (one template per field, drawn
    once) in five different orders of its sentences."""
    ids = dict(zip(FIELDS, draw_templates(rng, FIELDS), strict=True))
    orders: list[tuple[str, ...]] = []
    while len(orders) < NUM_PERMUTES:
        order = tuple(pick(rng, _PERMUTATIONS))
        if order not in orders:
            orders.append(order)
    return [render_bio(contexts, order, [ids[f] for f in order]) for order in orders]


# The ablation variants draw from their own streams (variant_rngs), so that asking for them
# leaves the texts of bioS_v1's three variants as they were.
# (bioS_single_permute1 from the stream named for its name before 2.6, bioS_permute).
ABLATION_VARIANTS = tuple(
    "bioS_permute" if v == "bioS_single_permute1" else v
    for v in TEXT_VARIANTS
    if v not in ("bioS", "bioS_fullname", "bioS_multi5_permutes")
)


def render_texts(
    values: dict[str, str],
    name: str,
    gender: str | None,
    rng: random.Random,
    variants: Sequence[str] = VARIANTS,  # or any of TEXT_VARIANTS
    variant_rngs: dict[str, random.Random] | None = None,
) -> dict[str, object]:
    """The text variants of one person, with bioS_v1's column names; the ablation variants
    draw from ``variant_rngs[variant]`` (their own seeded streams)."""
    contexts = field_contexts(values, name, gender)
    own = variant_rngs or {}
    out: dict[str, object] = {}
    if "bioS" in variants or "bioS_fullname" in variants:
        ids = draw_templates(rng, FIELDS)
        if "bioS" in variants:
            out["bioS"] = render_bio(contexts, FIELDS, ids)
        if "bioS_fullname" in variants:
            out["bioS_fullname"] = render_bio(contexts, FIELDS, ids, fullname_every_sentence=True)
    if "bioS_single_permute1" in variants:  # its stream keeps its name before 2.6: the same texts
        r = own.get("bioS_permute", rng)
        order = pick(r, _PERMUTATIONS)
        out["bioS_single_permute1"] = render_bio(contexts, order, draw_templates(r, order))
    if "bioS_single_permute5" in variants:
        out["bioS_single_permute5"] = permuted_five(contexts, own.get("bioS_single_permute5", rng))
    if "bioS_multi5" in variants:
        out["bioS_multi5"] = five_bios(contexts, own.get("bioS_multi5", rng), permute=False)
    if "bioS_multi5_permutes" in variants or "bioS_multi5_permutes_entity_reversed" in variants:
        multi5 = five_bios(contexts, rng, permute=True)
        if "bioS_multi5_permutes" in variants:
            out["bioS_multi5_permutes"] = multi5
        if "bioS_multi5_permutes_entity_reversed" in variants:  # the same five, reversed
            entities = [name, *values.values()]
            out["bioS_multi5_permutes_entity_reversed"] = [reversal.entity_reversed(b, entities) for b in multi5]
    if "bioS_multi5_permutes_value_first" in variants:
        r = own.get("bioS_multi5_permutes_value_first", rng)
        out["bioS_multi5_permutes_value_first"] = reversal.value_first_bios(values, name, gender, r, NUM_PERMUTES)
    if "bioS_multi5_permutes_fullname" in variants:
        r = own.get("bioS_multi5_permutes_fullname", rng)
        out["bioS_multi5_permutes_fullname"] = five_bios(contexts, r, permute=True, fullname=True)
    return {v: out[v] for v in TEXT_VARIANTS if v in out}


def qa_columns(name: str, values: dict[str, str], questions: dict[str, str] | None = None) -> dict[str, str]:
    cols: dict[str, str] = {}
    for field in FIELDS:
        prefix = QA_PREFIX[field]
        cols[f"{prefix}_q"] = (questions or {}).get(field) or QUESTIONS[field].format(name=name)
        cols[f"{prefix}_a"] = values[field]
    return cols
