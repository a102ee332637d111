"""Import of the public ``bioS_v1`` dataset (or a local copy in its schema) as a Population.

Attributes come from ``birth_date`` ... columns or else from the ``*_a`` answers; missing
text variants are rendered with our templates; splits and options are drawn anew, with
the same protocol as for synthesized people.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from tqdm.auto import tqdm

from engram_data.contract import DEFAULT_VARIANTS, FIELDS, MULTI_VARIANTS, QA_PREFIX, DataError
from engram_data.population import (
    Population,
    assign_splits,
    check_heldout_fraction,
    check_variants,
    person_row,
    seeded,
    variant_rngs,
)
from engram_data.render import render_texts
from engram_data.reversal import entity_reversed

_HE = re.compile(r"\b(he|his|him)\b", re.IGNORECASE)
_SHE = re.compile(r"\b(she|her|hers)\b", re.IGNORECASE)


def infer_gender(text: str) -> str | None:
    he, she = len(_HE.findall(text)), len(_SHE.findall(text))
    if he == she:
        return None
    return "male" if he > she else "female"


def load_bios_v1(source: str):
    """bioS_v1 rows (dicts) from the hub id, a ``save_to_disk`` folder, or a data file."""
    import datasets

    datasets.disable_progress_bars()  # the import has its own bar; stderr is for errors
    datasets.logging.set_verbosity_error()
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
        if isinstance(ds, datasets.DatasetDict):
            ds = datasets.concatenate_datasets([ds[k] for k in ds])
        return ds.to_list()  # read it all here, so that a bad byte fails as a load error
    except DataError:
        raise
    except Exception as exc:  # the datasets library raises many kinds; report one line
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(
            f"cannot load the bioS_v1 dataset {source!r} ({type(exc).__name__}: {reason}); "
            "check the hub id and your network, or pass a local path saved with save_to_disk"
        ) from None


def _text(value: object, where: str, column: str) -> str:
    """A column that must hold a non-empty string (never a number, a list, null or "")."""
    if not isinstance(value, str) or not value.strip():
        got = f"{value!r} ({type(value).__name__})" if value is not None else "null"
        raise DataError(f"{where}: column '{column}' must be a non-empty string, got {got}; fix the dataset")
    return value.strip()


# bioS_v1's formats: birth cities "Irving, TX"; company cities "Irving, Texas" (also
# "Washington, D.C.", "Northfield Township, Cook County, Illinois"): a place, then its state.
_CITY = {
    "birth_city": (re.compile(r"^[^,]+, [A-Z]{2}$"), "'Irving, TX' (city, comma, 2-letter state)"),
    "company_city": (re.compile(r"^[^,]+(, [^,]+)+$"), "'Irving, Texas' (city, comma, state)"),
}


def _value(field: str, value: str, where: str, column: str) -> str:
    """An attribute checked against its field's format in bioS_v1: a real calendar date written
    as "May 26, 1939"; a city as bioS_v1 writes it. What passes here becomes options and capacity values."""
    if field == "birth_date":
        import datetime

        try:
            date = datetime.datetime.strptime(value, "%B %d, %Y")
        except ValueError:
            date = None
        if date is None or value != f"{date:%B} {date.day}, {date.year}":
            raise DataError(
                f"{where}: column '{column}' has {value!r}, not a calendar date written as "
                "'May 26, 1939' (month name, day, 4-digit year); fix the dataset"
            )
    elif field in _CITY and not _CITY[field][0].match(value):
        raise DataError(
            f"{where}: column '{column}' has {value!r}, not a city written as {_CITY[field][1]}; fix the dataset"
        )
    return value


def _texts(value: object, where: str, column: str) -> list[str]:
    """``bioS_multi5_permutes``: a list of non-empty strings (a string would become characters)."""
    if not isinstance(value, list) or not value:
        raise DataError(
            f"{where}: column '{column}' must be a list of biographies, got {type(value).__name__}; fix the dataset"
        )
    return [_text(v, where, column) for v in value]


def from_records(
    records: Iterable[dict],
    seed: int = 0,
    heldout_fraction: float = 0.5,
    variants: Iterable[str] = DEFAULT_VARIANTS,
    source: str = "local",
    progress: bool = False,
    drop_duplicates: bool = False,
) -> Population:
    """People from rows in the bioS_v1 schema, computing what the rows lack. Every column
    is checked: a bad type, an empty string or a repeated name (unless ``drop_duplicates``)
    is a DataError that names the row and the column."""
    variants = check_variants(variants)
    check_heldout_fraction(heldout_fraction)
    text_rng, own_rngs = seeded(seed, "text"), variant_rngs(seed)
    rows, seen, rendered = [], set(), Counter()
    duplicates: list[str] = []
    for i, rec in enumerate(tqdm(records, desc="import", unit="person", disable=not progress)):
        if "name" not in rec:
            raise DataError("the dataset has no 'name' column; it must follow the bioS_v1 schema")
        name = _text(rec["name"], f"row {i}", "name")
        if name in seen:
            duplicates.append(name)  # a repeated name would make its questions ambiguous
            continue
        seen.add(name)
        where = f"row {i} ({name!r})"
        values, questions = {}, {}
        for field in FIELDS:
            column = field if rec.get(field) is not None else f"{QA_PREFIX[field]}_a"
            if column not in rec:
                raise DataError(
                    f"{where} has neither '{field}' nor '{QA_PREFIX[field]}_a'; the dataset must follow the bioS_v1 schema"
                )
            values[field] = _value(field, _text(rec[column], where, column), where, column)
            question = rec.get(f"{QA_PREFIX[field]}_q")
            questions[field] = None if question is None else _text(question, where, f"{QA_PREFIX[field]}_q")
        gender = rec.get("gender")
        if gender not in (None, "male", "female"):
            raise DataError(f"{where}: column 'gender' must be male, female or null, got {gender!r}; fix the dataset")
        gender = gender or infer_gender(str(rec.get("bioS") or rec.get("bioS_fullname") or ""))
        missing = [v for v in variants if rec.get(v) is None]
        rendered.update(missing)
        texts = render_texts(values, name, gender, text_rng, missing, own_rngs) if missing else {}
        for v in variants:
            if v not in missing:
                texts[v] = _texts(rec[v], where, v) if v in MULTI_VARIANTS else _text(rec[v], where, v)
        reversed_ = "bioS_multi5_permutes_entity_reversed"
        if reversed_ in texts and rec.get("bioS_multi5_permutes") is not None:  # the imported five, reversed
            multi5 = _texts(rec["bioS_multi5_permutes"], where, "bioS_multi5_permutes")
            texts[reversed_] = [entity_reversed(b, [name, *values.values()]) for b in multi5]
        parts = name.split()
        name_parts = (parts[0], " ".join(parts[1:-1]), parts[-1] if len(parts) > 1 else "")
        texts = {v: texts[v] for v in variants}
        rows.append(person_row(len(rows), name, name_parts, gender, values, None, texts, questions))
    if not rows:
        raise DataError(f"the dataset {source!r} has no rows; pass a file or dataset with people in it")
    if duplicates and not drop_duplicates:
        raise DataError(
            f"{len(duplicates)} rows repeat a name already seen (first: {duplicates[0]!r}), which would make "
            "questions ambiguous; fix the dataset or pass --drop-duplicates to keep the first of each"
        )
    for person, split in zip(rows, assign_splits(len(rows), heldout_fraction, seed)):
        person["split"] = split
    return Population(
        people=rows,
        pool_sizes={f: len({p[f] for p in rows}) for f in FIELDS[1:]},
        seed=seed,
        source=source,
        variants=variants,
        extra={"duplicate_names_dropped": len(duplicates), "variants_rendered": sorted(rendered)},
    )
