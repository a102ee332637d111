"""Asking for question-answer pairs, reading what a real model writes back, and keeping only
well-formed, grounded, distinct ones.

The prompt (``few-shot``, the default) is a conversation: one fixed worked example of the
style (the instruction and a passage unlike any biography, a lighthouse, then the reply) as an
earlier turn, and the instruction with the chunk as the last; so the wording a model copies
from it is none of the bioS templates'. As one message, a small model answered about the
example's passage instead of its own. ``plain`` is the instruction and the chunk alone, one
message (what the taught generator of ``make corpus-study`` was taught on).

The parser reads a JSON list bare, in a code fence, nested under one key, with text around it,
or cut off after its last complete pair, and one-pair-per-line ``Q:``/``A:`` replies; a reply
it cannot read is ``Malformed`` with a kind: ``empty``, ``no_json``, ``truncated`` (the JSON
starts but never closes, no pair complete), ``wrong_keys`` (JSON objects without question and
answer).

Whether a pair's answer is in its chunk, whether its question names its subject, and whether
it repeats another: the sibling module ``checks``."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from engram_data.contract import DataError
from engram_data.documents.chunks import Chunk

STYLES = ("simple", "detailed", "reverse")
PROMPTS = ("few-shot", "plain")
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
# The worked example of the few-shot prompt: fixed, shipped, about a lighthouse (no person, no
# birth, no university or employer), so no bioS template's wording is in it.
EXAMPLE_PASSAGE = (
    "The Harwick Light stands on Gull Point at the mouth of the Tarrow estuary. Its lamp was lit "
    "for the first time on 4 May 1871, and the keepers left when it was automated in 1962. On a "
    "clear night its beam reaches 22 nautical miles."
)
EXAMPLE_REPLIES = {
    "simple": [
        {"question": "On which headland does the Harwick Light stand?", "answer": "Gull Point"},
        {"question": "When was the lamp of the Harwick Light first lit?", "answer": "4 May 1871"},
        {"question": "How far does the beam of the Harwick Light reach?", "answer": "22 nautical miles"},
    ],
    "detailed": [
        {
            "question": "Where does the Harwick Light stand?",
            "answer": "The Harwick Light stands on Gull Point at the mouth of the Tarrow estuary.",
        },
        {
            "question": "What happened to the Harwick Light in 1962?",
            "answer": "The Harwick Light was automated in 1962 and its keepers left.",
        },
    ],
    "reverse": [
        {"question": "Which lighthouse stands on Gull Point?", "answer": "The Harwick Light"},
        {"question": "Which lighthouse was first lit on 4 May 1871?", "answer": "The Harwick Light"},
    ],
}
# Reply budget: the tokens a pair of each style needs (question, answer, JSON around them), and
# the list's own; a reply is capped at n pairs' worth (``reply_budget``).
PAIR_TOKENS = {"simple": 40, "detailed": 64, "reverse": 44}
LIST_TOKENS = 16


def temperature_schedule(count: int = 9, low: float = 0.01, high: float = 1.2) -> list[float]:
    """``count`` evenly spaced temperatures from ``low`` to ``high`` (both included)."""
    if not (count >= 1 and 0 <= low <= high < float("inf")):  # also refuses NaN
        raise DataError(
            f"bad temperature schedule ({count} from {low} to {high}); use e.g. --temperatures 9 --temp-min 0.01 --temp-max 1.2"
        )
    if count == 1:
        return [round(low, 4)]
    return [round(low + i * (high - low) / (count - 1), 4) for i in range(count)]


def build_prompt(chunk: Chunk, style: str, n: int, prompt: str = "few-shot") -> str | list[dict]:
    """The request for ``n`` pairs of ``style`` about ``chunk``: one user message (``plain``), or
    the chat messages of the few-shot conversation."""
    ask = PROMPT.format(instruction=INSTRUCTIONS[style].format(n=n), source=Path(chunk.source).name, chunk=chunk.text)
    if prompt == "plain":
        return ask
    example = EXAMPLE_REPLIES[style]
    return [
        {
            "role": "user",
            "content": PROMPT.format(
                instruction=INSTRUCTIONS[style].format(n=len(example)), source="harwick.txt", chunk=EXAMPLE_PASSAGE
            ),
        },
        {"role": "assistant", "content": json.dumps(example, ensure_ascii=False)},
        {"role": "user", "content": ask},
    ]


def messages(prompt: str | list[dict]) -> list[dict]:
    """A request's chat messages: a plain prompt is one user message."""
    return prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]


def reply_budget(style: str, n: int) -> int:
    """The most tokens a reply of ``n`` pairs of ``style`` needs."""
    return LIST_TOKENS + n * PAIR_TOKENS[style]


# --------------------------------------------------------------------------- reading a reply

MALFORMED = ("empty", "no_json", "truncated", "wrong_keys")


class Malformed(ValueError):
    """A reply the parser cannot read; ``kind`` is one of ``MALFORMED``."""

    def __init__(self, kind: str, detail: str):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


@dataclass
class Parsed:
    pairs: list[dict]
    invalid: int  # items that were not a valid pair
    form: str  # json | fenced | nested | salvaged (a cut list's complete pairs) | lines


