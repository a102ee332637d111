"""Brief in-process training on QA text until a tiny model has memorized a few people."""

from __future__ import annotations

from pathlib import Path

import torch

from engram_data.contract import FIELDS, qa_text, read_qa_file


def memorize(model, tokenizer, data: Path, people: int, steps: int = 120, lr: float = 3e-3, texts=None) -> None:
    """Train on the first ``people`` train questions of each field, as QA text (or on ``texts``)."""
    texts = texts or [
        qa_text(r["question"], r["answer"])
        for f in FIELDS
        for r in [r for r in read_qa_file(data, f) if r["split"] == "train"][:people]
    ]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    torch.manual_seed(0)
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for _ in range(steps):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optim.step()
        optim.zero_grad()
    model.eval()
