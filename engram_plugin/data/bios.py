"""bioS populations: synthesis, import of ``bioS_v1``, and the on-disk layout.

Every other part of llm-engram reads what :func:`write_dataset` writes::

    DIR/people.jsonl                    one row per person (attributes, split, texts, QA columns)
    DIR/train/bioS.jsonl                {"text": ...} rows for Axolotl's ``completion`` type
    DIR/train/bioS_fullname.jsonl
    DIR/train/bioS_multi5_permutes.jsonl  five biographies per person, interleaved
    DIR/train/qa_train.jsonl            QA text for ``train``-split people (mixed training)
    DIR/qa/<field>.jsonl                four-option questions, fixed choices and label
    DIR/qa/reverse.jsonl                "who was born on ... in ...?" with four names
    DIR/manifest.json                   seed, counts, pool sizes, version, sha256 per file

The same arguments give byte-identical files; every random choice comes from a
``random.Random`` seeded with ``f"{seed}:{stream}"``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import orjson
from tqdm.auto import tqdm

from engram_plugin.data.options import NUM_CHOICES, PROTOCOL, OptionSampler, make_choices
from engram_plugin.data.templates import TEMPLATES

# 2.0: distractors from other people of the same split (options.py), subject-first templates.
GENERATOR_VERSION = "2.0"
MANIFEST_GENERATOR = "llm-engram/generate_data"

FIELDS = ("birth_date", "birth_city", "university", "major", "employer", "company_city")
# Column prefixes of the public bioS_v1 dataset: bdate_q / bdate_a, ...
QA_PREFIX = {
    "birth_date": "bdate",
    "birth_city": "bcity",
    "university": "university",
    "major": "major",
    "employer": "employer",
    "company_city": "company_city",
}
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

TEXT_VARIANTS = ("bioS", "bioS_fullname", "bioS_multi5_permutes")
SPLITS = ("train", "heldout")
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


class DataError(Exception):
    """Bad input or output for the data generator; the message says how to fix it."""


def qa_prompt(question: str) -> str:
    """The prompt every QA consumer uses: training text, lm-eval tasks, the plugin."""
    return f"Question: {question}\nAnswer:"


def qa_text(question: str, answer: str) -> str:
    return f"{qa_prompt(question)} {answer}"


# ---------------------------------------------------------------------------
# Attribute pools
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Pools:
    first_names: dict[str, tuple[str, ...]]  # gender -> names
    middle_names: dict[str, tuple[str, ...]]
    last_names: tuple[str, ...]
    cities: tuple[str, ...]
    universities: tuple[str, ...]
    majors: tuple[str, ...]
    companies: dict[str, str]  # company -> headquarters city

    def field_values(self, field: str) -> tuple[str, ...] | None:
        """Every value a field can take; ``None`` for birth dates, which are drawn."""
        return {
            "birth_city": self.cities,
            "university": self.universities,
            "major": self.majors,
            "employer": tuple(self.companies),
            "company_city": tuple(sorted(set(self.companies.values()))),
        }.get(field)

    def sizes(self) -> dict[str, int]:
        return {
            "first_names": sum(len(v) for v in self.first_names.values()),
            "middle_names": sum(len(v) for v in self.middle_names.values()),
            "last_names": len(self.last_names),
            "birth_city": len(self.cities),
            "university": len(self.universities),
            "major": len(self.majors),
            "employer": len(self.companies),
            "company_city": len(self.field_values("company_city")),
        }

    def name_capacity(self) -> int:
        return sum(
            len(self.first_names[g]) * len(self.middle_names[g]) * len(self.last_names) for g in self.first_names
        )


def _read_lines(name: str) -> list[str]:
    text = resources.files("engram_plugin.data").joinpath("pools", name).read_text("utf-8")
    return [line for line in text.splitlines() if line.strip()]


def _read_tsv(name: str) -> list[list[str]]:
    return [line.split("\t") for line in _read_lines(name)[1:]]


def load_pools() -> Pools:
    def by_gender(rows: list[list[str]]) -> dict[str, tuple[str, ...]]:
        return {g: tuple(n for n, gg in rows if gg == g) for g in ("male", "female")}

    return Pools(
        first_names=by_gender(_read_tsv("first_names.tsv")),
        middle_names=by_gender(_read_tsv("middle_names.tsv")),
        last_names=tuple(_read_lines("last_names.txt")),
        cities=tuple(_read_lines("cities.txt")),
        universities=tuple(_read_lines("universities.txt")),
        majors=tuple(_read_lines("majors.txt")),
        companies={c: city for c, city in _read_tsv("companies.tsv")},
    )


# ---------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------


def format_date(month: int, day: int, year: int) -> str:
    return f"{MONTHS[month - 1]} {day}, {year}"


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


def render_texts(
    values: dict[str, str],
    name: str,
    gender: str | None,
    rng: random.Random,
    variants: Sequence[str] = TEXT_VARIANTS,
) -> dict[str, object]:
    """The text variants of one person, with bioS_v1's column names."""
    contexts = field_contexts(values, name, gender)
    out: dict[str, object] = {}
    if "bioS" in variants or "bioS_fullname" in variants:
        ids = draw_templates(rng, FIELDS)
        if "bioS" in variants:
            out["bioS"] = render_bio(contexts, FIELDS, ids)
        if "bioS_fullname" in variants:
            out["bioS_fullname"] = render_bio(contexts, FIELDS, ids, fullname_every_sentence=True)
    if "bioS_multi5_permutes" in variants:
        bios: list[str] = []
        while len(bios) < NUM_PERMUTES:
            order = pick(rng, _PERMUTATIONS)
            bio = render_bio(contexts, order, draw_templates(rng, order))
            if bio not in bios:  # five different biographies, never a repeat
                bios.append(bio)
        out["bioS_multi5_permutes"] = bios
    return out


