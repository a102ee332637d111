"""The recipes' base models as transformers configs, from their published ``config.json``:
real-size shapes without the Hub, for memory estimates and ``make bench-gpu`` (random weights).

``config_for(base_model)`` gives the config of a recipe's ``base_model``; ``PARAMS`` is each
model's published parameter count, which the test checks the built model against.
"""

from __future__ import annotations

_GPT2 = {"model_type": "gpt2", "vocab_size": 50257, "n_positions": 1024}
_LLAMA3 = {
    "model_type": "llama",
    "vocab_size": 128256,
    "max_position_embeddings": 131072,
    "rope_theta": 500000.0,
    "rms_norm_eps": 1e-5,
    "bos_token_id": 128000,
    "eos_token_id": 128001,
}
_LLAMA2 = {
    "model_type": "llama",
    "vocab_size": 32000,
    "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-5,
    "bos_token_id": 1,
    "eos_token_id": 2,
}
_OLMO2 = {
    "model_type": "olmo2",
    "vocab_size": 100352,
    "max_position_embeddings": 4096,
    "rope_theta": 500000.0,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": False,
}

ARCHITECTURES: dict[str, dict] = {
    "openai-community/gpt2": {**_GPT2, "n_embd": 768, "n_layer": 12, "n_head": 12},
    "openai-community/gpt2-medium": {**_GPT2, "n_embd": 1024, "n_layer": 24, "n_head": 16},
    "openai-community/gpt2-large": {**_GPT2, "n_embd": 1280, "n_layer": 36, "n_head": 20},
    "openai-community/gpt2-xl": {**_GPT2, "n_embd": 1600, "n_layer": 48, "n_head": 25},
    "EleutherAI/gpt-j-6b": {
        "model_type": "gptj",
        "vocab_size": 50400,
        "n_positions": 2048,
        "n_embd": 4096,
        "n_layer": 28,
        "n_head": 16,
        "rotary_dim": 64,
        "tie_word_embeddings": False,
    },
    "EleutherAI/gpt-neox-20b": {
        "model_type": "gpt_neox",
        "vocab_size": 50432,
        "max_position_embeddings": 2048,
        "hidden_size": 6144,
        "num_hidden_layers": 44,
        "num_attention_heads": 64,
        "intermediate_size": 24576,
        "rotary_pct": 0.25,
        "use_parallel_residual": True,
        "tie_word_embeddings": False,
    },
    "meta-llama/Llama-3.2-1B": {
        **_LLAMA3,
        "hidden_size": 2048,
        "intermediate_size": 8192,
        "num_hidden_layers": 16,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 64,
        "tie_word_embeddings": True,
    },
    "meta-llama/Llama-3.2-3B": {
        **_LLAMA3,
        "hidden_size": 3072,
        "intermediate_size": 8192,
        "num_hidden_layers": 28,
        "num_attention_heads": 24,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "tie_word_embeddings": True,
    },
    "meta-llama/Llama-3.1-8B": {
        **_LLAMA3,
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "tie_word_embeddings": False,
    },
    "meta-llama/Llama-2-7b-hf": {
        **_LLAMA2,
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "tie_word_embeddings": False,
    },
    "meta-llama/Llama-2-13b-hf": {
        **_LLAMA2,
        "hidden_size": 5120,
        "intermediate_size": 13824,
        "num_hidden_layers": 40,
        "num_attention_heads": 40,
        "num_key_value_heads": 40,
        "tie_word_embeddings": False,
    },
    "allenai/OLMo-2-1124-7B": {
        **_OLMO2,
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
    },
    "allenai/OLMo-2-1124-13B": {
        **_OLMO2,
        "hidden_size": 5120,
        "intermediate_size": 13824,
        "num_hidden_layers": 40,
        "num_attention_heads": 40,
        "num_key_value_heads": 40,
    },
    # SmolLM2-135M-Instruct as `make pretrained` converts it (the GGUF's own metadata): a local folder.
    "models/smollm2-135m": {
        "model_type": "llama",
        "vocab_size": 49152,
        "hidden_size": 576,
        "intermediate_size": 1536,
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "max_position_embeddings": 8192,
        "rope_theta": 100000.0,
        "rms_norm_eps": 1e-5,
        "tie_word_embeddings": True,
        "bos_token_id": 1,
        "eos_token_id": 2,
    },
}

# Published parameter counts (model cards / papers), to the precision they give.
PARAMS = {
    "openai-community/gpt2": 124e6,
    "openai-community/gpt2-medium": 355e6,
    "openai-community/gpt2-large": 774e6,
    "openai-community/gpt2-xl": 1.56e9,
    "EleutherAI/gpt-j-6b": 6.05e9,
    "EleutherAI/gpt-neox-20b": 20.6e9,
    "meta-llama/Llama-3.2-1B": 1.24e9,
    "meta-llama/Llama-3.2-3B": 3.21e9,
    "meta-llama/Llama-3.1-8B": 8.03e9,
    "meta-llama/Llama-2-7b-hf": 6.74e9,
    "meta-llama/Llama-2-13b-hf": 13.0e9,
    "allenai/OLMo-2-1124-7B": 7.30e9,
    "allenai/OLMo-2-1124-13B": 13.7e9,
    "models/smollm2-135m": 134_515_008,  # the converted model, counted (tests/test_pretrained.py)
}


def config_for(base_model: str):
    """The transformers config of ``base_model`` (a recipe's), with no download."""
    from transformers import AutoConfig

    if base_model not in ARCHITECTURES:
        raise KeyError(f"no stored shape for {base_model}; add its config.json values to ARCHITECTURES")
    kwargs = dict(ARCHITECTURES[base_model])
    return AutoConfig.for_model(kwargs.pop("model_type"), **kwargs)
