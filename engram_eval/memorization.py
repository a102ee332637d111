"""Were the biographies memorized? Next-token accuracy on the attribute tokens inside them.

Physics of LM 3.1 pretrains on the biographies until the model predicts the attribute tokens
of the training text almost perfectly (its appendix: above 99% next-token accuracy on them),
and only then asks whether a QA fine-tune can extract them. :class:`AttributeAccuracy` measures
that on a split's biographies (by default the QA-heldout people's, which pretraining saw and
whose QA never trained): for every token of every attribute value in every biography of the
variant, is the model's greedy next token the right one? ``make reproduce`` reports it for
each variant and marks a model below :data:`GATE` "not memorized" rather than score its
extraction as if it were.
"""

from __future__ import annotations

from pathlib import Path

import torch

from engram_data.contract import FIELDS, PEOPLE, read_jsonl

GATE = 0.99  # the paper's bar: above 99% next-token accuracy on the attribute tokens


def value_spans(person: dict, text: str) -> list[tuple[int, int]]:
    """Character spans in ``text`` of each attribute value (its first mention after the name)."""
    out = []
    for field in FIELDS:
        at = text.find(person[field], len(person["name"]) if text.startswith(person["name"]) else 0)
        if at < 0:
            raise ValueError(f"a biography of {person['name']} does not state its {field}")
        out.append((at, at + len(person[field])))
    return out


class AttributeAccuracy:
    """Greedy next-token accuracy on the attribute-value tokens of ``variant``'s biographies of
    the people in ``split`` (every biography of a five-biography variant)."""

    def __init__(self, data_dir, tokenizer, variant: str, split: str = "heldout", batch_size: int = 16):
        self.tokenizer, self.batch_size = tokenizer, batch_size
        self.items: list[tuple[list[int], list[int]]] = []  # (token ids, positions of attribute tokens)
        for p in read_jsonl(Path(data_dir) / PEOPLE):
            if split != "all" and p["split"] != split:
                continue
            texts = p[variant] if isinstance(p[variant], list) else [p[variant]]
            for text in texts:
                enc = tokenizer(text, return_offsets_mapping=True, add_special_tokens=True)
                spans = value_spans(p, text)
                # Tokens overlapping a value (special tokens have (0, 0)); the first token of a
                # text has nothing before it to be predicted from.
                at = [
                    i
                    for i, (a, b) in enumerate(enc["offset_mapping"])
                    if i > 0 and b > a and any(a < end and b > start for start, end in spans)
                ]
                self.items.append((enc["input_ids"], at))

    @torch.no_grad()
    def evaluate(self, model, device=None) -> dict:
        device = device or next(model.parameters()).device
        was_training = model.training
        model.eval()
        right = total = 0
        try:
            for b in range(0, len(self.items), self.batch_size):
                batch = self.items[b : b + self.batch_size]
                width = max(len(ids) for ids, _ in batch)
                pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
                ids = torch.tensor([x + [pad] * (width - len(x)) for x, _ in batch], device=device)
                mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x, _ in batch], device=device)
                guess = model(input_ids=ids, attention_mask=mask).logits.argmax(-1).cpu()
                for row, (x, at) in enumerate(batch):
                    right += sum(int(guess[row, i - 1]) == x[i] for i in at)
                    total += len(at)
        finally:
            model.train(was_training)
        accuracy = right / total if total else 0.0
        return {
            "attribute_token_accuracy": accuracy,
            "tokens": total,
            "texts": len(self.items),
            "memorized": accuracy >= GATE,
        }
