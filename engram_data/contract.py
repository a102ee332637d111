"""The data contract: the on-disk layout that generate_data.py writes and every reader relies on.

    DIR/people.jsonl                      one row per person (attributes, split, texts, QA columns)
    DIR/train/<variant>.jsonl             {"text": ...} training text, one file per text variant
    DIR/train/qa_train.jsonl              QA text of ``train``-split people (mixed training)
    DIR/train/qa_reverse_train.jsonl      reverse QA text of ``train``-split people (a reversal remedy)
    DIR/qa/<field>.jsonl, qa/reverse.jsonl  four-option questions (QA_KEYS), fixed choices and label
    DIR/manifest.json                     generator, version, seed, counts, sha256 of every file

A user's documents (``generate_data.py corpus``) get the same shape: ``train/*.jsonl`` to
train on and ``qa/corpus.jsonl`` to evaluate (``qa/docs.jsonl`` before data version 2.3).

Every part reads data through this module: the generator, the documents pipeline, the
evaluation package (``engram_eval``), the plugin, the lm-eval task utils and the run glue.
Which part may import which other is tests/test_layout.py's ``ALLOWED``; docs/layout.md
says it in words.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

# The six attributes of a person (the "fields"); a text variant is something else.
FIELDS = ("birth_date", "birth_city", "university", "major", "employer", "company_city")
SPLITS = ("train", "heldout")  # whose QA may be trained, and whose is only ever evaluated
# Physics of LM 3.1's biography variants (docs/data.md); the default: bioS_v1's three columns.
DEFAULT_VARIANTS = ("bioS", "bioS_fullname", "bioS_multi5_permutes")
VARIANTS = (
    "bioS",
    "bioS_fullname",
    "bioS_single_permute1",
    "bioS_single_permute5",
    "bioS_multi5",
    "bioS_multi5_permutes",
    "bioS_multi5_permutes_fullname",
)
# Names a variant had before (data version 2.6 took the paper's names: single + permute1 is
# one biography in one shuffled order). A reader maps them with canonical_variant.
VARIANT_ALIASES = {"bioS_permute": "bioS_single_permute1"}
# The reversal remedies' texts (reversal.py): they state values before names, so they are kept
# out of VARIANTS (make reproduce, the subject-first checks) and asked for by name.
REVERSAL_VARIANTS = ("bioS_multi5_permutes_value_first", "bioS_multi5_permutes_entity_reversed")
TEXT_VARIANTS = VARIANTS + REVERSAL_VARIANTS
MULTI_VARIANTS = (
    "bioS_single_permute5",
    "bioS_multi5",
    "bioS_multi5_permutes",
    "bioS_multi5_permutes_fullname",
    *REVERSAL_VARIANTS,
)
# Column prefixes of bioS_v1's QA columns in people.jsonl: bdate_q / bdate_a, ...
QA_PREFIX = {"birth_date": "bdate", "birth_city": "bcity"} | {f: f for f in FIELDS[2:]}
REVERSE = "reverse"  # qa/reverse.jsonl: name the person from birth date and city
NUM_CHOICES = 4
CHANCE = 1 / NUM_CHOICES  # a four-option question answered at random
QA_KEYS = ("id", "person_id", "split", "field", "question", "answer", "choices", "label")
# A documents dataset (generate_data.py corpus): qa/corpus.jsonl, rows about chunks, not people.
CORPUS_QA = "corpus"
LEGACY_CORPUS_QA = "docs"  # its name before data version 2.3 (the word clashed with the docs site), still read
CORPUS_QA_KEYS = tuple(k for k in QA_KEYS if k != "person_id")
DEFAULT_DATA_DIR = "data/bios"  # where generate_data.py writes, and every reader looks, by default
# The lm-eval tasks a run is scored on unless told otherwise: trained QA, extraction, reversal.
DEFAULT_TASKS = ("bios_qa", "bios_qa_heldout", "bios_qa_reverse")

# 2.0: options a frequency-only guesser cannot tell apart; 2.1: ablation variants, --gender,
# --fields-dir; 2.2: reversal remedies (REVERSAL_VARIANTS, train/qa_reverse_train.jsonl);
# 2.3: a documents dataset's questions in qa/corpus.jsonl (qa/docs.jsonl before; both read);
# 2.6: the paper's variant names (bioS_permute is bioS_single_permute1) and bioS_single_permute5.
# Readers refuse data of an older major version (its numbers mean something else).
GENERATOR_VERSION = "2.6"
MANIFEST = "manifest.json"
PEOPLE = "people.jsonl"
QA_TRAIN = "qa_train"
QA_REVERSE_TRAIN = "qa_reverse_train"  # reverse QA text of train people: a reversal remedy to train on


class DataError(Exception):
    """Bad input or output for the data tools; the message says how to fix it."""


def canonical_variant(name: str) -> str:
    """A variant's name today (``bioS_permute`` -> ``bioS_single_permute1``)."""
    return VARIANT_ALIASES.get(name, name)


def train_file(root: str | os.PathLike, name: str) -> Path:
    return Path(root) / "train" / f"{name}.jsonl"  # a text variant, qa_train, ..., or a documents file


def qa_file(root: str | os.PathLike, name: str) -> Path:
    return Path(root) / "qa" / f"{name}.jsonl"  # a field, reverse, or corpus


