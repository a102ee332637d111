"""Memorize your own documents: chunks -> LLM-written QA at many temperatures -> the same
train/QA layout as bioS, so the same recipes and evaluation apply.

    DIR/train/chunks.jsonl     {"text": ...} the source chunks
    DIR/train/qa_train.jsonl   {"text": "Question: ...\\nAnswer: ..."} QA from the training temperatures
    DIR/qa/docs.jsonl          four-option questions: split "train" (trained) or "heldout"
                               (paraphrases from temperatures never trained)
    DIR/chunks.jsonl           chunk id, source file, character offsets, token count
    DIR/manifest.json          arguments, counts (kept, dropped, duplicates), provenance per row
    DIR.cache/                 one file per finished request (beside DIR, never deleted): a
                               crashed or rate-limited run loses nothing, a rerun does only what is missing

Generation is strict: a reply that is not a JSON list of {"question", "answer"} objects
is dropped and counted, as is every malformed item; near-duplicate pairs are removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from engram_plugin.data.bios import GENERATOR_VERSION, DataError, qa_text, write_jsonl
from engram_plugin.data.options import NUM_CHOICES, PROTOCOL, OptionSampler, make_choices

STYLES = ("simple", "detailed", "reverse")
DOCS_GENERATOR = "llm-engram/generate_data docs"
SUFFIXES = (".txt", ".md")

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


# --------------------------------------------------------------------------- inputs and chunks


@dataclass(frozen=True)
class Chunk:
    id: str
    source: str
    start: int  # character offsets in the source text
    end: int
    text: str
    num_tokens: int


def read_inputs(paths: Sequence[str | os.PathLike]) -> list[tuple[str, str]]:
    """(path, text) of every .txt / .md file given or inside a given folder, sorted."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
        elif path.is_file():
            if path.suffix.lower() not in SUFFIXES:
                raise DataError(
                    f"cannot read {path}: only {', '.join(SUFFIXES)} files are supported; convert it to text"
                )
            files.append(path)
        else:
            raise DataError(f"input {path} does not exist; pass files or folders of .txt / .md documents")
    docs = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"cannot read {path} ({exc}); pass UTF-8 text files") from exc
        if text.strip():
            docs.append((str(path), text))
    if not docs:
        raise DataError(f"no text found in {', '.join(map(str, paths))}; pass non-empty .txt / .md files")
    return docs


_SENTENCE = re.compile(r"[^.!?\n]+(?:[.!?]+|\n+|$)\s*")


def sentences(text: str) -> list[tuple[int, int]]:
    """Character spans of sentences (ends at . ! ? or a line break), covering the text."""
    spans = [(m.start(), m.end()) for m in _SENTENCE.finditer(text) if m.group().strip()]
    return spans


def chunk_text(source: str, text: str, tokenizer, chunk_tokens: int) -> list[Chunk]:
    """Consecutive sentences up to ``chunk_tokens`` tokens of the generator's tokenizer;
    a sentence is split (at token boundaries) only when it alone is longer than that."""
    chunks: list[Chunk] = []
    cur_start, cur_end, cur_tokens = None, None, 0

    def flush():
        nonlocal cur_start, cur_end, cur_tokens
        if cur_start is not None:
            body = text[cur_start:cur_end]
            chunks.append(
                Chunk(f"{Path(source).name}:{cur_start}", source, cur_start, cur_end, body.strip(), cur_tokens)
            )
        cur_start, cur_end, cur_tokens = None, None, 0

    for start, end in sentences(text):
        n = len(tokenizer.encode(text[start:end], add_special_tokens=False))
        if n > chunk_tokens:  # a sentence longer than a chunk: cut it by tokens
            flush()
            enc = tokenizer(text[start:end], add_special_tokens=False, return_offsets_mapping=True)
            offsets = enc["offset_mapping"]
            for i in range(0, len(offsets), chunk_tokens):
                piece = offsets[i : i + chunk_tokens]
                s, e = start + piece[0][0], start + piece[-1][1]
                chunks.append(Chunk(f"{Path(source).name}:{s}", source, s, e, text[s:e].strip(), len(piece)))
            continue
        if cur_tokens + n > chunk_tokens:
            flush()
        if cur_start is None:
            cur_start = start
        cur_end, cur_tokens = end, cur_tokens + n
    flush()
    return chunks


