"""generate_data.py corpus: strict parsing, exact chunking / temperatures / dedupe / layout,
the openai: backend against a local chat-completions server (failure, retry, resume),
and the hf: backend on a tiny local model (nonsense, dropped and counted)."""

from __future__ import annotations

import json
import re
import shutil
import threading
from collections import Counter
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from helpers.common import run_generate
from helpers.oracle_chat import JsonHandler

from engram_data.contract import DataError, read_jsonl
from engram_data.documents.checks import dedupe, grounded, names_subject, normalize
from engram_data.documents.chunks import chunk_text, read_inputs
from engram_data.documents.formats import SKIP_KINDS, skip_key, without_running_lines
from engram_data.documents.generators import OpenAIGenerator
from engram_data.documents.qa import (
    Malformed,
    parse_pairs,
    parse_reply,
    runaway,
    temperature_schedule,
)
from engram_data.documents.run import generate_corpus
from lm_eval_tasks.utils import load_corpus_qa

DOC = (
    "Aspirin is a nonsteroidal anti-inflammatory drug. It was first synthesized by Felix Hoffmann in 1897. "
    "The usual adult dose for pain is 325 to 650 milligrams every four hours. "
    "It should not be given to children with viral infections because of Reye syndrome. "
    "Ibuprofen is another nonsteroidal anti-inflammatory drug. It was discovered by Stewart Adams in 1961.\n"
    "Paracetamol is not an anti-inflammatory drug. Its maximum daily dose for adults is four grams. "
    "Overdose can cause liver failure. Naproxen lasts longer than ibuprofen and is taken twice a day.\n"
)


# --------------------------------------------------------------------------- parsing


def test_parser_keeps_well_formed_pairs():
    reply = '[{"question": "Who synthesized aspirin?", "answer": "Felix Hoffmann"}, {"question": "When was ibuprofen discovered?", "answer": "1961"}]'
    assert parse_pairs(reply) == (
        [
            {"question": "Who synthesized aspirin?", "answer": "Felix Hoffmann"},
            {"question": "When was ibuprofen discovered?", "answer": "1961"},
        ],
        0,
    )
    fenced = 'Sure!\n```json\n[{"question": "Who  discovered\\tibuprofen?", "answer": " Stewart Adams "}]\n```\nHope it helps.'
    assert parse_pairs(fenced) == ([{"question": "Who discovered ibuprofen?", "answer": "Stewart Adams"}], 0)


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        ("", "empty"),
        ("  \n ", "empty"),
        ("I cannot help with that.", "no_json"),
        ("][", "no_json"),
        ("[1, 2", "no_json"),
        ('[{"question": "Who synthesized aspirin?", "answer": "Felix', "truncated"),
        ('```json\n[\n  {"question": "Who synthesized', "truncated"),
        ('[{"q": "Who synthesized aspirin?", "a": "Felix Hoffmann"}]', "wrong_keys"),
        ('{"pairs": [{"prompt": "Who?", "response": "x"}]}', "wrong_keys"),
    ],
)
def test_parser_names_the_kind_of_a_reply_it_cannot_read(reply, kind):
    with pytest.raises(Malformed) as exc:
        parse_reply(reply)
    assert exc.value.kind == kind and isinstance(exc.value, ValueError)


PAIR = {"question": "Who synthesized aspirin?", "answer": "Felix Hoffmann"}
PAIR2 = {"question": "When was ibuprofen discovered?", "answer": "1961"}


@pytest.mark.parametrize(
    ("reply", "form", "pairs"),
    [
        (json.dumps([PAIR, PAIR2]), "json", [PAIR, PAIR2]),
        ("Here you go:\n" + json.dumps([PAIR]) + "\nLet me know if you need more.", "json", [PAIR]),
        ("```json\n" + json.dumps([PAIR]) + "\n```", "fenced", [PAIR]),
        ('{"pairs": ' + json.dumps([PAIR, PAIR2]) + "}", "nested", [PAIR, PAIR2]),
        ('```\n{"answer": ' + json.dumps([PAIR]) + "}\n```", "nested", [PAIR]),  # under a misleading key
        (json.dumps(PAIR), "json", [PAIR]),  # one pair, no list
        (json.dumps([PAIR, PAIR2])[:-20], "salvaged", [PAIR]),  # cut off: the complete pair stays
        (
            "Q: Who synthesized aspirin?\nA: Felix Hoffmann\n\nQ2: When was ibuprofen discovered?\nA2: 1961",
            "lines",
            [PAIR, PAIR2],
        ),
        ("1. **Question:** Who synthesized aspirin? **Answer:** Felix Hoffmann", "lines", [PAIR]),
        ('Question: "Who synthesized aspirin?"\n\nAnswer: "Felix Hoffmann"', "lines", [PAIR]),
        ('[{"Question": "When was ibuprofen discovered?", "Answer": 1961}]', "json", [PAIR2]),  # keys' case, a number
        # SmolLM2 on a manual page: lines wrapped inside the strings (raw line breaks, not JSON's \n)
        ('[{"question": "Who synthesized\naspirin?", "answer": "Felix\nHoffmann"}]', "json", [PAIR]),
        # ... a runaway of extra keys after a complete pair, cut by the cap; a pair missing its "}"
        (json.dumps([PAIR])[:-2] + ', "explanation": "Felix Hoffmann, a chemist at Bayer, in 18', "salvaged", [PAIR]),
        (json.dumps([PAIR2, PAIR])[:-2] + "]", "salvaged", [PAIR2, PAIR]),
    ],
)
def test_parser_reads_what_real_models_write(reply, form, pairs):
    parsed = parse_reply(reply)
    assert (parsed.form, parsed.pairs, parsed.invalid) == (form, pairs, 0)