def corpus_qa_name(root: str | os.PathLike) -> str:
    """The QA file name of a documents dataset: ``corpus``, or ``docs`` for one written before 2.3."""
    if not qa_file(root, CORPUS_QA).exists() and qa_file(root, LEGACY_CORPUS_QA).exists():
        return LEGACY_CORPUS_QA
    return CORPUS_QA


def qa_prompt(question: str) -> str:
    """The prompt every QA consumer uses: training text, lm-eval tasks, the plugin."""
    return f"Question: {question}\nAnswer:"


def qa_text(question: str, answer: str) -> str:
    return f"{qa_prompt(question)} {answer}"


def qa_row_problem(row: object, keys: Sequence[str] = QA_KEYS) -> str | None:
    """What is wrong with one row of ``qa/*.jsonl``, or None if it has ``keys``, four
    distinct text choices, a label in range whose choice is the answer, and a known split."""
    if not isinstance(row, dict):
        return "a row is not a JSON object"
    missing = [k for k in keys if k not in row]
    if missing:
        return f"a row lacks {', '.join(missing)}"
    choices, label = row["choices"], row["label"]
    if not (isinstance(choices, list) and len(choices) == NUM_CHOICES and all(isinstance(c, str) for c in choices)):
        return f"row {row['id']} does not have {NUM_CHOICES} text choices"
    if len(set(choices)) != NUM_CHOICES:
        return f"row {row['id']} repeats a choice"
    if not (isinstance(label, int) and not isinstance(label, bool) and 0 <= label < NUM_CHOICES):
        return f"row {row['id']} has label {label!r}, not 0..{NUM_CHOICES - 1}"
    if choices[label] != row["answer"]:
        return f"row {row['id']}: its answer is not choices[label]"
    if row["split"] not in SPLITS:
        return f"row {row['id']} has split {row['split']!r}, not one of {', '.join(SPLITS)}"
    return None


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def stdlib_line(row: dict) -> bytes:
    return (json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def jsonl_writer():
    """``row -> bytes``: one JSONL line as orjson writes it (compact, UTF-8), or the same bytes
    from the standard library where orjson is not installed (a locked-down GPU image; tested)."""
    try:
        import orjson
    except ImportError:
        return stdlib_line
    return lambda row: orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE)


def write_jsonl(path: Path, rows: Sequence[dict], chunk: int = 8192) -> tuple[int, str]:  # (rows, sha256)
    digest = hashlib.sha256()
    line = jsonl_writer()
    with path.open("wb") as f:
        for start in range(0, len(rows), chunk):
            block = b"".join([line(row) for row in rows[start : start + chunk]])
            digest.update(block)
            f.write(block)
    return len(rows), digest.hexdigest()


def read_manifest(root: str | os.PathLike) -> dict:
    """``root/manifest.json``; DataError if it is missing or not a JSON object."""
    path = Path(root) / MANIFEST
    try:
        manifest = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path} is missing: {root} was not written by generate_data.py; regenerate it") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} is unreadable ({exc}); regenerate {root}") from None
    if not isinstance(manifest, dict):
        raise DataError(f"{path} is not a JSON object; regenerate {root}")
    return manifest


def check_data_version(root: str | os.PathLike) -> None:
    """Refuse data whose options a frequency-only guesser can tell apart (generator < 2.0)."""
    version = str(read_manifest(root).get("generator_version", "1.0"))
    if not version.split(".")[0].isdigit() or int(version.split(".")[0]) < int(GENERATOR_VERSION.split(".")[0]):
        raise DataError(
            f"{root} was written by generate_data {version}, whose distractors a guesser that only counts "
            f"frequencies tells from the answer; regenerate it (make data, or generate_data.py --overwrite)"
        )


def read_qa_file(root: str | os.PathLike, name: str, keys: Sequence[str] = QA_KEYS) -> list[dict]:
    """Every row of ``root/qa/<name>.jsonl``, checked: the data version, the file's row
    count and sha256 against manifest.json (a file cut or edited after generation is
    refused), and each row against the schema. DataError names the file and the fix."""
    root, path = Path(root), qa_file(root, name)
    if not root.is_dir():
        raise DataError(f"data directory {root} does not exist")
    if not path.is_file():
        raise DataError(f"{path} is missing")
    check_data_version(root)
    info = read_manifest(root).get("files", {}).get(f"qa/{name}.jsonl")
    data = path.read_bytes()
    rows, digest = data.count(b"\n"), hashlib.sha256(data).hexdigest()
    if not isinstance(info, dict) or (info.get("rows"), info.get("sha256")) != (rows, digest):
        expected = f"{info.get('rows')} rows" if isinstance(info, dict) else "no entry"
        raise DataError(
            f"{path} does not match {root / MANIFEST} ({rows} rows here, {expected} there, or another sha256): "
            "it was cut or edited after generation; regenerate the data"
        )
    parsed = []
    for number, line in enumerate(data.splitlines(), 1):
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise DataError(f"{path} line {number} is not JSON ({exc}); regenerate the data") from None
        problem = qa_row_problem(row, keys)
        if problem:
            raise DataError(f"{path} line {number}: {problem}; regenerate the data")
        parsed.append(row)
    return parsed
