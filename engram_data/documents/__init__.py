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

Replies are read as real models write them (JSON bare, fenced, nested, cut off; Q:/A: lines);
what cannot be read is dropped and counted by kind, as is every malformed item; pairs whose
answer the chunk does not hold or whose question never names its subject are counted and not
trained (unless asked); near-duplicate pairs are removed.

    formats      PDF, DOCX, HTML, Markdown and text to plain text, with pages; bad files skipped
    chunks       chunking at sentence boundaries by tokens
    qa           prompts per style (few-shot or plain), reply budgets, the temperature schedule,
                 the parser of real models' replies, runaway repetition
    checks       grounding of an answer in its chunk, a question naming its subject, dedupe
    generators   hf:PATH (local transformers) and openai:URL (chat completions) backends
    run          generate_corpus(): the cached, resumable run
    output       the layout, the options and manifest.json, written atomically
    record       a generator's raw replies to the prompt (the suite's fixture of the real model)
"""
