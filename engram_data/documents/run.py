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

from engram_data.atomic import check_output_dir
from engram_data.contract import DataError
from engram_data.documents.checks import GROUNDED_OVERLAP, dedupe, grounded, names_subject
from engram_data.documents.chunks import chunk_text, read_inputs
from engram_data.documents.formats import SKIP_KINDS, skip_key
from engram_data.documents.generators import FINISH, Generator
from engram_data.documents.output import GENERATOR, write_corpus
from engram_data.documents.qa import (
    MALFORMED,
    PROMPTS,
    STYLES,
    Malformed,
    build_prompt,
    parse_reply,
    reply_budget,
    temperature_schedule,
)


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
        *(f"replies_{finish}" for finish in FINISH),
    )
    counts: Counter = Counter(dict.fromkeys(names, 0))  # every count in the manifest, zeros too
    counts["files_read"] = len(corpus)
    for kind in SKIP_KINDS:  # item by item: a Counter's |= would drop the zeros
        counts[skip_key(kind)] = skipped[kind]
    rows: list[dict] = []
    by_t: dict[str, dict] = {}  # per temperature (and per style in it): requests, malformed replies, invalid items
    asked = [max(1, round(c.num_tokens / tokens_per_question)) for c in chunks]  # pairs asked of each chunk
    jobs = [(c, s, t) for t in temperatures for s in styles for c in chunks]
    bar = tqdm(total=len(jobs), desc="generate", unit="request", disable=not progress)
    for temperature in temperatures:
        for style in styles:
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
    return write_corpus(
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