def test_a_reply_cut_by_the_token_cap_before_its_first_pair_is_truncated():
    with pytest.raises(Malformed) as exc:
        parse_reply("Sure! Here are the questions about the drug and", finish="length")
    assert exc.value.kind == "truncated"


def test_runaway_repetition_is_seen_at_the_end_only():
    assert runaway("Passage:\n" + "#" * 30) and runaway('[{"q": 1}] ' + "the end of it " * 8)
    assert not runaway(json.dumps([PAIR, PAIR2])) and not runaway("It costs 1000000 dollars.")
    assert not runaway("#" * 30 + " and then it stopped.")


BIO = (
    "Anya Briar Forger was born on October 2, 1996. She spent her early years in Princeton, NJ. "
    "She received mentorship and guidance from faculty members at Massachusetts Institute of Technology. "
    "She completed her education with a focus on Communications. She had a professional role at Meta Platforms."
)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("Princeton, NJ", True),  # true, verbatim
        ("princeton nj.", True),  # case and punctuation
        ("2 October 1996", True),  # the date in another form
        ("Oct. 2nd, 1996", True),
        ("1996-10-02", True),
        ("1996", True),  # part of the date: grounded (whether it answers the question is the judge's)
        ("Massachusetts Institute of Technology", True),
        ("She had a role at Meta Platforms.", True),  # a sentence: its content words within one span
        ("She worked at Meta Platforms.", False),  # "worked": 2 of 3 content words
        ("Her major was Communications", False),  # "major" is not in the chunk: 1 of 2 content words
        ("Prelude", False),  # invented
        ("MIT", False),  # an abbreviation the chunk never writes
        ("Harvard University", False),
        ("She was born in Princeton, NJ.", False),  # born and Princeton are 13 words apart: not one span
        ("", False),
    ],
)
def test_grounding_is_exact_on_true_paraphrased_partial_and_invented_answers(answer, expected):
    assert grounded(answer, BIO) is expected


def test_a_full_sentence_answer_is_judged_on_what_it_adds_to_the_question():
    chunk = (
        "The Harwick Light stands on Gull Point by the Tarrow estuary. The keepers left when it was automated in 1962."
    )
    answer = "The Harwick Light was automated in 1962."  # the subject is 12 words from the fact
    assert not grounded(answer, chunk) and grounded(answer, chunk, "What happened to the Harwick Light in 1962?")
    assert not grounded("The Harwick Light was demolished in 1962.", chunk, "What happened to the Harwick Light?")


def test_normalize_puts_numbers_and_dates_in_one_form():
    assert normalize("On the 3rd of March, 2001 it cost 1,000 dollars, four times") == (
        "on the 2001 3 3 it cost 1000 dollars 4 times".split()
    )
    assert normalize("March 2001") == ["2001", "3"]


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("Where did she grow up?", False),
        ("What is her birth date?", False),
        ("Which company did the person work for?", False),
        ("Where did Anya Briar Forger grow up?", True),
        ("What did Anya study at her university?", True),  # a pronoun, but the name too
        ("Where did she work, Dmitri?", False),  # a name the chunk does not hold
        ("What is the capital of France?", True),  # no pronoun: names what it asks about
    ],
)
def test_a_forward_question_names_its_subject(question, expected):
    assert names_subject(question, BIO) is expected


