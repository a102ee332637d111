"""Parameter counts as a capacity measure divides by them: tied tensors once, ZeRO-3
placeholders and packed 4-bit weights at the size the model defines; and, as Physics of LM 3.3
counts them, with only the rows of the embeddings and head that the data's tokens use."""

from __future__ import annotations

import math


def numel(param) -> int:
    """A parameter's element count as the model defines it: under DeepSpeed ZeRO-3 a rank holds
    an empty placeholder (the count is ``ds_numel``); a bitsandbytes 4-bit weight is stored packed,
    two values a byte (the count is its ``quant_state.shape``)."""
    if hasattr(param, "ds_numel"):
        return int(param.ds_numel)
    state = getattr(param, "quant_state", None)
    if state is not None and getattr(state, "shape", None) is not None:
        return int(math.prod(state.shape))
    return param.numel()


def parameter_counts(model) -> tuple[int, int]:
    """All parameters (tied ones once), and those outside the input embeddings and the head."""
    total = sum(numel(p) for p in model.parameters())
    embedding = {id(m.weight) for m in (model.get_input_embeddings(), model.get_output_embeddings()) if m is not None}
    outside = sum(numel(p) for p in model.parameters() if id(p) in embedding)
    return total, total - outside


def used_vocabulary_params(model, used_tokens: int) -> int:
    """All parameters (tied ones once), the input embeddings and the output head counted for
    ``used_tokens`` rows only: the rows of tokens the data never uses store none of its
    knowledge (Physics of LM 3.3 counts a model's parameters so)."""
    total, _ = parameter_counts(model)
    seen, unused = set(), 0
    for m in (model.get_input_embeddings(), model.get_output_embeddings()):
        if m is None or id(m.weight) in seen or m.weight.dim() != 2:
            continue
        seen.add(id(m.weight))
        rows, width = m.weight.shape
        unused += max(0, rows - used_tokens) * width
    return total - unused
