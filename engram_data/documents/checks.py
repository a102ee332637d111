"""The checks on a generated pair: ``grounded`` asks whether the chunk supports
an answer (the answer, normalized: case, punctuation, whitespace, numbers, dates as year month
day, appears in the chunk, or ``GROUNDED_OVERLAP`` of its content words appear within one span
of the chunk at most twice the answer's length); ``names_subject`` asks whether a forward
question names what it asks about (no "Where did she grow up?"); ``dedupe`` drops a pair
that nearly repeats an earlier one of its chunk."""

from __future__ import annotations

import re
from collections import Counter

GROUNDED_OVERLAP = 0.75  # of the answer's content words, within one span of the chunk
_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        "january february march april may june july august september october november december".split()
    )
}
_MONTHS.update({m[:3]: i for m, i in list(_MONTHS.items())})
_MONTHS["sept"] = 9
_NUMBERS = {
    w: str(i)
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen twenty".split()
    )
}
_MONTH = r"(january|february|march|april|may|june|july|august|september|october|november|december|jan|feb|mar|apr|jun|jul|aug|sept|sep|oct|nov|dec)\.?"
_DAY = r"(\d{1,2})(?:st|nd|rd|th)?"
_DATES = (  # -> year month day
    (re.compile(rf"\b{_MONTH}\s+{_DAY},?\s+(\d{{4}})\b"), lambda m: (m[3], _MONTHS[m[1]], m[2])),
    (re.compile(rf"\b{_DAY}\s+(?:of\s+)?{_MONTH},?\s+(\d{{4}})\b"), lambda m: (m[3], _MONTHS[m[2]], m[1])),
    (re.compile(r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b"), lambda m: (m[1], m[2], m[3])),
    (re.compile(rf"\b{_MONTH},?\s+(\d{{4}})\b"), lambda m: (m[2], _MONTHS[m[1]])),
)
STOPWORDS = frozenset(
    "a an the of in on at to is was were are be been and or for by with as from that this it its "
    "he she they his her their him them who what which when where how did does do has had have "
    "s i you we our".split()
)


def normalize(text: str) -> list[str]:
    """Words of ``text`` in one form: lower case, no punctuation, numbers as digits without
    separators or ordinal endings, dates as year month day ("October 2, 1996", "2 Oct 1996" and
    "1996-10-02" all read ``1996 10 2``)."""
    text = text.lower()
    for pattern, parts in _DATES:
        text = pattern.sub(lambda m, parts=parts: " " + " ".join(str(int(p)) for p in parts(m)) + " ", text)
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)  # 1,000 -> 1000
    text = re.sub(r"\b(\d+)(?:st|nd|rd|th)\b", r"\1", text)
    words = re.sub(r"[^a-z0-9]+", " ", text).split()
    return [_NUMBERS.get(w, w) for w in words]


def _in_order(words: list[str], text: list[str]) -> bool:
    """Whether ``words`` (not empty) occur in ``text`` as one run, in order."""
    return f" {' '.join(words)} " in f" {' '.join(text)} "


def states(text: str, value) -> bool:
    """Whether ``text`` states ``value``: the value's normalized words appear in the text's, in
    order ("She was born in Princeton, NJ." states "princeton nj")."""
    words = normalize(str(value))
    return bool(words) and _in_order(words, normalize(text))


def grounded(answer: str, chunk: str, question: str = "", threshold: float = GROUNDED_OVERLAP) -> bool:
    """Whether ``chunk`` supports ``answer``: its normalized words appear in the chunk in order,
    or ``threshold`` of its content words (not ``STOPWORDS``, nor words the question already
    gives, such as the subject a full-sentence answer repeats) appear within one span of the
    chunk at most twice the answer's length."""
    words, text = normalize(answer), normalize(chunk)
    if not words:
        return False
    if _in_order(words, text):
        return True
    n = len(words)
    given = set(normalize(question))
    content = (
        Counter(w for w in words if w not in STOPWORDS and w not in given)
        or Counter(w for w in words if w not in STOPWORDS)
        or Counter(words)
    )
    need, span = sum(content.values()), 2 * n
    best = 0
    for i in range(max(1, len(text) - span + 1)):
        window = Counter(text[i : i + span])
        best = max(best, sum(min(c, window[w]) for w, c in content.items()))
    return best >= threshold * need


_PRONOUN = re.compile(
    r"\b(he|she|they|him|her|hers|his|their|theirs|them|it|its|this (?:person|company|firm|drug|product)|"
    r"the (?:person|individual|man|woman|company|firm|organi[sz]ation|author|subject|employee|student))\b",
    re.I,
)


def names_subject(question: str, chunk: str) -> bool:
    """Whether a forward question names what it asks about: it does unless it refers to its
    subject by a pronoun or a bare role ("she", "their", "the company") and holds no name of
    the chunk (a capitalized word after its first that the chunk contains)."""
    if not _PRONOUN.search(question):
        return True
    chunk_words = set(re.findall(r"[A-Za-z][\w'-]*", chunk))
    names = [w for w in re.findall(r"[A-Za-z][\w'-]*", question)[1:] if w[0].isupper() and w != "I"]
    return any(w.removesuffix("'s") in chunk_words for w in names)


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