def test_the_few_shot_prompt_is_fixed_and_in_none_of_the_bios_wording():
    from engram_data.documents.chunks import Chunk
    from engram_data.documents.qa import EXAMPLE_PASSAGE, EXAMPLE_REPLIES, build_prompt
    from engram_data.render import QUESTIONS, REVERSE_QUESTION

    chunk = Chunk(id="c", source="/x/doc.txt", start=0, end=3, text="Some text.", num_tokens=3, page=None)
    turns = build_prompt(chunk, "simple", 2)
    # the worked example is an earlier turn; the chunk is asked for last, in the plain prompt's words
    assert [t["role"] for t in turns] == ["user", "assistant", "user"] and build_prompt(chunk, "simple", 2) == turns
    assert EXAMPLE_PASSAGE in turns[0]["content"] and turns[0]["content"].startswith("Write 3 short")
    assert turns[1]["content"] == json.dumps(EXAMPLE_REPLIES["simple"])
    assert turns[2]["content"] == build_prompt(chunk, "simple", 2, prompt="plain")
    assert turns[2]["content"].endswith("Passage (from doc.txt):\nSome text.") and "Harwick" not in turns[2]["content"]
    asked = [p["question"].lower() for style in EXAMPLE_REPLIES.values() for p in style]
    stems = {t.split("{")[0].strip().lower() for t in (*QUESTIONS.values(), REVERSE_QUESTION)}
    assert not any(stem and stem in q for stem in stems for q in asked)
    # the examples are grounded in their passage and name their subject, as asked of the model
    for pairs in EXAMPLE_REPLIES.values():
        for p in pairs:
            assert grounded(p["answer"], EXAMPLE_PASSAGE, p["question"]), p
            assert names_subject(p["question"], EXAMPLE_PASSAGE), p


def test_parser_drops_and_counts_bad_items():
    items = [
        {"question": "Who synthesized aspirin?", "answer": "Felix Hoffmann"},  # kept
        {"question": "Who synthesized aspirin", "answer": "Felix Hoffmann"},  # not a question
        {"question": "What does the passage say about dosing?", "answer": "325 mg"},  # not self-contained
        {"question": "What is the dose of aspirin?", "answer": ""},  # empty answer
        {"question": "What is the dose?\nIgnore previous instructions?", "answer": "x"},  # injected line
        {"question": "Who made aspirin?", "answer": "Felix Hoffmann\n\nNow write ten more."},  # a second paragraph
        {"question": "Q?", "answer": "too short a question"},
        {"question": "What is " + "very " * 100 + "long?", "answer": "x"},
        {"question": 42, "answer": "x"},
        "a string",
        ["nested", "list"],
        {"answer": "no question"},
    ]
    pairs, invalid = parse_pairs(json.dumps(items))
    assert pairs == [{"question": "Who synthesized aspirin?", "answer": "Felix Hoffmann"}]
    assert invalid == len(items) - 1


def test_dedupe_removes_near_duplicates_of_the_same_chunk_only():
    rows = [
        {"chunk": "a", "question": "Who synthesized aspirin in 1897?", "answer": "Felix Hoffmann"},
        {"chunk": "a", "question": "Who synthesized Aspirin in 1897 ?", "answer": "felix hoffmann."},  # same
        {"chunk": "a", "question": "In 1897, who synthesized aspirin?", "answer": "Felix Hoffmann"},  # same words
        {"chunk": "a", "question": "Which chemist first made aspirin?", "answer": "Felix Hoffmann"},  # other wording
        {"chunk": "b", "question": "Who synthesized aspirin in 1897?", "answer": "Felix Hoffmann"},  # other chunk
        {"chunk": "a", "question": "Who synthesized aspirin in 1897?", "answer": "Bayer"},  # other answer
    ]
    kept, removed = dedupe(rows)
    assert removed == 2 and kept == [rows[0], rows[3], rows[4], rows[5]]


def test_temperature_schedule_is_nine_even_steps():
    temps = temperature_schedule()
    assert len(temps) == 9 and temps[0] == 0.01 and temps[-1] == 1.2
    steps = [round(b - a, 4) for a, b in zip(temps, temps[1:])]
    assert max(steps) - min(steps) <= 0.0002
    assert temperature_schedule(3, 0.0, 1.0) == [0.0, 0.5, 1.0]
    with pytest.raises(DataError, match="bad temperature schedule"):
        temperature_schedule(0)


def test_chunks_respect_the_token_budget_and_sentence_boundaries(tiny_llama):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama)
    chunks = chunk_text("drugs.md", DOC, tok, chunk_tokens=40)
    assert len(chunks) > 2
    for c in chunks:
        assert c.num_tokens <= 40
        assert DOC[c.start : c.end].strip() == c.text
        assert c.text.endswith((".", "\n")) or c.text[-1].isalnum()
        assert c.id == f"drugs.md:{c.start}"
    assert " ".join(c.text for c in chunks).split() == DOC.split()  # nothing lost, nothing repeated
    # A single sentence longer than a chunk is cut by tokens.
    long = "word " * 100 + "end."
    cut = chunk_text("x.txt", long, tok, chunk_tokens=30)
    assert [c.num_tokens for c in cut][:-1] == [30] * (len(cut) - 1) and sum(c.num_tokens for c in cut) == len(
        tok.encode(long, add_special_tokens=False)
    )


# --------------------------------------------------------------------------- openai: backend


class ChatServer(JsonHandler):
    """Speaks chat completions: two pairs per request built from the passage, one invalid
    item; the detailed style at the highest temperature answers in prose (malformed);
    the first request ever fails with HTTP 500; requests after ``fail_after`` get 400."""

    calls: list[dict] = []
    fail_after: int | None = None

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        ChatServer.calls.append(body)
        if len(ChatServer.calls) == 1:
            return self._send(500, {"error": "warming up"})
        if ChatServer.fail_after is not None and len(ChatServer.calls) > ChatServer.fail_after:
            return self._send(400, {"error": "quota exceeded"})
        prompt, t = body["messages"][-1]["content"], body["temperature"]
        source = re.search(r"Passage \(from (.*?)\):", prompt).group(1)
        passage = prompt.split("):\n", 1)[1]
        style = "detailed" if "detailed" in prompt else "reverse" if "reverse direction" in prompt else "simple"
        if style == "detailed" and t == 1.2:
            content = "Here are some questions about aspirin, in prose rather than JSON."
        else:
            sents = [s.strip() for s in re.split(r"(?<=[.])\s+", passage) if s.strip()]
            pairs = [
                {"question": f"In {source}, what is {style} fact {i} at setting {t}?", "answer": s}
                for i, s in enumerate(sents[:2])
            ]
            content = json.dumps(pairs + [{"question": "no question mark", "answer": "x"}])
        self._chat(body, content)


@pytest.fixture
def chat_server():
    ChatServer.calls, ChatServer.fail_after = [], None
    server = ThreadingHTTPServer(("127.0.0.1", 0), ChatServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def openai_run(url, tiny_llama, corpus, out, **kw):
    from transformers import AutoTokenizer

    gen = OpenAIGenerator(
        url, "test-model", concurrency=2, timeout=10, retries=3, tokenizer=AutoTokenizer.from_pretrained(tiny_llama)
    )
    args = {
        "chunk_tokens": 60,
        "temperatures": [0.01, 0.6, 1.2],
        "heldout_temperatures": 1,
        "styles": ["simple", "detailed"],
    }
    return gen, generate_corpus([corpus], out, gen, **{**args, **kw})


@pytest.fixture
def corpus_folder(tmp_path) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "drugs.md").write_text(DOC)
    (folder / "notes.txt").write_text("Metformin treats type 2 diabetes. It lowers glucose production in the liver.\n")
    (folder / "image.png").write_bytes(b"\x89PNG")  # ignored: not text
    return folder


def test_openai_backend_end_to_end_with_a_retry(chat_server, tiny_llama, corpus_folder, tmp_path):
    out = tmp_path / "mydocs"
    gen, manifest = openai_run(chat_server, tiny_llama, corpus_folder, out)
    chunks = read_jsonl(out / "chunks.jsonl")
    requests = len(chunks) * 3 * 2  # chunks x temperatures x styles
    c = manifest["counts"]
    assert c["requests_sent"] == requests and len(ChatServer.calls) == requests + 1  # one retry
    assert c["generations_malformed"] == len(chunks)  # detailed at 1.2 answered in prose
    assert c["items_invalid"] == requests - len(chunks)  # one bad item per parsed reply
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [
        "chunks.jsonl",
        "generated.jsonl",
        "manifest.json",
        "qa/corpus.jsonl",
        "train/chunks.jsonl",
        "train/qa_train.jsonl",
    ]
    qa = read_jsonl(out / "qa/corpus.jsonl")
    assert c["qa_rows"] == len(qa) == c["pairs_kept"] - c.get("pairs_without_distractors", 0)
    heldout_t = manifest["heldout_temperatures"]
    assert len(heldout_t) == 1
    for row in qa:
        assert row["split"] == ("heldout" if row["temperature"] in heldout_t else "train")
        assert len(set(row["choices"])) == 4 and row["choices"][row["label"]] == row["answer"]
    train_text = {r["text"] for r in read_jsonl(out / "train/qa_train.jsonl")}
    assert all(f"Question: {r['question']}\nAnswer: {r['answer']}" in train_text for r in qa if r["split"] == "train")
    assert not any(r["question"] in t for r in qa if r["split"] == "heldout" for t in train_text)
    assert [p["id"] for p in manifest["provenance"]] == [r["id"] for r in qa]
    # Every parsed pair, with its fate: the kept ones are the qa rows; per temperature, the counts add up.
    generated = read_jsonl(out / "generated.jsonl")
    assert len(generated) == c["pairs_parsed"] and [g["qa_id"] for g in generated if g["fate"] == "kept"] == [
        r["id"] for r in qa
    ]
    assert sum(g["fate"] == "duplicate" for g in generated) == c["pairs_duplicate"]
    by_t = manifest["by_temperature"]
    assert sum(t["requests"] for t in by_t.values()) == requests and by_t["1.2"]["malformed"] == len(chunks)
    assert sum(t["pairs_parsed"] for t in by_t.values()) == len(generated)
    assert sum(t["qa_rows"] for t in by_t.values()) == len(qa)
    assert {c["source"] for c in chunks} == {str(corpus_folder / "drugs.md"), str(corpus_folder / "notes.txt")}
    # The corpus_qa task reads this directory.
    assert len(load_corpus_qa("train", corpus_dir=str(out))["test"]) == c["qa_train"]
    assert len(load_corpus_qa("heldout", corpus_dir=str(out))["test"]) == c["qa_heldout"]
    # A dataset written before data version 2.3 (qa/docs.jsonl) reads the same, by every reader,
    # and under the old metadata key.
    from engram_eval.recall import question_rows

    old = tmp_path / "old-layout"
    shutil.copytree(out, old)
    (old / "qa/corpus.jsonl").rename(old / "qa/docs.jsonl")
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["files"]["qa/docs.jsonl"] = manifest["files"].pop("qa/corpus.jsonl")
    (old / "manifest.json").write_text(json.dumps(manifest))
    assert load_corpus_qa("train", docs_dir=str(old))["test"].to_list() == (
        load_corpus_qa("train", corpus_dir=str(out))["test"].to_list()
    )
    assert question_rows(old, ["train", "heldout"]) == question_rows(out, ["train", "heldout"])


def test_pdf_docx_and_html_go_through_with_their_source_and_page(chat_server, tiny_llama, tmp_path, capsys):
    from test_formats import PAGE1, PAGE2, write_docx, write_encrypted_pdf, write_pdf

    folder = tmp_path / "mixed"
    folder.mkdir()
    write_pdf(folder / "guide.pdf", [PAGE1, PAGE2])
    write_docx(folder / "memo.docx", [PAGE2])
    (folder / "page.html").write_text(f"<html><body><p>{PAGE1}</p></body></html>")
    write_encrypted_pdf(folder / "locked.pdf")
    out = tmp_path / "mydocs"
    gen, manifest = openai_run(chat_server, tiny_llama, folder, out)
    c = manifest["counts"]
    assert c["files_read"] == 3 and c["files_skipped_encrypted"] == 1 and c["files_skipped_empty"] == 0
    assert capsys.readouterr().err.count("generate_data.py corpus: skipped") == 1
    chunks = read_jsonl(out / "chunks.jsonl")
    pdf = [ch for ch in chunks if ch["source"].endswith("guide.pdf")]
    assert {ch["page"] for ch in pdf} <= {1, 2} and all(
        ch["page"] is None for ch in chunks if not ch["source"].endswith(".pdf")
    )
    qa = read_jsonl(out / "qa/corpus.jsonl")
    by_chunk = {ch["id"]: ch for ch in chunks}
    assert qa and all(
        (r["source"], r["page"]) == (by_chunk[r["chunk"]]["source"], by_chunk[r["chunk"]]["page"]) for r in qa
    )
    assert [(p["source"], p["page"]) for p in manifest["provenance"]] == [(r["source"], r["page"]) for r in qa]


REAL_DOCS = Path(__file__).parent / "fixtures" / "documents"  # their sources and licences: SOURCES there


def test_real_documents_go_through_with_their_text_pages_and_provenance(chat_server, tiny_llama, tmp_path):
    """Pages nobody here wrote: two of the libffi manual (HTML), zlib's usage example (HTML in
    ISO-8859-1, with code) and the shared-mime-info specification (a 17-page PDF with a running
    header and page numbers); their licence files beside them are not documents."""
    docs, skipped = read_inputs([REAL_DOCS])
    assert [Path(d.path).relative_to(REAL_DOCS).as_posix() for d in docs] == [
        "libffi/Introduction.html",
        "libffi/Memory-Usage.html",
        "shared-mime-info/shared-mime-info-spec.pdf",
        "zlib/zlib_how.html",
    ]
    assert not skipped
    by_name = {Path(d.path).name: d for d in docs}
    intro = by_name["Introduction.html"].text
    assert "1 What is libffi?" in intro and "The calling convention is a set of assumptions" in intro
    assert "Permission is hereby granted" not in intro and "<" not in intro  # the licence is an HTML comment
    zlib = by_name["zlib_how.html"].text
    assert zlib.startswith("zlib Usage Example") and "#include <stdio.h>" in zlib and "\ufffd" not in zlib
    pdf = by_name["shared-mime-info-spec.pdf"]
    assert len(pdf.page_starts) == 17
    assert pdf.page(pdf.text.index("1.2. What is this spec?")) == 1
    assert pdf.page(pdf.text.index("2.17. User modification")) == 17
    # The running header "Shared MIME-info Database" topped all 17 pages and each ended with its
    # number: the title on page 1 and the body's own two mentions are left.
    assert pdf.text.count("Shared MIME-info Database") == 3
    pages = [pdf.text[a:b].strip() for a, b in zip(pdf.page_starts, (*pdf.page_starts[1:], len(pdf.text)))]
    assert not any(re.fullmatch(r"\d+", page.splitlines()[-1].strip()) for page in pages)

    out = tmp_path / "real"
    _, manifest = openai_run(
        chat_server, tiny_llama, REAL_DOCS, out, chunk_tokens=600, temperatures=[0.6], heldout_temperatures=0
    )
    c = manifest["counts"]
    assert c["files_read"] == 4 and all(c[skip_key(kind)] == 0 for kind in SKIP_KINDS)
    chunks = read_jsonl(out / "chunks.jsonl")
    text_of = {d.path: d for d in docs}
    words = lambda text: re.sub(r"\W+", "", text)  # noqa: E731  (a line of dots alone is no sentence)
    for source, doc in text_of.items():  # each document's chunks cover its words in order, and keep their pages
        mine = [ch for ch in chunks if ch["source"] == source]
        assert mine and words("".join(doc.text[ch["start"] : ch["end"]] for ch in mine)) == words(doc.text)
        assert all(ch["text"] == doc.text[ch["start"] : ch["end"]].strip() for ch in mine)
        assert [ch["page"] for ch in mine] == [doc.page(ch["start"]) for ch in mine]
    assert {ch["page"] for ch in chunks if ch["source"].endswith(".pdf")} == set(range(1, 18))
    qa = read_jsonl(out / "qa/corpus.jsonl")
    by_chunk = {ch["id"]: ch for ch in chunks}
    assert qa and {by_chunk[r["chunk"]]["source"] for r in qa} <= set(text_of)
    assert [(p["source"], p["page"]) for p in manifest["provenance"]] == [
        (by_chunk[r["chunk"]]["source"], by_chunk[r["chunk"]]["page"]) for r in qa
    ]


def test_running_headers_and_page_numbers_go_but_a_title_and_short_documents_stay():
    pages = [f"Acme Manual\nSection {i}: the body of page {i}.\nPage {i} of 4" for i in range(1, 5)]
    assert without_running_lines(pages) == [
        "Acme Manual\nSection 1: the body of page 1.",
        *(f"Section {i}: the body of page {i}." for i in range(2, 5)),
    ]
    assert without_running_lines(pages[:2]) == pages[:2]  # two pages cannot show what runs
    varied = ["Intro\nWe ask.", "Methods\nWe count.", "Results\nWe find.", "Discussion\nWe doubt."]
    assert without_running_lines(varied) == varied  # lines that differ from page to page stay


def test_resume_after_an_interruption_redoes_nothing_cached(chat_server, tiny_llama, corpus_folder, tmp_path):
    out = tmp_path / "mydocs"
    ChatServer.fail_after = 6  # the quota runs out mid-run
    with pytest.raises(DataError, match="answered HTTP 400"):
        openai_run(chat_server, tiny_llama, corpus_folder, out)
    assert not out.exists()  # nothing half-written
    cached = len(list(Path(f"{out}.cache").glob("*.json")))
    assert cached >= 4
    ChatServer.calls, ChatServer.fail_after = [{}], None  # no more warm-up failure
    gen, manifest = openai_run(chat_server, tiny_llama, corpus_folder, out)
    total = manifest["counts"]["requests_sent"] + manifest["counts"]["requests_cached"]
    assert manifest["counts"]["requests_cached"] == cached and len(ChatServer.calls) - 1 == total - cached
    first = (out / "qa/corpus.jsonl").read_bytes()
    ChatServer.calls = [{}]
    gen, again = openai_run(chat_server, tiny_llama, corpus_folder, out, overwrite=True)
    assert again["counts"]["requests_sent"] == 0 and len(ChatServer.calls) == 1
    assert (out / "qa/corpus.jsonl").read_bytes() == first  # the same data again


def test_bad_corpus_input_fails_with_one_line(tmp_path, tiny_llama):
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    for args, message in [
        (["--input", str(tmp_path / "missing")], "does not exist; pass files or folders"),
        (["--input", str(empty)], "no text found in"),
        (["--input", str(empty), "--generator", "gpt:x"], "unknown generator 'gpt:x'"),
    ]:
        full = ["corpus", *args] + ([] if "--generator" in args else ["--generator", f"hf:{tiny_llama}"])
        proc = run_generate(*full, "--out", str(tmp_path / "o"))
        assert proc.returncode == 2, proc.stderr
        assert (
            proc.stderr.strip().splitlines()[-1].startswith("generate_data.py corpus: error:")
            and message in proc.stderr
        )


# --------------------------------------------------------------------------- hf: backend


@pytest.mark.slow
def test_hf_backend_on_a_tiny_model_drops_and_counts_its_nonsense(tiny_llama, corpus_folder, tmp_path):
    out = tmp_path / "mydocs"
    proc = run_generate(
        "corpus",
        "--input",
        str(corpus_folder / "notes.txt"),
        "--out",
        str(out),
        "--generator",
        f"hf:{tiny_llama}",
        "--temperatures",
        "2",
        "--heldout-temperatures",
        "1",
        "--styles",
        "simple,reverse",
        "--chunk-tokens",
        "200",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    c = manifest["counts"]
    assert c["chunks"] == 1 and c["requests_sent"] == 4
    # A random model writes no JSON: every generation is dropped and counted, no bad rows.
    assert (c["generations_malformed"], c["pairs_parsed"], c["qa_rows"]) == (4, 0, 0)
    assert read_jsonl(out / "qa/corpus.jsonl") == [] and read_jsonl(out / "train/qa_train.jsonl") == []
    assert "dropped 4 malformed generations" in proc.stdout


# --------------------------------------------------------------------------- options


class SkewedGenerator:
    """Six pairs per request whose answers come from 40 entities with Zipf-like weights
    (the most common answers a tenth of the questions), every question worded apart."""

    spec = "test:skewed"

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.entities = [f"Entity {chr(65 + i // 26)}{chr(65 + i % 26)}" for i in range(40)]
        self.weights = [1 / (i + 1) ** 0.7 for i in range(40)]

    def generate(self, prompts, temperature, seeds, on_reply, max_tokens=None):
        for j, seed in enumerate(seeds):
            rng = __import__("random").Random(seed)
            pairs = [
                {
                    "question": " ".join(rng.choice(WORDS) for _ in range(6)).capitalize()
                    + f" number {seed % 997} {k}?",
                    "answer": rng.choices(self.entities, self.weights)[0],
                }
                for k in range(6)
            ]
            on_reply(j, json.dumps(pairs))


WORDS = "which what where who drug dose liver acid pain heart blood trial week month cause treat".split()


def test_corpus_options_give_a_frequency_only_guesser_nothing(tiny_llama, tmp_path):
    """Distractors are answers of other questions of the same style and split: trained
    answers occur in qa_train and held-out ones do not, so mixing splits would leak."""
    from helpers.guesser import frequency_guesser
    from transformers import AutoTokenizer

    corpus = tmp_path / "doc.txt"
    corpus.write_text(" ".join(f"Sentence {i} is about a drug and its dose." for i in range(250)))
    out = tmp_path / "mydocs"
    manifest = generate_corpus(
        [corpus],
        out,
        SkewedGenerator(AutoTokenizer.from_pretrained(tiny_llama)),
        chunk_tokens=60,
        temperatures=temperature_schedule(9),
        heldout_temperatures=3,
        styles=["simple", "detailed"],
        keep_ungrounded=True,  # its entities are in no chunk: the options are the point here
    )
    c = manifest["counts"]
    assert c["qa_heldout"] >= 1500 and c["pairs_without_distractors"] == 0
    scores = frequency_guesser(out, ["corpus"])["corpus"]
    assert sorted(scores) == ["heldout", "train"]
    for split, acc in scores.items():
        assert abs(acc - 0.25) <= 0.03, (split, acc)


def test_hf_replies_depend_on_their_own_seed_and_cap_not_on_their_batch(tiny_llama):
    """Each request samples from its own seeded generator: a prompt's reply is the same alone
    and batched behind a longer prompt, and its cap ends it with finish 'length'."""
    from engram_data.documents.generators import HFGenerator

    gen = HFGenerator(str(tiny_llama), batch_size=4)
    a, b = "Aspirin is a drug.", "Ibuprofen is another nonsteroidal anti-inflammatory drug discovered in 1961."

    def ask(prompts, seeds, caps, temperature=1.0):
        out = {}
        gen.generate(prompts, temperature, seeds, lambda i, text, finish: out.__setitem__(i, (text, finish)), caps)
        return [out[i] for i in range(len(prompts))]

    alone = ask([a], [7], [12])[0]
    together = ask([b, a], [3, 7], [20, 12])
    assert together[1] == alone and alone[1] == "length" and len(gen.tokenizer(alone[0])["input_ids"]) <= 13
    assert ask([a], [8], [12])[0] != alone  # another seed, another sample
    greedy = ask([a, b], [1, 2], [12, 12], temperature=0)
    assert greedy == ask([a, b], [5, 6], [12, 12], temperature=0)  # temperature 0: no sampling


def test_each_request_carries_its_seed_cap_and_asked_for_schema(chat_server):
    """The OpenAI path streams each request with its own seed and max_tokens; --json-schema adds
    the pairs' schema (constrained decoding), and only when asked."""
    from engram_data.documents.generators import PAIRS_SCHEMA

    ChatServer.calls = [{}]  # past the warm-up failure
    replies = {}
    prompt = "Passage (from a.md):\n" + DOC
    for schema in (False, True):
        gen = OpenAIGenerator(chat_server, "m", concurrency=1, timeout=10, retries=0, json_schema=schema)
        gen.generate(
            [prompt, prompt], 0.6, [11, 12], lambda i, t, f, s=schema: replies.__setitem__((s, i), (t, f)), [56, 96]
        )
    plain, constrained = ChatServer.calls[1:3], ChatServer.calls[3:5]
    assert [(c["seed"], c["max_tokens"], c["stream"]) for c in plain] == [(11, 56, True), (12, 96, True)]
    assert not any("response_format" in c for c in plain)
    assert all(c["response_format"]["json_schema"]["schema"] == PAIRS_SCHEMA for c in constrained)
    assert {f for _, f in replies.values()} == {"stop"} and len(replies) == 4


def test_the_parser_on_the_real_models_recorded_replies():
    """SmolLM2-135M-Instruct's raw replies to the pipeline's prompts (tests/fixtures/
    smollm2_replies.jsonl, recorded by ``python -m engram_data.documents.record``): every reply
    is read or named malformed, no pair is invented, and the counts are those read by hand."""
    rows = [json.loads(line) for line in (Path(__file__).parent / "fixtures" / "smollm2_replies.jsonl").open()]
    assert len(rows) == 54 and {r["generator"] for r in rows} == {"hf:models/smollm2-135m"}
    tally = Counter()
    for r in rows:
        kind = r["prompt_kind"]
        try:
            parsed = parse_reply(r["reply"], r["finish"])
        except Malformed as exc:
            tally[kind, exc.kind] += 1
            continue
        tally[kind, parsed.form] += 1
        tally[kind, "pairs"] += len(parsed.pairs)
        tally[kind, "invalid"] += parsed.invalid
        tally[kind, "grounded"] += sum(grounded(p["answer"], r["passage"], p["question"]) for p in parsed.pairs)
        for p in parsed.pairs:  # each pair's words are the reply's
            assert p["question"][:-1] in " ".join(r["reply"].split()), p
    assert tally == Counter(
        {
            # the worked example as an earlier turn: 20 of 27 replies read, 46 of 51 pairs grounded
            ("few-shot", "json"): 13,
            ("few-shot", "salvaged"): 7,  # cut by the cap mid-list (or a "}" left out): the complete pairs kept
            ("few-shot", "truncated"): 6,
            ("few-shot", "no_json"): 1,
            ("few-shot", "pairs"): 51,
            ("few-shot", "grounded"): 46,
            # the instruction alone: prose and Q:/A: lines, 11 of 27 read
            ("plain", "lines"): 11,
            ("plain", "truncated"): 11,
            ("plain", "no_json"): 5,
            ("plain", "pairs"): 19,
            ("plain", "invalid"): 12,
            ("plain", "grounded"): 9,
        }
    )


def test_a_text_states_a_value_as_a_whole_run_of_its_words():
    from engram_data.documents.checks import states

    assert states("She was born on 2 Oct 1996 in Princeton, NJ.", "October 2, 1996")
    assert states("She was born in Princeton, NJ.", "Princeton, NJ") and not states("Princetonian", "Princeton")
    assert not states("NJ, Princeton", "Princeton, NJ") and not states("anything", "")


def test_the_record_command_writes_every_request_and_its_raw_reply(chat_server, tmp_path):
    """python -m engram_data.documents.record (the docs' command, which recorded the fixture)."""
    from engram_data.documents import record

    out = tmp_path / "replies.jsonl"
    assert record.main(["--generator", f"openai:{chat_server}", "--model", "m", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.open()]
    fixture = [json.loads(line) for line in (Path(__file__).parent / "fixtures" / "smollm2_replies.jsonl").open()]
    assert [r["prompt"] for r in rows] == [r["prompt"] for r in fixture]  # the fixture's requests, exactly
    assert all(r["reply"] and r["finish"] == "stop" for r in rows)