def qa_columns(name: str, values: dict[str, str], questions: dict[str, str] | None = None) -> dict[str, str]:
    cols: dict[str, str] = {}
    for field in FIELDS:
        prefix = QA_PREFIX[field]
        cols[f"{prefix}_q"] = (questions or {}).get(field) or QUESTIONS[field].format(name=name)
        cols[f"{prefix}_a"] = values[field]
    return cols


# ---------------------------------------------------------------------------
# Populations
# ---------------------------------------------------------------------------


@dataclass
class Population:
    people: list[dict]  # people.jsonl rows
    pool_sizes: dict[str, int]
    seed: int
    source: str
    variants: tuple[str, ...]
    extra: dict  # manifest notes (import statistics)


def _rng(seed: int, stream: str) -> random.Random:
    return random.Random(f"{seed}:{stream}")


def check_variants(variants: Iterable[str]) -> tuple[str, ...]:
    variants = tuple(variants)
    unknown = [v for v in variants if v not in TEXT_VARIANTS]
    if unknown or not variants:
        raise DataError(
            f"unknown text variant {', '.join(unknown) or '(none given)'}; choose from {', '.join(TEXT_VARIANTS)}"
        )
    return tuple(v for v in TEXT_VARIANTS if v in variants)


def check_heldout_fraction(fraction: float) -> float:
    if not 0.0 <= fraction < 1.0:
        raise DataError(
            f"--heldout-fraction must be in [0, 1) (got {fraction}); use e.g. 0.5 to hold out half of the people"
        )
    return fraction


def assign_splits(n: int, heldout_fraction: float, seed: int) -> list[str]:
    num_heldout = round(n * heldout_fraction)
    heldout = set(_rng(seed, "split").sample(range(n), num_heldout))
    return ["heldout" if i in heldout else "train" for i in range(n)]


