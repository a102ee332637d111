"""The documents pipeline's ``openai:`` backend against a real OpenAI-compatible server:
``transformers serve`` on localhost, serving a small chat model the suite builds (the tiny
Llama with a chat template), through the ``openai`` client library. What a real model sends
back (here: a random model's nonsense) is parsed, dropped and counted, at every temperature.
The stub server in test_documents.py stays for the faults a real server will not produce on
demand (401, 429, 5xx, hangs)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from engram_data.contract import read_jsonl
from engram_data.documents.generators import OpenAIGenerator
from engram_data.documents.run import generate_corpus
from engram_run.runs import serve

TEMPERATURES = [0.01, 1.2]
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}Answer: {% endif %}"
)


@pytest.fixture(scope="module")
def chat_model(tiny_llama, tmp_path_factory) -> Path:
    from transformers import AutoTokenizer, GenerationConfig

    out = tmp_path_factory.mktemp("chat") / "tiny-chat"
    shutil.copytree(tiny_llama, out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(out)
    GenerationConfig(max_new_tokens=48, do_sample=True).save_pretrained(out)  # short replies: a quick test
    return out


@pytest.fixture(scope="module")
def served(chat_model, tmp_path_factory):
    """``transformers serve MODEL`` on a free local port until the module's tests are done."""
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with serve.served(chat_model, log) as url:
        yield url, log


@pytest.mark.slow
def test_documents_through_a_real_server_at_every_temperature(served, chat_model, tmp_path):
    from transformers import AutoTokenizer

    url, log = served
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "drugs.md").write_text(
        "Aspirin reduces fever and relieves mild pain. It thins the blood.\n"
        "Metformin treats type 2 diabetes. It lowers glucose production in the liver.\n"
    )
    gen = OpenAIGenerator(
        url, str(chat_model), concurrency=2, timeout=60, retries=2, tokenizer=AutoTokenizer.from_pretrained(chat_model)
    )
    out = tmp_path / "mydocs"
    manifest = generate_corpus(
        [corpus],
        out,
        gen,
        chunk_tokens=20,
        tokens_per_question=60,
        temperatures=TEMPERATURES,
        heldout_temperatures=1,
        styles=["simple"],
        seed=0,
        overwrite=False,
        progress=False,
    )
    c = manifest["counts"]
    chunks = read_jsonl(out / "chunks.jsonl")
    requests = len(chunks) * len(TEMPERATURES)
    assert len(chunks) >= 2 and c["requests_sent"] == requests and c["requests_cached"] == 0
    # A random model writes no JSON list of pairs: every reply is dropped and counted, none kept.
    assert c["generations_malformed"] == requests and c["qa_rows"] == 0, c
    replies = [json.loads(p.read_text())["reply"] for p in Path(f"{out}.cache").glob("*.json")]
    # Real samples: more different replies than chunks (near-greedy ones may coincide across chunks).
    assert len(replies) == requests and len(set(replies)) > len(chunks)
    # Real sampling: near-greedy at 0.01 gives one reply twice; at 1.2 two draws differ.
    prompt = "Write one question about aspirin."
    assert gen._one(prompt, 0.01, 1, 24) == gen._one(prompt, 0.01, 2, 24)
    assert gen._one(prompt, 1.2, 1, 24) != gen._one(prompt, 1.2, 2, 24)
    # streamed, each reply ends with its reason: the cap of 3 tokens cuts a random model's reply
    assert gen._one(prompt, 1.2, 3, 3)[1] == "length"
    assert "POST /v1/chat/completions" in log.read_text()


@pytest.mark.slow
def test_the_real_model_writes_grounded_pairs_through_transformers_serve(smollm2, tmp_path):
    """The documents path with the real instruct model as its generator, as the study serves it:
    transformers serve, one request at a time, the few-shot prompt, streamed replies capped per
    request. Two biographies, two temperatures: what it writes is read, checked against its
    passage and counted, every count adding up; the temperature applies (the converted model
    samples unless told not to)."""
    from transformers import AutoTokenizer

    from engram_data.documents.record import passages

    docs = tmp_path / "docs"
    docs.mkdir()
    for source, text in passages()[:2]:
        (docs / source).write_text(text + "\n")
    with serve.served(smollm2, tmp_path / "serve.log") as url:
        gen = OpenAIGenerator(url, str(smollm2), concurrency=1, timeout=300, retries=0)
        gen.tokenizer = AutoTokenizer.from_pretrained(smollm2)
        manifest = generate_corpus(
            [docs], tmp_path / "out", gen, temperatures=[0.01, 0.6], heldout_temperatures=0, styles=["simple"]
        )
    c = manifest["counts"]
    assert c["chunks"] == 2 and c["requests_sent"] == 4
    assert c["replies_stop"] + c["replies_length"] + c["replies_repetition"] == 4
    malformed = sum(c[f"malformed_{k}"] for k in ("empty", "no_json", "truncated", "wrong_keys"))
    assert malformed == c["generations_malformed"] < 4  # the real model writes pairs it can read
    generated = read_jsonl(tmp_path / "out" / "generated.jsonl")
    assert len(generated) == c["pairs_parsed"] > 0 and any(g["grounded"] for g in generated)
    fates = {g["fate"] for g in generated}
    assert fates <= {"kept", "duplicate", "ungrounded", "no_subject", "no_distractors"}
    assert sum(g["fate"] == "ungrounded" for g in generated) == c["pairs_ungrounded"]
    by_t = manifest["by_temperature"]
    assert sum(t["by_style"]["simple"]["requests"] for t in by_t.values()) == 4
    replies = {}
    for p in (tmp_path / "out.cache").glob("*.json"):
        replies.setdefault(json.loads(p.read_text())["reply"], 0)
    assert len(replies) == 4  # near-greedy and sampled replies differ: the temperature applied
