"""Freezing embeddings and transformer layers, for every supported architecture,
with full fine-tuning or with adapters (then the adapter weights of a frozen layer)."""

from __future__ import annotations

import re
from collections.abc import Iterable

import torch

# The transformer block list of each architecture: llama `model.layers.N.`, gpt2 and gptj
# `transformer.h.N.`, gpt_neox `gpt_neox.layers.N.` (PEFT adds a `base_model.model.` prefix).
LAYER_RE = re.compile(r"(?:^|\.)(?:layers|h)\.(\d+)\.")


def _base(model):
    """The transformers model inside a PEFT wrapper, or the model itself."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def embedding_parameters(model) -> list[tuple[str, torch.nn.Parameter]]:
    """What the original LLM Engram froze: the input embeddings, GPT-2's position embeddings,
    and the output head, tied to the embeddings or not (GPT-J, NeoX and Llama 3.1 8B have
    their own head; GPT-J's has a bias, frozen with it)."""
    base = _base(model)
    targets = {id(p) for p in base.get_input_embeddings().parameters()}
    head = base.get_output_embeddings()
    if head is not None:
        targets |= {id(p) for p in head.parameters()}
    wpe = getattr(getattr(base, "transformer", None), "wpe", None)
    if wpe is not None:
        targets |= {id(p) for p in wpe.parameters()}
    return [(n, p) for n, p in model.named_parameters() if id(p) in targets]


def num_layers(model) -> int:
    config = _base(model).config
    for key in ("num_hidden_layers", "n_layer"):
        if getattr(config, key, None):
            return getattr(config, key)
    raise ValueError(f"cannot tell how many layers {type(model).__name__} has")


def layer_parameters(model, layers: Iterable[int]) -> list[tuple[str, torch.nn.Parameter]]:
    wanted = set(layers)
    out = []
    for name, param in model.named_parameters():
        m = LAYER_RE.search(name)
        if m and int(m.group(1)) in wanted:
            out.append((name, param))
    return out


def apply_freezing(model, freeze_embeddings: bool, freeze_layers: Iterable[int] | None) -> list[str]:
    """Set ``requires_grad=False`` on what the config freezes; return the frozen names."""
    frozen: list[tuple[str, torch.nn.Parameter]] = []
    if freeze_embeddings:
        frozen += embedding_parameters(model)
    if freeze_layers:
        n = num_layers(model)
        bad = [i for i in freeze_layers if i >= n]
        if bad:
            raise ValueError(f"engram_freeze_layers {bad} out of range: the model has layers 0..{n - 1}")
        frozen += layer_parameters(model, freeze_layers)
    for _, param in frozen:
        param.requires_grad_(False)
    return sorted({n for n, _ in frozen})
