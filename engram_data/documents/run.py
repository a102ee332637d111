"""The run: chunk, ask the generator at every temperature and style (cached, resumable),
keep the valid, grounded pairs, draw the options, and write the layout atomically."""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm

from engram_data.atomic import atomic_output, check_output_dir
from engram_data.contract import (
    CORPUS_QA,
    GENERATOR_VERSION,
    MANIFEST,
    NUM_CHOICES,
    QA_TRAIN,
    DataError,
    qa_file,
    qa_text,
    train_file,
    write_jsonl,
)
from engram_data.documents.chunks import chunk_text, read_inputs
from engram_data.documents.formats import SKIP_KINDS, skip_key
from engram_data.documents.generators import Generator
from engram_data.documents.qa import (
    GROUNDED_OVERLAP,
    MALFORMED,
    PROMPTS,
    STYLES,
    Malformed,
    build_prompt,
    dedupe,
    grounded,
    names_subject,
    parse_reply,
    reply_budget,
    temperature_schedule,
)
from engram_data.options import OptionSampler, make_choices, protocol

GENERATOR = "llm-engram/generate_data docs"  # the identity in manifest.json that marks our own output
CHUNKS = "chunks"  # chunks.jsonl (provenance) and train/chunks.jsonl (text)
# generated.jsonl: every parsed pair, its checks and its fate (kept, ungrounded, no_subject,
# duplicate, no_distractors), its qa id
GENERATED = "generated"
UNTRAINED_FATES = ("ungrounded", "no_subject")  # not trained unless keep_ungrounded


def _cache_key(spec: str, prompt: str, temperature: float, seed: int, max_tokens: int) -> str:
    return hashlib.sha256(json.dumps([spec, prompt, temperature, seed, max_tokens]).encode()).hexdigest()


def _tally() -> dict:
    return {"requests": 0, "malformed": 0, "malformed_kinds": dict.fromkeys(MALFORMED, 0), "items_invalid": 0}