_FENCE = re.compile(r"```[a-zA-Z]*\s*(.*?)(?:```|\Z)", re.S)
_DECODER = json.JSONDecoder(strict=False)  # real models wrap long strings: raw line breaks inside them
_FIELD = r'"{}"\s*:\s*"((?:[^"\\]|\\.)*)"'  # a complete "key": "string" field
_Q = re.compile(r"^\W*(?:\d+\s*[.)])?\W*(?:Q|Question)\s*\d*\s*[:.)]\**\s*(.+?)\s*$", re.I)
_A = re.compile(r"^\W*(?:A|Answer)\s*\d*\s*[:.)]\**\s*(.+?)\s*$", re.I)
_QA_ONE_LINE = re.compile(r"^(.*?\?)\s*\**(?:A|Answer)\s*[:.)]\**\s*(.+)$", re.I)


def _as_items(value):
    """The pair list a decoded JSON value holds: a list, one pair object, or a list nested
    under one key of an object; else None."""
    if isinstance(value, list):
        return value, "json"
    if isinstance(value, dict):
        if isinstance(value.get("question"), str) or isinstance(value.get("answer"), str):
            return [value], "json"  # one pair
        lists = [v for v in value.values() if isinstance(v, list)]
        if len(lists) == 1:
            return lists[0], "nested"
        nested = [v for v in value.values() if isinstance(v, dict)]
        if len(nested) == 1:
            return _as_items(nested[0])
    return None


def _salvage(text: str, start: int) -> list:
    """The complete objects of a JSON list that starts at ``start`` and is cut off, and the
    object it is cut in where its question and answer fields are complete (the cap cut it
    in what came after them: a runaway of extra keys)."""
    items, pos = [], start + 1
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        try:
            value, pos = _DECODER.raw_decode(text, pos)
        except ValueError:
            rest = text[pos:]
            if rest.startswith("{") and "}" not in rest:  # the last object, cut
                fields = [re.search(_FIELD.format(key), rest) for key in ("question", "answer")]
                if all(fields):
                    items.append(
                        {
                            key: json.loads(f'"{m.group(1)}"', strict=False)
                            for key, m in zip(("question", "answer"), fields)
                        }
                    )
            return items
        items.append(value)


def _json(text: str):
    """(items, form) of the first JSON list or object in ``text`` that holds pairs; (None,
    'truncated') where a list starts but never closes; (None, None) where there is no JSON."""
    cut = False
    for pos, ch in enumerate(text):
        if ch not in "[{":
            continue
        try:
            value, _ = _DECODER.raw_decode(text, pos)
        except ValueError:
            if ch == "[" and re.match(r"\[\s*\{", text[pos:]):  # a list of objects that never closes
                items = _salvage(text, pos)
                if items:
                    return items, "salvaged"
                cut = True
            continue
        found = _as_items(value)
        if found is not None and found[0] and isinstance(found[0][0], dict):
            return found
    return None, ("truncated" if cut else None)


def _lines(text: str) -> list[dict]:
    """``Q: ...`` / ``A: ...`` pairs, on two lines or one."""
    items, question = [], None

    def bare(text: str) -> str:  # "quoted" or **bold**
        return text.strip().strip("\"'*").strip()

    for line in text.splitlines():
        line = line.strip()
        q, a = _Q.match(line), _A.match(line)
        if q:
            both = _QA_ONE_LINE.match(q.group(1))
            if both:
                items.append({"question": bare(both.group(1)), "answer": bare(both.group(2))})
                question = None
            else:
                question = bare(q.group(1))
        elif a and question is not None:
            items.append({"question": question, "answer": bare(a.group(1))})
            question = None
    return items


def parse_reply(reply: str, finish: str | None = None) -> Parsed:
    """Read a reply into pairs. Raises ``Malformed`` (a ValueError) where it holds none that
    can be read. ``finish`` is the server's finish reason (``length``: the token cap cut it)."""
    text = reply.strip()
    if not text:
        raise Malformed("empty", "an empty reply")
    items, form = None, None
    for fenced in _FENCE.findall(text):
        items, form = _json(fenced)
        if items is not None:
            form = "fenced" if form == "json" else form
            break
    if items is None:
        items, form = _json(text)
    if items is None:
        lines = _lines(text)
        if lines:
            items, form = lines, "lines"
    if items is None:
        if form == "truncated" or finish in ("length", "repetition"):
            raise Malformed("truncated", "the reply stops before its first pair is complete")
        raise Malformed("no_json", "no JSON list and no Q:/A: lines")
    pairs, invalid = [], 0
    keyed = False
    for item in items:
        if isinstance(item, dict):
            item = {str(k).strip().lower(): v for k, v in item.items()}
            keyed = keyed or ("question" in item and "answer" in item)
        q = item.get("question") if isinstance(item, dict) else None
        a = item.get("answer") if isinstance(item, dict) else None
        if isinstance(a, (int, float)) and not isinstance(a, bool):
            a = str(a)
        if not (isinstance(q, str) and isinstance(a, str)):
            invalid += 1
            continue
        if re.search(r"\n\s*\n", q) or re.search(r"\n\s*\n", a):  # one paragraph each (a wrapped line is fine)
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
    if not keyed and form != "lines":
        raise Malformed("wrong_keys", "JSON objects without question and answer keys")
    return Parsed(pairs, invalid, form)


def parse_pairs(reply: str) -> tuple[list[dict], int]:
    """(valid pairs, invalid items) of a reply; ``Malformed`` (a ValueError) where it has none."""
    parsed = parse_reply(reply)
    return parsed.pairs, parsed.invalid


def runaway(text: str) -> bool:
    """Whether a reply ends in runaway repetition: a unit of 2-40 characters eight times in a
    row, or one character 24 times (``#####...``), at its end."""
    tail = text[-400:]
    return bool(re.search(r"(.)\1{23,}$", tail, re.S) or re.search(r"(.{2,40}?)\1{7,}$", tail, re.S))