def synthesize(
    num_people: int = 10_000,
    seed: int = 0,
    heldout_fraction: float = 0.5,
    variants: Iterable[str] = TEXT_VARIANTS,
    pools: Pools | None = None,
    progress: bool = False,
) -> Population:
    """Sample ``num_people`` people with unique names and independent, uniform attributes."""
    pools = pools or load_pools()
    variants = check_variants(variants)
    check_heldout_fraction(heldout_fraction)
    if not isinstance(num_people, int) or num_people <= 0:
        raise DataError(f"--num-people must be a positive integer (got {num_people})")
    # Rejection sampling of unique names slows down near capacity; stay well below it.
    if num_people > pools.name_capacity() // 4:
        raise DataError(
            f"--num-people {num_people} is too many for the name pools "
            f"(at most {pools.name_capacity() // 4}); use fewer people"
        )

    attr_rng, text_rng = _rng(seed, "attributes"), _rng(seed, "text")
    companies = tuple(pools.companies)
    splits = assign_splits(num_people, heldout_fraction, seed)
    seen: set[str] = set()
    people = []
    for pid in tqdm(range(num_people), desc="people", unit="person", disable=not progress):
        gender = pick(attr_rng, ("male", "female"))
        while True:
            first = pick(attr_rng, pools.first_names[gender])
            middle = pick(attr_rng, pools.middle_names[gender])
            last = pick(attr_rng, pools.last_names)
            name = f"{first} {middle} {last}"
            if middle != first and name not in seen:
                seen.add(name)
                break
        employer = pick(attr_rng, companies)
        values = {
            "birth_date": random_date(attr_rng),
            "birth_city": pick(attr_rng, pools.cities),
            "university": pick(attr_rng, pools.universities),
            "major": pick(attr_rng, pools.majors),
            "employer": employer,
            # The company city is the employer's headquarters, as in bioS.
            "company_city": pools.companies[employer],
        }
        people.append(
            {
                "id": pid,
                "name": name,
                "first_name": first,
                "middle_name": middle,
                "last_name": last,
                "gender": gender,
                **values,
                "split": splits[pid],
                **render_texts(values, name, gender, text_rng, variants),
                **qa_columns(name, values),
            }
        )
    return Population(
        people=people,
        pool_sizes=pools.sizes(),
        seed=seed,
        source="synthetic",
        variants=variants,
        extra={},
    )


# ---------------------------------------------------------------------------
# Import of the public bioS_v1 dataset (or a local copy in its schema)
# ---------------------------------------------------------------------------

_HE = re.compile(r"\b(he|his|him)\b", re.IGNORECASE)
_SHE = re.compile(r"\b(she|her|hers)\b", re.IGNORECASE)


def infer_gender(text: str) -> str | None:
    he, she = len(_HE.findall(text)), len(_SHE.findall(text))
    if he == she:
        return None
    return "male" if he > she else "female"


def load_bios_v1(source: str):
    """Load bioS_v1 rows from the hub id, a ``save_to_disk`` folder, or a data file."""
    import datasets

    path = Path(source)
    try:
        if path.is_dir() and any((path / f).exists() for f in ("dataset_dict.json", "dataset_info.json")):
            ds = datasets.load_from_disk(str(path))
        elif path.is_file():
            builder = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}.get(path.suffix)
            if builder is None:
                raise DataError(f"cannot read {source}: use a .jsonl, .json, .parquet or .csv file")
            ds = datasets.load_dataset(builder, data_files=str(path))
        else:
            ds = datasets.load_dataset(source)
    except DataError:
        raise
    except Exception as exc:  # the datasets library raises many kinds; report one line
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(
            f"cannot load the bioS_v1 dataset {source!r} ({type(exc).__name__}: {reason}); "
            "check the hub id and your network, or pass a local path saved with save_to_disk"
        ) from exc
    if isinstance(ds, datasets.DatasetDict):
        ds = datasets.concatenate_datasets([ds[k] for k in ds])
    return ds