def generate_corpus(
    inputs: Sequence[str],
    out: str | os.PathLike,
    generator: Generator,
    chunk_tokens: int = 300,
    tokens_per_question: int = 60,
    temperatures: Sequence[float] = tuple(temperature_schedule()),
    heldout_temperatures: int = 2,
    styles: Sequence[str] = STYLES,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = False,
    cache: str | os.PathLike | None = None,
    prompt: str = "few-shot",
    keep_ungrounded: bool = False,
) -> dict:
    """Chunk the documents, ask the generator at every temperature, keep the valid pairs
    (grounded in their chunk and naming their subject, unless ``keep_ungrounded``), and
    write the layout atomically. Finished requests are cached in ``cache`` (default
    ``<out>.cache``), which survives failed or interrupted runs."""
    out = Path(out)
    cache = Path(cache) if cache else Path(f"{out}.cache")
    unknown = [s for s in styles if s not in STYLES]
    if unknown or not styles:
        raise DataError(f"unknown style {', '.join(unknown) or '(none)'}; choose from {', '.join(STYLES)}")
    if prompt not in PROMPTS:
        raise DataError(f"unknown prompt {prompt!r}; choose from {', '.join(PROMPTS)}")
    if chunk_tokens <= 0 or tokens_per_question <= 0:
        raise DataError("--chunk-tokens and --tokens-per-question must be positive integers")
    if not 0 <= heldout_temperatures < len(temperatures):
        raise DataError(f"--heldout-temperatures must be in [0, {len(temperatures)}) (got {heldout_temperatures})")
    check_output_dir(out, GENERATOR, overwrite)  # before any paid-for request; again when writing
    corpus, skipped = read_inputs(inputs, warn=lambda line: print(f"generate_data.py corpus: {line}", file=sys.stderr))
    tokenizer = generator.tokenizer
    if tokenizer is None:
        raise DataError("the generator has no tokenizer to chunk by; for openai: pass --tokenizer PATH")
    chunks = [c for d in corpus for c in chunk_text(d.path, d.text, tokenizer, chunk_tokens, d.page)]
    # The held-out temperatures are spread over the schedule, seeded.
    heldout_t = set(random.Random(f"{seed}:heldout-t").sample(list(temperatures), heldout_temperatures))

    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"cannot create the cache {cache} ({exc.strerror}); choose a writable --out or --cache"
        ) from exc
    names = (
        "requests_sent",
        "requests_cached",
        "generations_malformed",
        *(f"malformed_{kind}" for kind in MALFORMED),
        "items_invalid",
        "pairs_ungrounded",
        "pairs_no_subject",
        "pairs_without_distractors",
        *(f"replies_{finish}" for finish in ("stop", "length", "repetition")),
    )
    counts: Counter = Counter(dict.fromkeys(names, 0))  # every count in the manifest, zeros too
    counts["files_read"] = len(corpus)
    for kind in SKIP_KINDS:  # item by item: a Counter's |= would drop the zeros
        counts[skip_key(kind)] = skipped[kind]
    rows: list[dict] = []
    by_t: dict[str, dict] = {}  # per temperature (and per style in it): requests, malformed replies, invalid items
    jobs = [(c, s, t) for t in temperatures for s in styles for c in chunks]
    bar = tqdm(total=len(jobs), desc="generate", unit="request", disable=not progress)
    for temperature in temperatures:
        for style in styles:
            asked = [max(1, round(c.num_tokens / tokens_per_question)) for c in chunks]
            prompts = [build_prompt(c, style, n, prompt) for c, n in zip(chunks, asked)]
            caps = [reply_budget(style, n) for n in asked]
            keys = [_cache_key(generator.spec, p, temperature, seed, cap) for p, cap in zip(prompts, caps)]
            todo = [i for i, k in enumerate(keys) if not (cache / f"{k}.json").exists()]
            counts["requests_cached"] += len(prompts) - len(todo)

            def store(j: int, reply: str, finish: str = "stop", keys=keys, todo=todo):
                key = keys[todo[j]]
                tmp = cache / f".{key}.tmp"
                tmp.write_text(json.dumps({"reply": reply, "finish": finish}))
                os.replace(tmp, cache / f"{key}.json")  # a crash never leaves half a file
                counts["requests_sent"] += 1

            if todo:
                # Each request's seed comes from its own key: a resumed run asks exactly what a full run would.
                generator.generate(
                    [prompts[i] for i in todo],
                    temperature,
                    [int(keys[i][:8], 16) for i in todo],
                    store,
                    max_tokens=[caps[i] for i in todo],
                )
            at = by_t.setdefault(str(temperature), {**_tally(), "by_style": {}})
            tallies = (at, at["by_style"].setdefault(style, _tally()))
            for tally in tallies:
                tally["requests"] += len(chunks)
            for chunk, key in zip(chunks, keys):
                cached = json.loads((cache / f"{key}.json").read_text())
                finish = cached.get("finish", "stop")  # a cache from before finish reasons: stopped
                counts[f"replies_{finish}"] += 1
                try:
                    parsed = parse_reply(cached["reply"], finish)
                except Malformed as exc:
                    counts["generations_malformed"] += 1
                    counts[f"malformed_{exc.kind}"] += 1
                    for tally in tallies:
                        tally["malformed"] += 1
                        tally["malformed_kinds"][exc.kind] += 1
                    continue
                counts["items_invalid"] += parsed.invalid
                for tally in tallies:
                    tally["items_invalid"] += parsed.invalid
                split = "heldout" if temperature in heldout_t else "train"
                for pair in parsed.pairs:
                    row = {
                        **pair,
                        "chunk": chunk.id,
                        "source": chunk.source,
                        "page": chunk.page,
                        "style": style,
                        "temperature": temperature,
                        "split": split,
                        "reply_form": parsed.form,
                        "grounded": grounded(pair["answer"], chunk.text, pair["question"]),
                        # reverse questions ask for the subject: exempt
                        "names_subject": style == "reverse" or names_subject(pair["question"], chunk.text),
                    }
                    counts["pairs_ungrounded"] += not row["grounded"]
                    counts["pairs_no_subject"] += not row["names_subject"]
                    if not keep_ungrounded and not row["grounded"]:
                        row["fate"] = "ungrounded"
                    elif not keep_ungrounded and not row["names_subject"]:
                        row["fate"] = "no_subject"
                    rows.append(row)
            bar.update(len(chunks))
            bar.set_postfix(kept=len(rows), dropped=counts["generations_malformed"] + counts["items_invalid"])
    bar.close()
    counts["pairs_parsed"] = len(rows)
    # Of duplicates across splits the trained pair stays and the held-out one goes: a held-out
    # question must never have trained, and a fact asked at a trained temperature must train.
    trainable = [r for r in rows if "fate" not in r]
    kept, counts["pairs_duplicate"] = dedupe(sorted(trainable, key=lambda r: r["split"] != "train"))
    kept_ids = {id(r) for r in kept}
    for r in trainable:
        r["fate"] = "kept" if id(r) in kept_ids else "duplicate"
    counts["pairs_kept"] = len(kept)
    settings = {
        "prompt": prompt,
        "keep_ungrounded": keep_ungrounded,
        "grounding": {"overlap": GROUNDED_OVERLAP, "span": "twice the answer's words"},
    }
    return _write_corpus(
        out,
        chunks,
        rows,
        counts,
        by_t,
        generator.spec,
        seed,
        temperatures,
        sorted(heldout_t),
        styles,
        overwrite,
        settings,
    )


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


def _write_corpus(
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
