"""Small pure functions behind the bios_qa tasks: data loading, few-shot exemplars, scoring."""

from __future__ import annotations

import os
import random
from pathlib import Path

import datasets

from engram_plugin.data.bios import FIELDS, QUESTIONS, DataError, check_data_version, read_jsonl, synthesize
from engram_plugin.data.options import NUM_CHOICES, OptionSampler, make_choices

DEFAULT_DATA_DIR = "data/bios"
DATA_DIR_ENV = "ENGRAM_DATA_DIR"
QA_KEYS = ("id", "person_id", "split", "field", "question", "answer", "choices", "label")
PEOPLE = ("train", "heldout", "all")
FEWSHOT_SEED = 1234
NUM_FEWSHOT_EXEMPLARS = 10


class BiosDataError(SystemExit):
    """The data directory is missing or malformed; the message says how to fix it.

    A ``SystemExit``, so that `lm_eval` ends with this one line (exit status 1) instead of
    a traceback; library callers can still ``except BiosDataError``.
    """


def resolve_data_dir(data_dir: str | None = None) -> Path:
    """``--metadata '{"data_dir": ...}'`` wins, then $ENGRAM_DATA_DIR, then data/bios."""
    return Path(data_dir or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)


def _fix_hint(root: Path) -> str:
    return (
        f"run `make data` (or `python generate_data.py --out {root}`), or point {DATA_DIR_ENV} / "
        '--metadata \'{"data_dir": "DIR"}\' at a generated dataset'
    )


def read_qa(root: Path, name: str) -> list[dict]:
    """Rows of ``root/qa/<name>.jsonl``, checked against the layout generate_data writes."""
    path = root / "qa" / f"{name}.jsonl"
    if not root.is_dir():
        raise BiosDataError(f"bios_qa data directory {root} does not exist; {_fix_hint(root)}")
    if not path.is_file():
        raise BiosDataError(f"bios_qa data directory {root} is malformed: {path} is missing; {_fix_hint(root)}")
    _check_version(root)
    try:
        rows = read_jsonl(path)
    except ValueError as exc:
        raise BiosDataError(f"bios_qa data directory {root} is malformed: {path} is not JSON lines ({exc})") from exc
    for row in rows[:1]:
        missing = [k for k in QA_KEYS if k not in row]
        if missing or len(row["choices"]) != NUM_CHOICES:
            raise BiosDataError(
                f"bios_qa data directory {root} is malformed: {path} rows lack {missing or 'four choices'}; "
                f"{_fix_hint(root)}"
            )
    return rows


def _check_version(root: Path) -> None:
    try:
        check_data_version(root)
    except DataError as exc:
        raise BiosDataError(str(exc)) from None


def fewshot_exemplars(field: str, all_questions: str, k: int = NUM_FEWSHOT_EXEMPLARS) -> list[dict]:
    """``k`` QA rows about strangers: people of a separately seeded population whose
    names occur in no question of the data (``all_questions``, joined). Their options
    follow the data's protocol: values of the other strangers."""
    pop = synthesize(k + 50, seed=FEWSHOT_SEED, heldout_fraction=0.0, variants=["bioS"])
    sampler = OptionSampler([p[field] for p in pop.people])
    strangers = [p for p in pop.people if p["name"] not in all_questions][:k]
    rng = random.Random(f"{FEWSHOT_SEED}:fewshot:{field}")
    rows = []
    for i, p in enumerate(strangers):
        choices, label = make_choices(p[field], sampler, rng)
        rows.append(
            {
                "id": f"fewshot-{field}-{i}",
                "person_id": -1,
                "split": "fewshot",
                "field": field,
                "question": QUESTIONS[field].format(name=p["name"]),
                "answer": p[field],
                "choices": choices,
                "label": label,
            }
        )
    return rows


def load_bios_qa(
    field: str, people: str = "train", data_dir: str | None = None, fewshot: bool = False, **_: object
) -> datasets.DatasetDict:
    """``custom_dataset`` of every bios_qa task: ``qa/<field>.jsonl`` of one split as ``test``,
    plus a ``fewshot`` split of strangers where the task asks for exemplars.

    lm-eval passes the task's ``metadata`` (with --metadata's keys) and ``dataset_kwargs``.
    """
    if field not in (*FIELDS, "reverse"):
        raise BiosDataError(f"unknown bios_qa field {field!r}; choose from {', '.join((*FIELDS, 'reverse'))}")
    if people not in PEOPLE:
        raise BiosDataError(f"unknown people split {people!r}; choose from {', '.join(PEOPLE)}")
    root = resolve_data_dir(data_dir)
    all_rows = read_qa(root, field)
    rows = all_rows if people == "all" else [r for r in all_rows if r["split"] == people]
    if not rows:
        raise BiosDataError(f"bios_qa data directory {root} has no {people!r} people in qa/{field}.jsonl")
    splits = {"test": datasets.Dataset.from_list([{k: r[k] for k in QA_KEYS} for r in rows])}
    if fewshot:
        joined = "\n".join(r["question"] for r in all_rows)
        splits["fewshot"] = datasets.Dataset.from_list(fewshot_exemplars(field, joined))
    return datasets.DatasetDict(splits)


def normalize_answer(text: str) -> str:
    """Generated answers: surrounding whitespace and one final period do not count."""
    text = text.strip()
    return text[:-1].rstrip() if text.endswith(".") else text


def process_gen(doc: dict, results: list[str]) -> dict[str, float]:
    """Exact match of a greedy generation (cut at the first newline) with the answer."""
    return {"exact_match": float(normalize_answer(results[0]) == doc["answer"])}


DEFAULT_DOCS_DIR = "data/mydocs"
DOCS_DIR_ENV = "ENGRAM_DOCS_DIR"


def load_docs_qa(people: str = "train", docs_dir: str | None = None, **_: object) -> datasets.DatasetDict:
    """``custom_dataset`` of the docs_qa tasks: ``qa/docs.jsonl`` written by
    ``generate_data.py docs``; ``heldout`` rows are paraphrases never trained on.
    The directory is --metadata's docs_dir, else $ENGRAM_DOCS_DIR, else data/mydocs."""
    root = Path(docs_dir or os.environ.get(DOCS_DIR_ENV) or DEFAULT_DOCS_DIR)
    hint = f"run `python generate_data.py docs --out {root} ...`, or point {DOCS_DIR_ENV} / --metadata docs_dir at its output"
    path = root / "qa" / "docs.jsonl"
    if not path.is_file():
        raise BiosDataError(f"docs_qa data directory {root} has no qa/docs.jsonl; {hint}")
    _check_version(root)
    rows = [r for r in read_jsonl(path) if people == "all" or r["split"] == people]
    if not rows:
        raise BiosDataError(f"docs_qa data directory {root} has no {people!r} questions; {hint}")
    return datasets.DatasetDict(
        {"test": datasets.Dataset.from_list([{k: r[k] for k in QA_KEYS if k in r} for r in rows])}
    )
