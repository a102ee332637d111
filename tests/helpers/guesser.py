"""A guesser that knows nothing about who is who: it counts how often each option occurs
in the dataset's training files and picks the most frequent (ties split evenly).

If the options of a dataset are fair, it scores chance (1/4) on every file and split.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import ahocorasick


def training_text(data_dir: Path) -> str:
    texts = []
    for path in sorted((data_dir / "train").glob("*.jsonl")):
        with path.open(encoding="utf-8") as f:
            texts.extend(json.loads(line)["text"] for line in f)
    return "\n".join(texts)


def occurrence_counts(text: str, strings: set[str]) -> Counter:
    """Occurrences of every string in ``text`` (overlapping ones too), in one pass."""
    automaton = ahocorasick.Automaton()
    for s in strings:
        automaton.add_word(s, s)
    automaton.make_automaton()
    return Counter(value for _, value in automaton.iter(text))


def frequency_guesser(data_dir: Path, qa_files: list[str] | None = None) -> dict[str, dict[str, float]]:
    """``{qa file stem: {split: expected accuracy}}`` of the most-frequent-option guesser."""
    data_dir = Path(data_dir)
    paths = (
        [data_dir / "qa" / f"{n}.jsonl" for n in qa_files] if qa_files else sorted((data_dir / "qa").glob("*.jsonl"))
    )
    rows = {p.stem: [json.loads(line) for line in p.read_text("utf-8").splitlines()] for p in paths}
    counts = occurrence_counts(training_text(data_dir), {c for rs in rows.values() for r in rs for c in r["choices"]})
    scores: dict[str, dict[str, float]] = {}
    for name, rs in rows.items():
        credit, total = defaultdict(float), Counter()
        for r in rs:
            top = max(counts[c] for c in r["choices"])
            winners = [i for i, c in enumerate(r["choices"]) if counts[c] == top]
            credit[r["split"]] += (r["label"] in winners) / len(winners)
            total[r["split"]] += 1
        scores[name] = {s: credit[s] / total[s] for s in sorted(total)}
    return scores
