"""The documents study's truth: who each document is about, and everything the generator
wrote judged against that person's true facts (per arm: its trained pairs, their truth, the
facts they cover; per temperature: malformed, grounded, paraphrased, true / wrong / other)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engram_data.contract import FIELDS, PEOPLE, QA_TRAIN, read_jsonl, read_manifest, train_file
from engram_data.documents.checks import states
from engram_run.studies.common import text_size
from engram_run.studies.corpus_generator import forward_questions, judge, paraphrased, population_values


@dataclass(frozen=True)
class Truth:
    """The documents' people by id, and the data's own forward question per person and field."""

    people: dict[int, dict]
    questions: dict[tuple[int, str], str]
    values: frozenset = frozenset()  # every name and value of the population, normalized

    def person(self, row: dict) -> dict:
        """The person a generated pair is about: its document's (person-<id>.txt / .pdf)."""
        return self.people[int(Path(row["source"]).stem.split("-")[-1])]

    def judge(self, row: dict) -> str:
        return judge(row, self.person(row), self.questions, self.values)

    def paraphrased(self, row: dict) -> bool:
        return paraphrased(row, self.person(row), self.questions)


def truths(pop: Path) -> Truth:
    people = read_jsonl(pop / PEOPLE)
    return Truth({p["id"]: p for p in people}, forward_questions(pop), population_values(people))


def trained_pairs(data: Path, truth: Truth, with_qa: bool) -> dict:
    """The arm's trained pairs, their truth, and the share of facts a true pair covers."""
    if not with_qa:
        return {"pairs": 0, "pairs_true": None, "coverage_forward": 0.0, "coverage_reverse": 0.0}
    rows = [r for r in read_jsonl(data / "qa" / "corpus.jsonl") if r["split"] == "train"]
    true = [r for r in rows if truth.judge(r) == "true"]

    # a fact is a person's field whose value a true pair's answer states (in any wording)
    fwd = {
        (truth.person(r)["id"], f)
        for r in true
        if r["field"] != "reverse"
        for f in FIELDS
        if states(r["answer"], truth.person(r)[f])
    }
    # bios_qa_reverse gives the birth date and city: a true reverse pair that gives both covers it
    rev = {
        truth.person(r)["id"]
        for r in true
        if r["field"] == "reverse"
        and all(states(r["question"], truth.person(r)[f]) for f in ("birth_date", "birth_city"))
    }
    n = len(truth.people)
    return {
        "pairs": len(rows),
        "pairs_true": len(true) / max(len(rows), 1),
        "coverage_forward": len(fwd) / (n * len(FIELDS)),
        "coverage_reverse": len(rev) / n,
        "qa_chars": text_size(train_file(data, QA_TRAIN)),
    }


def generator_accuracy(data: Path, truth: Truth) -> dict:
    """Per temperature, everything the generator wrote (``generated.jsonl``, before duplicates
    and ungrounded pairs are removed): requests, malformed replies (and their kinds), pairs
    parsed, those grounded in their passage, true / wrong / other, and paraphrased (worded as
    none of the data's questions)."""
    out = {
        t: {
            "requests": c["requests"],
            "malformed": c["malformed"],
            "malformed_kinds": c.get("malformed_kinds", {}),
            **dict.fromkeys(("pairs", "grounded", "true", "wrong", "other", "paraphrased"), 0),
        }
        for t, c in read_manifest(data)["by_temperature"].items()
    }
    for r in read_jsonl(data / "generated.jsonl"):
        t = out[str(r["temperature"])]
        row = {**r, "field": r["style"]}
        t["pairs"] += 1
        t["grounded"] += r.get("grounded", True)
        t["paraphrased"] += truth.paraphrased(row)
        t[truth.judge(row)] += 1
    return dict(sorted(out.items(), key=lambda kv: float(kv[0])))
