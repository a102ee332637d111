"""Peak GPU memory of a recipe, estimated from its model's shape and its own settings.

    weights      the model as Axolotl holds it: bf16; 4-bit (NF4, double quantization) under QLoRA;
                 fp32 where the plugin keeps fp32 master weights (and DeepSpeed/FSDP's masters)
    gradients    one per trained weight, in the trained weight's dtype
    optimizer    AdamW's two states per trained weight (fp32, or bf16 for bf16 weights; one byte
                 each for 8-bit AdamW)
    activations  what the backward pass keeps per token and layer (no dropout; flash/SDPA
                 attention keeps no scores), or with gradient checkpointing each layer's input
                 plus one layer recomputed
    logits       the vocabulary-sized tensors of the loss: logits, their fp32 log-softmax and
                 gradient (the largest single term for small models with big vocabularies)

Sharded strategies divide what they shard by the GPU count: ZeRO-2 the optimizer and
gradients, ZeRO-3 and FSDP2 everything but one gathered layer. ``axolotl_configs/_generate_settings.py``
writes the per-recipe table (``axolotl_configs/README.md``) and the recipes' headers from it;
``tests/test_memory.py`` checks the terms against peaks measured on a CPU for tiny models.
"""

from __future__ import annotations

from dataclasses import dataclass

from engram_run.runs.recipes import recipe_method

GIB = 2**30
# Per token and layer, how many hidden-sized, key/value-sized and MLP-sized tensors the
# backward pass keeps (norm inputs, projections' inputs and outputs, rotated q/k, attention
# output; gate, up, activation and product for a gated MLP, in and activation for GELU).
SAVED_HIDDEN = 8
SAVED_KV = 3
# GPT-2's "gelu_new" is written out in Python (tanh approximation): three more MLP-sized tensors.
SAVED_MLP = {"gated": 4, "gelu": 2, "gelu_new": 5}
# Per token x vocabulary entry: the logits, their fp32 copy for the loss (none when the logits
# are fp32 already), the fp32 log-softmax and gradient, and the gradient in the logits' dtype.
LOGIT_BYTES = {2: 2 + 4 + 4 + 4 + 2, 4: 4 + 4 + 4}
# The CUDA context, cuBLAS workspaces and the caching allocator's rounding: measured peaks
# (torch.cuda.max_memory_reserved) run this far above what the tensors need.
RUNTIME_OVERHEAD = 1.0 * GIB
FRAGMENTATION = 1.10
# A biography row without packing: the longest bioS_multi5_permutes biography is under 128
# tokens in any of the recipes' tokenizers (padded to a multiple of 8).
UNPACKED_ROW = 128


@dataclass(frozen=True)
class Shape:
    """What the estimate needs of a model: its sizes and parameter counts."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    mlp: str  # gated (Llama, OLMo 2), gelu_new (GPT-2) or gelu (GPT-J, NeoX)
    params: int
    embedding_params: int  # input embeddings and an untied head
    linear_params: int  # weights of the layers' nn.Linear / Conv1D (what 4-bit quantizes)

    @property
    def kv_dim(self) -> int:
        return self.hidden // self.heads * self.kv_heads


def shape_of(config) -> Shape:
    """Sizes from a transformers config, parameter counts from the model built on the meta
    device (no memory, no weights)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    params = sum(p.numel() for p in model.parameters())
    embedding = {id(m.weight) for m in (model.get_input_embeddings(), model.get_output_embeddings()) if m is not None}
    emb = sum(p.numel() for p in model.parameters() if id(p) in embedding)
    linear = sum(
        m.weight.numel()
        for m in model.modules()
        if type(m).__name__ in ("Linear", "Conv1D") and id(m.weight) not in embedding
    )
    get = lambda *names: next(getattr(config, n) for n in names if getattr(config, n, None) is not None)  # noqa: E731
    hidden = get("hidden_size", "n_embd")
    heads = get("num_attention_heads", "n_head")
    gated = config.model_type in ("llama", "olmo2", "mistral", "qwen2")
    return Shape(
        hidden=hidden,
        layers=get("num_hidden_layers", "n_layer"),
        heads=heads,
        kv_heads=getattr(config, "num_key_value_heads", None) or heads,
        intermediate=getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None) or 4 * hidden,
        vocab=config.vocab_size,
        mlp="gated" if gated else "gelu_new" if config.model_type == "gpt2" else "gelu",
        params=params,
        embedding_params=emb,
        linear_params=linear,
    )


def lora_params(shape: Shape, r: int, targets: str) -> int:
    """LoRA's trained parameters: r x (in + out) per adapted matrix; ``targets`` "all" for
    every linear layer (attention and MLP), as the recipes adapt them."""
    h, kv, i = shape.hidden, shape.kv_dim, shape.intermediate
    attention = (h + h) + (h + kv) * 2 + (h + h)  # q, k, v, o (fused qkv counts alike)
    mlp = (h + i) * (3 if shape.mlp == "gated" else 2)
    return r * (attention + mlp) * shape.layers


@dataclass(frozen=True)
class Setting:
    """What a recipe decides about memory (``from_recipe`` reads it)."""

    method: str  # full, lora, qlora
    micro_batch: int
    row_tokens: int
    checkpointing: bool
    master_fp32: bool  # trained weights in fp32 (plugin, DeepSpeed or FSDP masters)
    optimizer_bytes: int  # per trained weight and state
    sharding: str  # none, zero2, zero3, fsdp2
    gpus: int = 1
    lora_r: int = 0
    compute_bytes: int = 2  # bf16 activations
    eager_attention: bool = False  # eager attention keeps scores and probabilities (heads x T^2)


