"""Small pure functions behind the tasks: data loading (every row checked against the data
contract), few-shot exemplars about strangers, and generative scoring."""

from __future__ import annotations

import os
from pathlib import Path

import datasets

from engram_data.contract import (
    CORPUS_QA_KEYS,
    DEFAULT_DATA_DIR,
    FIELDS,
    QA_KEYS,
    REVERSE,
    DataError,
    corpus_qa_name,
    qa_file,
    read_jsonl,
    read_qa_file,
)

DATA_DIR_ENV = "ENGRAM_DATA_DIR"
DEFAULT_CORPUS_DIR = "data/mydocs"
CORPUS_DIR_ENV = "ENGRAM_CORPUS_DIR"
PEOPLE = ("train", "heldout", "all")
NUM_FEWSHOT_EXEMPLARS = 10
# Exemplars about people of a separately seeded population, written by _generate_configs.py.
FEWSHOT_FILE = Path(__file__).resolve().with_name("fewshot_strangers.jsonl")


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


def read_rows(root: Path, name: str, task: str, hint: str, keys=QA_KEYS) -> list[dict]:
    """Every row of ``root/qa/<name>.jsonl``, each checked against the data contract."""
    if not root.is_dir():
        raise BiosDataError(f"{task} data directory {root} does not exist; {hint}")
    if not qa_file(root, name).is_file():
        raise BiosDataError(f"{task} data directory {root} is malformed: {qa_file(root, name)} is missing; {hint}")
    try:
        return read_qa_file(root, name, keys)
    except DataError as exc:
        raise BiosDataError(f"{task} data directory {root} is malformed: {exc}") from None


def fewshot_exemplars(field: str, all_questions: str, k: int = NUM_FEWSHOT_EXEMPLARS) -> list[dict]:
    """``k`` QA rows about strangers whose names occur in no question of the data
    (``all_questions``, joined); their options follow the data's protocol."""
    candidates = [r for r in read_jsonl(FEWSHOT_FILE) if r["field"] == field]
    return [{k_: r[k_] for k_ in QA_KEYS} for r in candidates if r["name"] not in all_questions][:k]


def load_bios_qa(
    field: str, people: str = "train", data_dir: str | None = None, fewshot: bool = False, **_: object
) -> datasets.DatasetDict:
    """``custom_dataset`` of every bios_qa task: ``qa/<field>.jsonl`` of one split as ``test``,
    plus a ``fewshot`` split of strangers where the task asks for exemplars.

    lm-eval passes the task's ``metadata`` (with --metadata's keys) and ``dataset_kwargs``.
    """
    if field not in (*FIELDS, REVERSE):
        raise BiosDataError(f"unknown bios_qa field {field!r}; choose from {', '.join((*FIELDS, REVERSE))}")
    if people not in PEOPLE:
        raise BiosDataError(f"unknown people split {people!r}; choose from {', '.join(PEOPLE)}")
    root = resolve_data_dir(data_dir)
    all_rows = read_rows(root, field, "bios_qa", _fix_hint(root))
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


def load_corpus_qa(
    people: str = "train", corpus_dir: str | None = None, docs_dir: str | None = None, **_: object
) -> datasets.DatasetDict:
    """``custom_dataset`` of the corpus_qa tasks: ``qa/corpus.jsonl`` written by
    ``generate_data.py corpus``; ``heldout`` rows are paraphrases never trained on.
    The directory is --metadata's corpus_dir, else $ENGRAM_CORPUS_DIR, else data/mydocs."""
    # docs_dir and $ENGRAM_DOCS_DIR: the names before 2.3, read until 0.2.
    root = Path(
        corpus_dir
        or docs_dir
        or os.environ.get(CORPUS_DIR_ENV)
        or os.environ.get("ENGRAM_DOCS_DIR")
        or DEFAULT_CORPUS_DIR
    )
    hint = f"run `python generate_data.py corpus --out {root} ...`, or point {CORPUS_DIR_ENV} / --metadata corpus_dir at its output"
    rows = [
        r
        for r in read_rows(root, corpus_qa_name(root), "corpus_qa", hint, CORPUS_QA_KEYS)
        if people == "all" or r["split"] == people
    ]
    if not rows:
        raise BiosDataError(f"corpus_qa data directory {root} has no {people!r} questions; {hint}")
    return datasets.DatasetDict({"test": datasets.Dataset.from_list([{k: r[k] for k in CORPUS_QA_KEYS} for r in rows])})
