"""Asking for question-answer pairs, and keeping only well-formed, distinct ones."""

from __future__ import annotations

import json
import re
from pathlib import Path

from engram_data.contract import DataError
from engram_data.documents.chunks import Chunk

STYLES = ("simple", "detailed", "reverse")
INSTRUCTIONS = {
    "simple": "Write {n} short question-answer pairs about the facts in the passage. Each answer is a few words.",
    "detailed": "Write {n} detailed question-answer pairs about the facts in the passage. Each answer is one full sentence.",
    "reverse": (
        "Write {n} question-answer pairs that ask in the reverse direction: the question states a fact "
        "from the passage and asks which entity (person, organisation, thing, term) it belongs to; "
        "the answer names that entity."
    ),
}
PROMPT = (
    "{instruction}\n"
    "Every question must make sense on its own, without the passage: name the subject, never say "
    '"the passage" or "the text". Answer only from the passage.\n'
    'Reply with a JSON list only, like [{{"question": "...", "answer": "..."}}].\n\n'
    "Passage (from {source}):\n{chunk}"
)


def temperature_schedule(count: int = 9, low: float = 0.01, high: float = 1.2) -> list[float]:
    """``count`` evenly spaced temperatures from ``low`` to ``high`` (both included)."""
    if not (count >= 1 and 0 <= low <= high < float("inf")):  # also refuses NaN
        raise DataError(
            f"bad temperature schedule ({count} from {low} to {high}); use e.g. --temperatures 9 --temp-min 0.01 --temp-max 1.2"
        )
    if count == 1:
        return [round(low, 4)]
    return [round(low + i * (high - low) / (count - 1), 4) for i in range(count)]


def build_prompt(chunk: Chunk, style: str, n: int) -> str:
    return PROMPT.format(instruction=INSTRUCTIONS[style].format(n=n), source=Path(chunk.source).name, chunk=chunk.text)


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)


def parse_pairs(reply: str) -> tuple[list[dict], int]:
    """Strict parse of a reply: (valid pairs, invalid items). A reply that holds no JSON
    list raises ValueError (the whole generation is dropped)."""
    text = reply.strip()
    fenced = _FENCE.search(text)
    if fenced:
        text = fenced.group(1).strip()
    start, end = text.find("["), text.rfind("]")
    if start < 0 or end < start:
        raise ValueError("no JSON list in the reply")
    items = json.loads(text[start : end + 1])  # raises ValueError on malformed JSON
    if not isinstance(items, list):
        raise ValueError("the reply is not a JSON list")
    pairs, invalid = [], 0
    for item in items:
        q = item.get("question") if isinstance(item, dict) else None
        a = item.get("answer") if isinstance(item, dict) else None
        if not (isinstance(q, str) and isinstance(a, str)):
            invalid += 1
            continue
        if "\n" in q.strip() or "\n" in a.strip():  # one question, one answer: no smuggled lines
            invalid += 1
            continue
        q, a = " ".join(q.split()), " ".join(a.split())
        if not (8 <= len(q) <= 400 and q.endswith("?") and q.count("?") == 1 and 1 <= len(a) <= 400):
            invalid += 1
            continue
        if re.search(r"\b(the|this) (passage|text|document)\b", q, re.I):
            invalid += 1  # not self-contained
            continue
        pairs.append({"question": q, "answer": a})
    return pairs, invalid


def _norm(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9 ]", " ", text.lower()).split()


def near_duplicate(a: str, b: str, threshold: float = 0.85) -> bool:
    """Token Jaccard similarity of two questions at or above ``threshold``."""
    ta, tb = set(_norm(a)), set(_norm(b))
    if not ta or not tb:
        return ta == tb
    return len(ta & tb) / len(ta | tb) >= threshold


def dedupe(rows: list[dict], threshold: float = 0.85) -> tuple[list[dict], int]:
    """Drop pairs whose question nearly repeats an earlier one of the same chunk and whose
    answer is the same (normalized). Returns (kept, removed)."""
    kept: list[dict] = []
    by_chunk: dict[str, list[dict]] = {}
    removed = 0
    for row in rows:
        seen = by_chunk.setdefault(row["chunk"], [])
        ans = " ".join(_norm(row["answer"]))
        if any(
            " ".join(_norm(k["answer"])) == ans and near_duplicate(k["question"], row["question"], threshold)
            for k in seen
        ):
            removed += 1
            continue
        seen.append(row)
        kept.append(row)
    return kept, removed
