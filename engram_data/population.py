"""A population: people with unique names and attributes, their split, texts and QA columns.

``person_row`` is the one place a ``people.jsonl`` row is built, for synthesized people
(``synthesize``) and imported ones (``bios_v1.from_records``).
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

from tqdm.auto import tqdm

from engram_data.contract import DEFAULT_VARIANTS, TEXT_VARIANTS, DataError
from engram_data.pools import Pools, load_pools
from engram_data.render import ABLATION_VARIANTS, pick, qa_columns, random_date, render_texts

# A person's gender (pronouns): from the first name's usual gender, or on its own (the authors').
GENDER_MODES = ("by-name", "independent")


@dataclass
class Population:
    people: list[dict]  # people.jsonl rows
    pool_sizes: dict[str, int]
    seed: int
    source: str
    variants: tuple[str, ...]
    extra: dict  # manifest notes (import statistics)


def seeded(seed: int, stream: str) -> random.Random:
    """The generator of one stream of random choices (attributes, text, split, ...)."""
    return random.Random(f"{seed}:{stream}")


def check_variants(variants: Iterable[str]) -> tuple[str, ...]:
    variants = tuple(variants)
    unknown = [v for v in variants if v not in TEXT_VARIANTS]
    if unknown or not variants:
        raise DataError(
            f"unknown text variant {', '.join(unknown) or '(none given)'}; choose from {', '.join(TEXT_VARIANTS)}"
        )
    return tuple(v for v in TEXT_VARIANTS if v in variants)


def variant_rngs(seed: int) -> dict[str, random.Random]:
    """The ablation variants' own text streams (asking for them changes no other variant)."""
    return {v: seeded(seed, f"text:{v}") for v in ABLATION_VARIANTS}


def check_gender(mode: str) -> str:
    if mode not in GENDER_MODES:
        raise DataError(f"unknown --gender {mode!r}; choose from {', '.join(GENDER_MODES)}")
    return mode


def check_heldout_fraction(fraction: float) -> float:
    if not 0.0 <= fraction < 1.0:
        raise DataError(
            f"--heldout-fraction must be in [0, 1) (got {fraction}); use e.g. 0.5 to hold out half of the people"
        )
    return fraction


def assign_splits(n: int, heldout_fraction: float, seed: int) -> list[str]:
    num_heldout = round(n * heldout_fraction)
    heldout = set(seeded(seed, "split").sample(range(n), num_heldout))
    return ["heldout" if i in heldout else "train" for i in range(n)]


def person_row(
    pid: int,
    name: str,
    parts: tuple[str, str, str],
    gender: str | None,
    values: dict[str, str],
    split: str | None,
    texts: dict[str, object],
    questions: dict[str, str] | None = None,
) -> dict:
    """A ``people.jsonl`` row: identity, attributes, split, text variants, bioS_v1's QA columns."""
    first, middle, last = parts
    return {
        "id": pid,
        "name": name,
        "first_name": first,
        "middle_name": middle,
        "last_name": last,
        "gender": gender,
        **values,
        "split": split,
        **texts,
        **qa_columns(name, values, questions),
    }


def synthesize(
    num_people: int = 10_000,
    seed: int = 0,
    heldout_fraction: float = 0.5,
    variants: Iterable[str] = DEFAULT_VARIANTS,
    pools: Pools | None = None,
    progress: bool = False,
    gender: str = "by-name",
    values_per_field: int | None = None,
) -> Population:
    """Sample ``num_people`` people with unique names and independent, uniform attributes.

    ``gender="by-name"``: a gender, then first and middle names of that gender (pronouns agree
    with the name). ``"independent"``: names from both genders' lists and a gender drawn on its
    own, as the authors' generator does (the pronouns are then one more fact per person).
    ``values_per_field``: each attribute drawn from that many values only (a seeded subset of
    its pool, and as many seeded dates), so that each value recurs: the probes' regime."""
    pools = pools or load_pools()
    dates = None
    if values_per_field is not None:
        pools, dates = few_values(pools, values_per_field, seed)
    variants = check_variants(variants)
    check_gender(gender)
    check_heldout_fraction(heldout_fraction)
    if not isinstance(num_people, int) or num_people <= 0:
        raise DataError(f"--num-people must be a positive integer (got {num_people})")
    # Rejection sampling of unique names slows down near capacity; stay well below it.
    if num_people > pools.name_capacity() // 4:
        raise DataError(
            f"--num-people {num_people} is too many for the name pools "
            f"(at most {pools.name_capacity() // 4}); use fewer people"
        )

    attr_rng, text_rng, own_rngs = seeded(seed, "attributes"), seeded(seed, "text"), variant_rngs(seed)
    first_names, middle_names = pools.first_names, pools.middle_names
    if gender == "independent":  # every name for either gender (a name on both lists once)
        first_names = dict.fromkeys(first_names, tuple(dict.fromkeys(sum(first_names.values(), ()))))
        middle_names = dict.fromkeys(middle_names, tuple(dict.fromkeys(sum(middle_names.values(), ()))))
    companies = tuple(pools.companies)
    splits = assign_splits(num_people, heldout_fraction, seed)
    seen: set[str] = set()
    people = []
    for pid in tqdm(range(num_people), desc="people", unit="person", disable=not progress):
        sex = pick(attr_rng, ("male", "female"))
        while True:
            first = pick(attr_rng, first_names[sex])
            middle = pick(attr_rng, middle_names[sex])
            last = pick(attr_rng, pools.last_names)
            name = f"{first} {middle} {last}"
            if middle != first and name not in seen:
                seen.add(name)
                break
        employer = pick(attr_rng, companies)
        values = {
            "birth_date": pick(attr_rng, dates) if dates else random_date(attr_rng),
            "birth_city": pick(attr_rng, pools.cities),
            "university": pick(attr_rng, pools.universities),
            "major": pick(attr_rng, pools.majors),
            "employer": employer,
            # The company city is the employer's headquarters, as in bioS.
            "company_city": pools.companies[employer],
        }
        texts = render_texts(values, name, sex, text_rng, variants, own_rngs)
        people.append(person_row(pid, name, (first, middle, last), sex, values, splits[pid], texts))
    return Population(
        people=people,
        pool_sizes=pools.sizes(),
        seed=seed,
        source="synthetic",
        variants=variants,
        extra={
            **({} if gender == "by-name" else {"gender": gender}),
            **({"values_per_field": values_per_field} if values_per_field else {}),
        },
    )


def few_values(pools: Pools, k: int, seed: int) -> tuple[Pools, tuple[str, ...]]:
    """``pools`` cut to ``k`` values per attribute (seeded, each field its own stream) and ``k`` dates."""
    import dataclasses

    if not isinstance(k, int) or k < 4:
        raise DataError(f"--values-per-field must be at least 4, one per option (got {k})")
    cut = {}
    for name in ("cities", "universities", "majors"):
        values = getattr(pools, name)
        cut[name] = tuple(seeded(seed, f"values:{name}").sample(values, min(k, len(values))))
    chosen = seeded(seed, "values:companies").sample(sorted(pools.companies), min(k, len(pools.companies)))
    cut["companies"] = {c: pools.companies[c] for c in chosen}
    rng, dates = seeded(seed, "values:birth_date"), []
    while len(dates) < k:
        date = random_date(rng)
        dates += [date] if date not in dates else []
    return dataclasses.replace(pools, **cut), tuple(dates)