def from_records(
    records: Iterable[dict],
    seed: int = 0,
    heldout_fraction: float = 0.5,
    variants: Iterable[str] = TEXT_VARIANTS,
    source: str = "local",
    progress: bool = False,
) -> Population:
    """People from rows in the bioS_v1 schema, computing what the rows lack.

    Attributes come from ``birth_date`` ... columns or else from the ``*_a`` answers;
    missing text variants are rendered with our templates; splits and choices are new
    (distractors from other imported people of the same split, as for synthetic data).
    """
    variants = check_variants(variants)
    check_heldout_fraction(heldout_fraction)
    text_rng = _rng(seed, "text")
    rows, seen, duplicates, rendered = [], set(), 0, Counter()
    for rec in tqdm(records, desc="import", unit="person", disable=not progress):
        if "name" not in rec:
            raise DataError("the dataset has no 'name' column; it must follow the bioS_v1 schema")
        name = str(rec["name"]).strip()
        if name in seen:
            duplicates += 1  # a repeated name would make its questions ambiguous
            continue
        seen.add(name)
        values, questions = {}, {}
        for field in FIELDS:
            prefix = QA_PREFIX[field]
            value = rec.get(field) or rec.get(f"{prefix}_a")
            if not value:
                raise DataError(
                    f"row for {name!r} has neither '{field}' nor '{prefix}_a'; "
                    "the dataset must follow the bioS_v1 schema"
                )
            values[field] = str(value).strip()
            questions[field] = rec.get(f"{prefix}_q")
        gender = rec.get("gender") or infer_gender(str(rec.get("bioS") or rec.get("bioS_fullname") or ""))
        parts = name.split()
        texts = {}
        missing = [v for v in variants if not rec.get(v)]
        if missing:
            rendered.update(missing)
            texts = render_texts(values, name, gender, text_rng, missing)
        for v in variants:
            if v not in missing:
                value = rec[v]
                texts[v] = list(value) if v == "bioS_multi5_permutes" else str(value)
        rows.append(
            {
                "id": len(rows),
                "name": name,
                "first_name": parts[0],
                "middle_name": " ".join(parts[1:-1]),
                "last_name": parts[-1] if len(parts) > 1 else "",
                "gender": gender,
                **values,
                "split": None,
                **{v: texts[v] for v in variants},
                **qa_columns(name, values, questions),
            }
        )
    if not rows:
        raise DataError(f"the dataset {source!r} has no rows")
    for person, split in zip(rows, assign_splits(len(rows), heldout_fraction, seed)):
        person["split"] = split
    return Population(
        people=rows,
        pool_sizes={f: len({p[f] for p in rows}) for f in FIELDS[1:]},
        seed=seed,
        source=source,
        variants=variants,
        extra={"duplicate_names_dropped": duplicates, "variants_rendered": sorted(rendered)},
    )


# ---------------------------------------------------------------------------
# Derived files
# ---------------------------------------------------------------------------


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
    rng = _rng(pop.seed, f"choices:{field}")
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
    rng = _rng(pop.seed, "choices:reverse")
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
        rng = _rng(pop.seed, "spare:birth_date")
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
    """Every file of the layout, built one at a time: (relative path, rows, split of each
    row or None where a row has no single person, notes for the manifest)."""
    people = pop.people
    splits = [p["split"] for p in people]
    yield "people.jsonl", people, splits, {}
    for v in pop.variants:
        if v == "bioS_multi5_permutes":
            texts = interleave([p[v] for p in people], _rng(pop.seed, "order:multi5"))
            yield f"train/{v}.jsonl", [{"text": t} for t in texts], [None] * len(texts), {}
        else:
            yield f"train/{v}.jsonl", [{"text": p[v]} for p in people], splits, {}
    trained = [p for p in people if p["split"] == "train"]
    qa_groups = [[qa_text(p[f"{QA_PREFIX[f]}_q"], p[f"{QA_PREFIX[f]}_a"]) for f in FIELDS] for p in trained]
    qa_texts = interleave(qa_groups, _rng(pop.seed, "order:qa_train"))
    yield "train/qa_train.jsonl", [{"text": t} for t in qa_texts], ["train"] * len(qa_texts), {}
    for field in FIELDS:
        rows, exact = qa_rows(pop, field)
        yield f"qa/{field}.jsonl", rows, [r["split"] for r in rows], {"options_exact": exact}
    rev, exact = reverse_rows(pop)
    yield "qa/reverse.jsonl", rev, [r["split"] for r in rev], {"options_exact": exact}


def num_dataset_files(pop: Population) -> int:
    return 1 + len(pop.variants) + 1 + len(FIELDS) + 1


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------


def check_data_version(root: str | os.PathLike) -> None:
    """Refuse data whose options a frequency-only guesser can tell apart (generator < 2.0):
    scoring it with today's tasks would mix old and new numbers under one version."""
    path = Path(root) / "manifest.json"
    try:
        manifest = json.loads(path.read_text("utf-8"))
        version = str(manifest.get("generator_version", "1.0"))
    except (OSError, ValueError, AttributeError):
        return  # no readable manifest: the readers' own checks say what is missing
    if int(version.split(".")[0]) < int(GENERATOR_VERSION.split(".")[0]):
        raise DataError(
            f"{root} was written by generate_data {version}, whose distractors a guesser that only counts "
            f"frequencies tells from the answer; regenerate it (make data, or generate_data.py --overwrite)"
        )


def is_previous_output(path: Path) -> bool:
    try:
        manifest = json.loads((path / "manifest.json").read_text("utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("generator") == MANIFEST_GENERATOR


def check_output_dir(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise DataError(f"output path {out} exists and is not a directory; choose another --out")
    if out.is_dir() and any(out.iterdir()):
        if not is_previous_output(out):
            raise DataError(
                f"output directory {out} exists and is not a previous generate_data output; "
                "choose an empty or new --out (nothing was changed)"
            )
        if not overwrite:
            raise DataError(f"output directory {out} already holds a dataset; pass --overwrite to replace it")


def write_jsonl(path: Path, rows: Sequence[dict], chunk: int = 8192) -> tuple[int, str]:
    """Write rows as JSON lines; return the row count and the sha256 of the bytes."""
    digest = hashlib.sha256()
    dumps, option = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    with path.open("wb") as f:
        for start in range(0, len(rows), chunk):
            block = b"".join([dumps(row, option=option) for row in rows[start : start + chunk]])
            digest.update(block)
            f.write(block)
    return len(rows), digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_dataset(
    pop: Population,
    out: str | os.PathLike,
    overwrite: bool = False,
    progress: bool = False,
    args: dict | None = None,
) -> dict:
    """Write the layout atomically: into a temp dir beside ``out``, then rename."""
    out = Path(out)
    check_output_dir(out, overwrite)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    except OSError as exc:
        raise DataError(f"cannot write to {out.parent} ({exc.strerror or exc}); choose a writable --out") from exc
    try:
        # mkdtemp makes a private (0700) folder; the dataset gets the usual permissions.
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)
        (tmp / "train").mkdir()
        (tmp / "qa").mkdir()
        file_info = {}
        files = dataset_files(pop)
        bar = tqdm(files, total=num_dataset_files(pop), desc="write", unit="file", disable=not progress)
        for rel, rows, splits, notes in bar:
            count, sha = write_jsonl(tmp / rel, rows)
            info: dict = {"rows": count}
            if all(s is not None for s in splits):
                info["by_split"] = {s: splits.count(s) for s in SPLITS}
            info.update(notes)
            info["sha256"] = sha
            file_info[rel] = info
        people_splits = Counter(p["split"] for p in pop.people)
        manifest = {
            "generator": MANIFEST_GENERATOR,
            "generator_version": GENERATOR_VERSION,
            "source": pop.source,
            "seed": pop.seed,
            "args": args or {},
            "fields": list(FIELDS),
            "variants": list(pop.variants),
            "num_people": len(pop.people),
            "splits": {s: people_splits.get(s, 0) for s in SPLITS},
            "pool_sizes": pop.pool_sizes,
            "num_choices": NUM_CHOICES,
            "options": PROTOCOL,
            "qa_prompt": qa_prompt("{question}"),
            **({"import": pop.extra} if pop.extra else {}),
            "files": file_info,
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", "utf-8")
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]