def from_recipe(cfg: dict, gpus: int = 1) -> Setting:
    method = recipe_method(cfg)
    sharding = "none"
    if cfg.get("deepspeed"):
        sharding = "zero3" if "zero3" in str(cfg["deepspeed"]) else "zero2"
    elif cfg.get("fsdp_version") or cfg.get("fsdp_config"):
        sharding = "fsdp2"
    master = method == "full" and (sharding != "none" or bool(cfg.get("engram_fp32_master_weights")))
    optimizer = str(cfg.get("optimizer", "adamw_torch"))
    state = 1 if "8bit" in optimizer else (4 if master or method != "full" else 2)
    packed = bool(cfg.get("sample_packing"))
    return Setting(
        method=method,
        micro_batch=int(cfg.get("micro_batch_size") or 1),
        row_tokens=int(cfg["sequence_len"]) if packed else min(UNPACKED_ROW, int(cfg.get("sequence_len", 2048))),
        checkpointing=bool(cfg.get("gradient_checkpointing")),
        master_fp32=master,
        optimizer_bytes=state,
        sharding=sharding,
        gpus=gpus,
        lora_r=int(cfg.get("lora_r") or 0),
        compute_bytes=2 if cfg.get("bf16") or cfg.get("fp16") else 4,
        eager_attention=cfg.get("attn_implementation") == "eager",
    )


def estimate(shape: Shape, s: Setting) -> dict[str, float]:
    """Bytes per GPU of each term and the peak (``total``, with the runtime's overhead)."""
    P, n = shape.params, s.gpus
    a = s.compute_bytes
    if s.method == "full":
        trained = P
        weight_bytes = 4 if s.master_fp32 else a
        weights = P * weight_bytes
        grads = trained * weight_bytes
        if s.sharding in ("zero2", "zero3"):  # bf16 model + fp32 master copies (sharded)
            weights = P * a / (n if s.sharding == "zero3" else 1) + P * 4 / n
            grads = trained * a / n
        elif s.sharding == "fsdp2":
            weights, grads = weights / n, grads / n
        optimizer = 2 * trained * s.optimizer_bytes / (n if s.sharding != "none" else 1)
    else:
        trained = lora_params(shape, s.lora_r, "all")
        if s.method == "qlora":  # NF4: half a byte + ~0.127 bits of double-quantized scales
            weights = shape.linear_params * (0.5 + 0.127 / 8) + (P - shape.linear_params) * a
        else:
            weights = P * a
        weights += trained * 4  # peft keeps adapters in fp32
        grads = trained * 4
        optimizer = 2 * trained * s.optimizer_bytes
    tokens = s.micro_batch * s.row_tokens
    per_layer = a * (SAVED_HIDDEN * shape.hidden + SAVED_KV * shape.kv_dim + SAVED_MLP[shape.mlp] * shape.intermediate)
    scores = 2 * a * shape.heads * s.micro_batch * s.row_tokens**2 if s.eager_attention else 0
    if s.checkpointing:
        activations = tokens * (shape.layers * shape.hidden * a + per_layer) + scores
    else:
        activations = (tokens * per_layer + scores) * shape.layers
    if s.sharding in ("zero3", "fsdp2"):  # one layer gathered whole for its forward and backward
        activations += 2 * (P - shape.embedding_params) / shape.layers * a
    logits = tokens * shape.vocab * LOGIT_BYTES[a]
    tensors = weights + grads + optimizer + activations + logits
    return {
        "weights": weights,
        "gradients": grads,
        "optimizer": optimizer,
        "activations": activations,
        "logits": logits,
        "tensors": tensors,
        "total": tensors * FRAGMENTATION + RUNTIME_OVERHEAD,
        "trained_params": trained,
    }


GPU_SIZES = (8, 12, 16, 24, 40, 48, 80, 141)  # GB: the common cards, H200 last
MICRO_BATCHES = (8, 4, 2, 1)


def gpu_class(total_bytes: float) -> int | None:
    """The smallest common GPU (GB) that holds ``total_bytes`` with 10% to spare, or None."""
    need = total_bytes * 1.1 / 1e9
    return next((g for g in GPU_SIZES if g >= need), None)


@dataclass(frozen=True)
class Plan:
    """The settings a recipe should use: the GPU count and size, micro batch, checkpointing."""

    gpus: int
    gpu_gb: int
    micro_batch: int
    checkpointing: bool
    estimate: dict


def plan(cfg: dict, shape: Shape, effective: int = 8) -> Plan:
    """The fastest settings that fit: on the fewest GPUs (one, unless the recipe shards over
    several) whose memory holds the run with gradient checkpointing, the largest micro batch
    that fits that GPU, and checkpointing off wherever it fits the same GPU without it."""
    sharded = bool(cfg.get("deepspeed") or cfg.get("fsdp_version") or cfg.get("fsdp_config"))
    for gpus in (1, 2, 4, 8) if sharded else (1,):
        if effective % gpus:
            continue
        micros = [m for m in MICRO_BATCHES if m <= effective // gpus and (effective // gpus) % m == 0]

        def total(micro, ckpt, n=gpus):
            s = from_recipe({**cfg, "micro_batch_size": micro, "gradient_checkpointing": ckpt}, gpus=n)
            return estimate(shape, s)

        frugal = gpu_class(total(micros[0], True)["total"])
        if frugal is None or (sharded and frugal > 80):
            continue  # a sharded recipe spreads over more cards of up to 80 GB each
        for micro in micros:
            for ckpt in (False, True):
                est = total(micro, ckpt)
                if gpu_class(est["total"]) is not None and gpu_class(est["total"]) <= frugal:
                    return Plan(gpus, frugal, micro, ckpt, est)
    raise ValueError(f"{cfg.get('base_model')}: no setting fits 8 GPUs of {GPU_SIZES[-1]} GB")
