"""The layout a documents run writes, all at once: the chunks, the trained pairs, the
four-option questions (distractors drawn per style and split), every generated pair with its
fate, and ``manifest.json`` with the counts per temperature and style."""

from __future__ import annotations

import json
import random
from pathlib import Path

from engram_data.atomic import atomic_output
from engram_data.contract import (
    CORPUS_QA,
    GENERATOR_VERSION,
    MANIFEST,
    NUM_CHOICES,
    QA_TRAIN,
    qa_file,
    qa_text,
    train_file,
    write_jsonl,
)
from engram_data.options import OptionSampler, make_choices, protocol

GENERATOR = "llm-engram/generate_data docs"  # the identity in manifest.json that marks our own output
CHUNKS = "chunks"  # chunks.jsonl (provenance) and train/chunks.jsonl (text)
# generated.jsonl: every parsed pair, its checks and its fate (kept, ungrounded, no_subject,
# duplicate, no_distractors), its qa id
GENERATED = "generated"


def _per_temperature(by_t: dict, generated: list[dict]) -> dict:
    """by_temperature in the manifest: each temperature's request tallies with its pairs'
    checks and fates, overall and per style."""

    def pairs(rows):
        return {
            "pairs_parsed": len(rows),
            "grounded": sum(r["grounded"] for r in rows),
            "ungrounded": sum(not r["grounded"] for r in rows),
            "no_subject": sum(not r["names_subject"] for r in rows),
            "qa_rows": sum(r["fate"] == "kept" for r in rows),
        }

    out = {}
    for t, tally in by_t.items():
        at = [r for r in generated if str(r["temperature"]) == t]
        styles = {
            style: {**c, **pairs([r for r in at if r["style"] == style])} for style, c in tally["by_style"].items()
        }
        out[t] = {**{k: v for k, v in tally.items() if k != "by_style"}, **pairs(at), "by_style": styles}
    return out


def write_corpus(
    out: Path, chunks, generated, counts, by_t, spec, seed, temperatures, heldout_t, styles, overwrite, settings
) -> dict:
    rows = [r for r in generated if r["fate"] == "kept"]  # in generation order
    rng = random.Random(f"{seed}:choices")
    # Distractors are answers of other questions of the same style and the same split:
    # trained answers occur in qa_train, held-out ones do not, so mixing the splits would
    # let a guesser that only counts occurrences pick the answer.
    answers: dict[tuple[str, str], list[str]] = {}
    for r in rows:
        answers.setdefault((r["style"], r["split"]), []).append(r["answer"])
    samplers = {key: OptionSampler(a) for key, a in answers.items() if len(set(a)) >= NUM_CHOICES}
    qa = []
    for i, r in enumerate(rows):
        sampler = samplers.get((r["style"], r["split"]))
        if sampler is None:
            counts["pairs_without_distractors"] += 1  # too few other answers of this kind
            r["fate"] = "no_distractors"
            continue
        choices, label = make_choices(r["answer"], sampler, rng)
        r["qa_id"] = f"corpus-{i}"
        qa.append(
            {
                "id": f"corpus-{i}",
                "split": r["split"],
                "field": r["style"],
                "question": r["question"],
                "answer": r["answer"],
                "choices": choices,
                "label": label,
                "chunk": r["chunk"],
                "source": r["source"],
                "page": r["page"],
                "temperature": r["temperature"],
            }
        )
    with atomic_output(out, GENERATOR, overwrite) as tmp:
        (tmp / "train").mkdir()
        (tmp / "qa").mkdir()
        qa_train = [{"text": qa_text(r["question"], r["answer"])} for r in rows if r["split"] == "train"]
        files = {}
        for path, file_rows in (
            (tmp / f"{CHUNKS}.jsonl", [c.__dict__ for c in chunks]),
            (train_file(tmp, CHUNKS), [{"text": c.text} for c in chunks]),
            (train_file(tmp, QA_TRAIN), qa_train),
            (qa_file(tmp, CORPUS_QA), qa),
            (tmp / f"{GENERATED}.jsonl", generated),
        ):
            count, sha = write_jsonl(path, file_rows)
            files[str(path.relative_to(tmp))] = {"rows": count, "sha256": sha}
        manifest = {
            "generator": GENERATOR,
            "generator_version": GENERATOR_VERSION,
            "model": spec,
            "seed": seed,
            "temperatures": list(temperatures),
            "heldout_temperatures": heldout_t,
            "styles": list(styles),
            **settings,
            "by_temperature": _per_temperature(by_t, generated),
            "options": protocol("answers of other questions of the same style and split"),
            "counts": {
                "chunks": len(chunks),
                **dict(sorted(counts.items())),
                "qa_rows": len(qa),
                "qa_train": sum(r["split"] == "train" for r in qa),
                "qa_heldout": sum(r["split"] == "heldout" for r in qa),
            },
            "files": files,
            "provenance": [
                {
                    "id": q["id"],
                    "chunk": q["chunk"],
                    "source": q["source"],
                    "page": q["page"],
                    "style": q["field"],
                    "temperature": q["temperature"],
                }
                for q in qa
            ],
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
