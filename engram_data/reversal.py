"""The reversal remedies' texts: biographies that state each attribute *before* the name, and
entity-preserving reversal of the whole text (Golovneva et al., "Reverse Training to Nurse
the Reversal Curse", 2024).

Both deliberately break the subject-first rule of ``templates.py`` (a value before the
name teaches value -> name), so they are kept apart from bioS's variants and their checks:
``contract.REVERSAL_VARIANTS``, never in ``VARIANTS``, never in ``make reproduce``.

- ``bioS_multi5_permutes_value_first``: five biographies per person, each sentence opening
  with the value and naming the person in full (a pronoun after the value would not say
  whose it is), fields in a random order per biography.
- ``bioS_multi5_permutes_entity_reversed``: each of the person's ``bioS_multi5_permutes``
  biographies with its word order reversed, the person's name and each value kept whole
  ("Anna Lee Smith was born on March 3, 1990." -> ". March 3, 1990 on born was Anna Lee Smith").
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from engram_data.contract import FIELDS

# {v} first, then the full name ({n}); {his} is a back-reference to the person.
VALUE_FIRST: dict[str, tuple[str, ...]] = {
    "birth_date": (
        "On {v}, {n} was born.",
        "{v} is the birthday of {n}.",
        "{v} is the date of birth of {n}.",
        "Born on {v}: {n}.",
        "{v} was the day {n} came into the world.",
    ),
    "birth_city": (
        "{v} is the birthplace of {n}.",
        "In {v}, {n} was born.",
        "{v} is where {n} was born.",
        "Born in {v}: {n}.",
        "{v} was the city where {n} first saw the light of day.",
    ),
    "university": (
        "{v} is where {n} studied.",
        "At {v}, {n} received {his} education.",
        "{v} counts {n} among its graduates.",
        "Educated at {v}: {n}.",
        "{v} was the university of {n}.",
    ),
    "major": (
        "{v} was the major of {n}.",
        "{v} is what {n} studied.",
        "In {v}, {n} completed {his} degree.",
        "A degree in {v} was earned by {n}.",
        "{v} was the field that {n} chose.",
    ),
    "employer": (
        "{v} employed {n}.",
        "At {v}, {n} had a career.",
        "{v} is the company {n} worked for.",
        "Working for {v}: {n}.",
        "{v} counted {n} among its staff.",
    ),
    "company_city": (
        "{v} is where {n} worked.",
        "In {v}, {n} held a job.",
        "{v} was the city of {n}'s workplace.",
        "Working in {v}: {n}.",
        "{v} is the city where {n} went to work.",
    ),
}
_HIS = {"male": "his", "female": "her"}


def value_first_bio(values: dict[str, str], name: str, gender: str | None, rng: random.Random) -> str:
    order = list(FIELDS)
    rng.shuffle(order)
    his = _HIS.get(gender or "", "their")
    return " ".join(
        VALUE_FIRST[f][int(rng.random() * len(VALUE_FIRST[f]))].format(v=values[f], n=name, his=his) for f in order
    )


def value_first_bios(
    values: dict[str, str], name: str, gender: str | None, rng: random.Random, n: int = 5
) -> list[str]:
    """``n`` different value-first biographies of one person (never a repeat)."""
    bios: list[str] = []
    while len(bios) < n:
        bio = value_first_bio(values, name, gender, rng)
        if bio not in bios:
            bios.append(bio)
    return bios


def entity_reversed(text: str, entities: Sequence[str]) -> str:
    """``text`` with its words in reverse order; each of ``entities`` (found in the text, the
    longest first) stays one unit in its own order, and punctuation is a word of its own."""
    pattern = "|".join(re.escape(e) for e in sorted(set(entities), key=len, reverse=True) if e)
    units: list[str] = []
    pos = 0
    for m in re.finditer(pattern, text) if pattern else ():
        units += _words(text[pos : m.start()])
        units.append(m.group(0))
        pos = m.end()
    units += _words(text[pos:])
    return " ".join(reversed(units))


def _words(chunk: str) -> list[str]:
    return re.findall(r"[\w'-]+|[^\w\s]", chunk)