def temperature_schedule(count: int = 9, low: float = 0.01, high: float = 1.2) -> list[float]:
    """``count`` evenly spaced temperatures from ``low`` to ``high`` (both included)."""
    if count < 1 or low < 0 or high < low:
        raise DataError(
            f"bad temperature schedule ({count} from {low} to {high}); use e.g. --temperatures 9 --temp-min 0.01 --temp-max 1.2"
        )
    if count == 1:
        return [round(low, 4)]
    return [round(low + i * (high - low) / (count - 1), 4) for i in range(count)]


def build_prompt(chunk: Chunk, style: str, n: int) -> str:
    return PROMPT.format(instruction=INSTRUCTIONS[style].format(n=n), source=Path(chunk.source).name, chunk=chunk.text)


# --------------------------------------------------------------------------- parsing


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


# --------------------------------------------------------------------------- generators


class Generator:
    """Answers prompts at a temperature; ``on_reply(i, text)`` is called as each one
    finishes, so finished work is kept even when a later request fails."""

    spec: str
    tokenizer = None

    def generate(self, prompts: list[str], temperature: float, seeds: list[int], on_reply) -> None:
        raise NotImplementedError


class HFGenerator(Generator):
    """``hf:PATH``: a local transformers model, batched sampling on the best device."""

    def __init__(self, path: str, batch_size: int = 8, max_new_tokens: int = 256):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if not Path(path).exists():
            raise DataError(f"generator model {path} does not exist; pass hf:PATH to a local model folder")
        self.spec = f"hf:{path}"
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(path).to(self.device).eval()
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens

    def _render(self, prompt: str) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
        return prompt + "\n"

    def generate(self, prompts: list[str], temperature: float, seeds: list[int], on_reply) -> None:
        import torch

        for i in range(0, len(prompts), self.batch_size):
            batch = [self._render(p) for p in prompts[i : i + self.batch_size]]
            enc = self.tokenizer(batch, return_tensors="pt", padding=True).to(self.device)
            torch.manual_seed(seeds[i])
            with torch.no_grad():
                ids = self.model.generate(
                    **enc,
                    do_sample=temperature > 0,
                    temperature=max(temperature, 1e-5),
                    top_p=1.0,
                    max_new_tokens=self.max_new_tokens,
                    pad_token_id=self.tokenizer.pad_token_id,
                )
            texts = self.tokenizer.batch_decode(ids[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
            for j, text in enumerate(texts):
                on_reply(i + j, text)


class OpenAIGenerator(Generator):
    """``openai:URL``: any OpenAI-compatible chat-completions endpoint (vLLM, llama.cpp,
    TGI, a hosted API), with concurrency, timeouts and retries with backoff."""

    def __init__(self, url: str, model: str, api_key_env: str = "OPENAI_API_KEY", concurrency: int = 4,
                 timeout: float = 60.0, retries: int = 5, backoff: float = 1.0, tokenizer=None):  # fmt: skip
        self.spec = f"openai:{url}#{model}"
        self.url = url.rstrip("/") + ("" if url.rstrip("/").endswith("/chat/completions") else "/chat/completions")
        self.model, self.key = model, os.environ.get(api_key_env, "")
        self.concurrency, self.timeout, self.retries, self.backoff = concurrency, timeout, retries, backoff
        self.tokenizer = tokenizer
        self.requests_sent = 0

    def _one(self, prompt: str, temperature: float, seed: int) -> str:
        body = json.dumps({"model": self.model, "messages": [{"role": "user", "content": prompt}],
                           "temperature": temperature, "seed": seed}).encode()  # fmt: skip
        headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {self.key}"} if self.key else {})}
        for attempt in range(self.retries + 1):
            self.requests_sent += 1
            try:
                req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    return json.loads(resp.read())["choices"][0]["message"]["content"]
            except urllib.error.HTTPError as exc:
                if exc.code not in (408, 409, 429) and exc.code < 500 or attempt == self.retries:
                    raise DataError(f"{self.url} answered HTTP {exc.code}: {exc.read()[:200]!r}") from exc
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                if attempt == self.retries:
                    raise DataError(f"cannot reach {self.url} ({exc}); check --generator and the server") from exc
            time.sleep(self.backoff * 2**attempt)
        raise AssertionError("unreachable")

    def generate(self, prompts: list[str], temperature: float, seeds: list[int], on_reply) -> None:
        error = None
        with ThreadPoolExecutor(self.concurrency) as pool:
            futures = {pool.submit(self._one, p, temperature, s): i for i, (p, s) in enumerate(zip(prompts, seeds))}
            for future in as_completed(futures):
                try:
                    on_reply(futures[future], future.result())
                except DataError as exc:  # keep collecting what did finish, then report
                    error = error or exc
        if error:
            raise error


def make_generator(spec: str, model: str | None = None, tokenizer: str | None = None, **kwargs) -> Generator:
    kind, _, target = spec.partition(":")
    if kind == "hf" and target:
        return HFGenerator(target)
    if kind == "openai" and target:
        tok = None
        if tokenizer:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(tokenizer)
        return OpenAIGenerator(target, model or "default", tokenizer=tok, **kwargs)
    raise DataError(f"unknown generator {spec!r}; use hf:PATH or openai:URL (with --model NAME)")


# --------------------------------------------------------------------------- the run


def _cache_key(spec: str, prompt: str, temperature: float, seed: int) -> str:
    return hashlib.sha256(json.dumps([spec, prompt, temperature, seed]).encode()).hexdigest()


def generate_docs(
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
) -> dict:
    """Chunk the documents, ask the generator at every temperature, keep the valid
    pairs, and write the layout atomically. Finished requests are cached in ``cache``
    (default ``<out>.cache``), which survives failed or interrupted runs."""
    out = Path(out)
    cache = Path(cache) if cache else Path(f"{out}.cache")
    unknown = [s for s in styles if s not in STYLES]
    if unknown or not styles:
        raise DataError(f"unknown style {', '.join(unknown) or '(none)'}; choose from {', '.join(STYLES)}")
    if chunk_tokens <= 0 or tokens_per_question <= 0:
        raise DataError("--chunk-tokens and --tokens-per-question must be positive integers")
    if not 0 <= heldout_temperatures < len(temperatures):
        raise DataError(f"--heldout-temperatures must be in [0, {len(temperatures)}) (got {heldout_temperatures})")
    if out.exists() and any(out.iterdir()):
        manifest = out / "manifest.json"
        previous = manifest.exists() and json.loads(manifest.read_text()).get("generator") == DOCS_GENERATOR
        if not previous:
            raise DataError(f"output directory {out} exists and is not a previous docs output; choose another --out")
        if not overwrite:
            raise DataError(f"output directory {out} already holds a dataset; pass --overwrite to replace it")
    docs = read_inputs(inputs)
    tokenizer = generator.tokenizer
    if tokenizer is None:
        raise DataError("the generator has no tokenizer to chunk by; for openai: pass --tokenizer PATH")
    chunks = [c for path, text in docs for c in chunk_text(path, text, tokenizer, chunk_tokens)]
    # The held-out temperatures are spread over the schedule, seeded.
    heldout_t = set(random.Random(f"{seed}:heldout-t").sample(list(temperatures), heldout_temperatures))

    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"cannot create the cache {cache} ({exc.strerror}); choose a writable --out or --cache"
        ) from exc
    names = ("requests_sent", "requests_cached", "generations_malformed", "items_invalid", "pairs_without_distractors")
    counts: Counter = Counter(dict.fromkeys(names, 0))  # every count in the manifest, zeros too
    rows: list[dict] = []
    jobs = [(c, s, t) for t in temperatures for s in styles for c in chunks]
    bar = tqdm(total=len(jobs), desc="generate", unit="request", disable=not progress)
    for temperature in temperatures:
        for style in styles:
            prompts = [build_prompt(c, style, max(1, round(c.num_tokens / tokens_per_question))) for c in chunks]
            keys = [_cache_key(generator.spec, p, temperature, seed) for p in prompts]
            todo = [i for i, k in enumerate(keys) if not (cache / f"{k}.json").exists()]
            counts["requests_cached"] += len(prompts) - len(todo)

            def store(j: int, reply: str, keys=keys, todo=todo):
                key = keys[todo[j]]
                tmp = cache / f".{key}.tmp"
                tmp.write_text(json.dumps({"reply": reply}))
                os.replace(tmp, cache / f"{key}.json")  # a crash never leaves half a file
                counts["requests_sent"] += 1

            if todo:
                # Each request's seed comes from its own key: a resumed run asks exactly what a full run would.
                generator.generate([prompts[i] for i in todo], temperature, [int(keys[i][:8], 16) for i in todo], store)
            for chunk, key in zip(chunks, keys):
                reply = json.loads((cache / f"{key}.json").read_text())["reply"]
                try:
                    pairs, invalid = parse_pairs(reply)
                except ValueError:
                    counts["generations_malformed"] += 1
                    continue
                counts["items_invalid"] += invalid
                split = "heldout" if temperature in heldout_t else "train"
                for pair in pairs:
                    rows.append(
                        {
                            **pair,
                            "chunk": chunk.id,
                            "source": chunk.source,
                            "style": style,
                            "temperature": temperature,
                            "split": split,
                        }
                    )
            bar.update(len(chunks))
            bar.set_postfix(kept=len(rows), dropped=counts["generations_malformed"] + counts["items_invalid"])
    bar.close()
    counts["pairs_parsed"] = len(rows)
    rows, counts["pairs_duplicate"] = dedupe(rows)
    counts["pairs_kept"] = len(rows)
    return _write_docs(out, chunks, rows, counts, generator.spec, seed, temperatures, sorted(heldout_t), styles)


def _write_docs(out: Path, chunks, rows, counts, spec, seed, temperatures, heldout_t, styles) -> dict:
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
            continue
        choices, label = make_choices(r["answer"], sampler, rng)
        qa.append({"id": f"docs-{i}", "split": r["split"], "field": r["style"], "question": r["question"],
                   "answer": r["answer"], "choices": choices, "label": label, "chunk": r["chunk"],
                   "temperature": r["temperature"]})  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    tmp.chmod(0o755)
    try:
        (tmp / "train").mkdir()
        (tmp / "qa").mkdir()

        write_jsonl(tmp / "chunks.jsonl", [c.__dict__ for c in chunks])
        write_jsonl(tmp / "train/chunks.jsonl", [{"text": c.text} for c in chunks])
        write_jsonl(
            tmp / "train/qa_train.jsonl",
            [{"text": qa_text(r["question"], r["answer"])} for r in rows if r["split"] == "train"],
        )
        write_jsonl(tmp / "qa/docs.jsonl", qa)
        manifest = {
            "generator": DOCS_GENERATOR,
            "generator_version": GENERATOR_VERSION,
            "model": spec,
            "seed": seed,
            "temperatures": list(temperatures),
            "heldout_temperatures": heldout_t,
            "styles": list(styles),
            "options": PROTOCOL.replace(
                "values of the same field held by other people", "answers of other questions of the same style"
            ),
            "counts": {
                "chunks": len(chunks),
                **dict(sorted(counts.items())),
                "qa_rows": len(qa),
                "qa_train": sum(r["split"] == "train" for r in qa),
                "qa_heldout": sum(r["split"] == "heldout" for r in qa),
            },  # fmt: skip
            "provenance": [
                {"id": q["id"], "chunk": q["chunk"], "style": q["field"], "temperature": q["temperature"]} for q in qa
            ],
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        if out.exists():
            out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest
