"""Memorize your own documents (``generate_data.py corpus``): chunks -> LLM-written QA at many
temperatures -> the same train/QA layout as bioS, so the same recipes and evaluation apply.

    DIR/train/chunks.jsonl     {"text": ...} the source chunks
    DIR/train/qa_train.jsonl   {"text": "Question: ...\\nAnswer: ..."} QA from the training temperatures
    DIR/qa/corpus.jsonl          four-option questions: split "train" (trained) or "heldout"
                               (paraphrases from temperatures never trained)
    DIR/chunks.jsonl           chunk id, source file, character offsets, token count
    DIR/manifest.json          arguments, counts (kept, dropped, duplicates), provenance per row
    DIR.cache/                 one file per finished request (beside DIR, never deleted): a
                               crashed or rate-limited run loses nothing, a rerun does only what is missing

Generation is strict: a reply that is not a JSON list of {"question", "answer"} objects
is dropped and counted, as is every malformed item; near-duplicate pairs are removed.

    formats      PDF, DOCX, HTML, Markdown and text to plain text, with pages; bad files skipped
    chunks       chunking at sentence boundaries by tokens
    qa           prompts per style, the temperature schedule, strict parsing, dedupe
    generators   hf:PATH (local transformers) and openai:URL (chat completions) backends
    run          generate_corpus(): the cached, resumable run and the atomic write
"""
