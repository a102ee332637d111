"""Axolotl recipes: find one by model and method, load and validate it with Axolotl's own
schema, derive a run's config from it, and derive a CPU variant.

``engram_run.runs.recipe_check`` (``make recipes``) validates every recipe as a GPU would.

The CPU variant keeps a recipe's own settings and swaps in a local model, CPU precision
and kernel switches: it is how the tests train every architecture and method offline.
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from engram_data.contract import DEFAULT_DATA_DIR, VARIANTS
from engram_data.errors import one_line
from engram_plugin.effective_batch import BatchError, split_batch

RECIPES_DIR = Path(__file__).resolve().parents[2] / "axolotl_configs"
METHODS = ("full", "lora", "qlora")


class RunError(Exception):
    """A bad request (unknown model, method, variant or path); the message says what to do."""


# GPU-only settings and what they become on a CPU: no mixed precision or TF32, the plain
# PyTorch optimizer (fused and paged-8-bit AdamW need CUDA), no Triton LoRA kernels, no
# flash-attention, no multi-GPU sharding. Sample packing stays as the recipe has it.
CPU_SETTINGS = {
    "bf16": False,
    "fp16": False,
    "tf32": False,
    "optimizer": "adamw_torch",
    "gradient_checkpointing": False,
    "lora_mlp_kernel": False,
    "lora_qkv_kernel": False,
    "lora_o_kernel": False,
    # On a few CPU cores, process pools for the packer and loader workers cost more than they
    # save (measured for the demo: see docs/benchmarks.md).
    "dataset_num_proc": 1,
    "dataloader_num_workers": 0,
}
GPU_ONLY_KEYS = ("deepspeed", "fsdp_version", "fsdp_config", "flash_attention")


def parse_overrides(pairs: list[str]) -> dict:
    """``--set KEY=VALUE ...`` as a dict, each value read as YAML (``3``, ``1e-4``, ``true``)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise RunError(f"--set takes KEY=VALUE (got {pair!r})")
        out[key] = yaml.safe_load(value)
    return out


def load_recipe(path: str | Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            cfg = yaml.safe_load(f)
    except OSError as exc:
        raise RunError(f"cannot read the recipe {path} ({exc.strerror or exc}); pass an existing .yml file") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise RunError(f"{path} is not valid YAML ({one_line(exc)}); fix the file") from None
    if not isinstance(cfg, dict):
        raise RunError(f"{path} is not an Axolotl config (a YAML mapping of keys); fix the file")
    return cfg


def recipe_method(cfg: dict) -> str:
    return {None: "full", "lora": "lora", "qlora": "qlora"}[cfg.get("adapter")]


# Every recipe file names its method (``<model>-<method>.yml``). A model's recommended method is
# the one ``MODEL=<model>`` trains without METHOD=, and the one its recipe had when recipes were
# named by model alone (``axolotl_configs/<model>.yml``): the table below maps each
# old bare name to its file.
RECOMMENDED = {
    "tiny": "full",
    "gpt2": "full",
    "gpt2-medium": "full",
    "gpt2-large": "full",
    "gpt2-xl": "full",
    "gptj6b": "lora",
    "llama1b": "full",
    "llama3b": "lora",
    "llama8b": "lora",
    "llama2-7b": "lora",
    "llama2-13b": "qlora",
    "olmo2-7b": "lora",
    "olmo2-13b": "qlora",
    "neox20b": "qlora",
    "smollm2-135m": "full",
}


def models() -> list[str]:
    """The models with recipes: the file names less their method."""
    return sorted({p.stem.rsplit("-", 1)[0] for p in RECIPES_DIR.glob("*.yml")})


def recipe_path(model: str, method: str | None = None) -> Path:
    """``axolotl_configs/<model>-<method>.yml``; without ``method``, the model's recommended one.
    ``model`` may also name a recipe file (``llama3b-lora``) or be an old bare recipe name
    with ``.yml`` (``llama3b.yml``: its recommended method)."""
    model = model.removesuffix(".yml")
    if method is None and (RECIPES_DIR / f"{model}.yml").exists():
        return RECIPES_DIR / f"{model}.yml"
    if model not in models():
        raise RunError(f"no recipe for MODEL={model}; choose from {', '.join(models())}")
    method = method or RECOMMENDED.get(model) or next(m for m in METHODS if (RECIPES_DIR / f"{model}-{m}.yml").exists())
    if method not in METHODS:
        raise RunError(f"unknown METHOD={method}; choose from {', '.join(METHODS)}")
    path = RECIPES_DIR / f"{model}-{method}.yml"
    if not path.exists():
        have = [m for m in METHODS if (RECIPES_DIR / f"{model}-{m}.yml").exists()]
        raise RunError(f"no {method} recipe for {model}; its recipes use {', '.join(have)}")
    return path


def derive_config(
    recipe: str | Path,
    data_dir: str | Path,
    output_dir: str | Path,
    variant: str | None = None,
    overrides: dict | None = None,
) -> dict:
    """The recipe, pointed at ``data_dir`` (its first dataset at text ``variant``) and
    writing to ``output_dir``, with ``overrides`` on top."""
    cfg = load_recipe(recipe)
    if variant is not None and variant not in VARIANTS:
        raise RunError(f"unknown VARIANT={variant}; choose from {', '.join(VARIANTS)}")
    data_dir = str(data_dir)
    for i, ds in enumerate(cfg.get("datasets", [])):
        path = ds["path"].replace(DEFAULT_DATA_DIR, data_dir, 1)
        if i == 0 and variant is not None:
            path = str(Path(path).with_name(f"{variant}.jsonl"))
        ds["path"] = path
    output_dir = Path(output_dir)
    cfg["output_dir"] = str(output_dir)
    cfg["dataset_prepared_path"] = str(output_dir.parent / "prepared")
    if "engram_data_dir" in cfg or "engram_plugin.EngramPlugin" in cfg.get("plugins", []):
        cfg["engram_data_dir"] = data_dir
    cfg.update(overrides or {})
    return cfg


def for_gpus(cfg: dict, gpus: int) -> dict:
    """The config for ``gpus`` data-parallel processes at the recipe's effective batch
    (``engram_effective_batch``, else micro x accumulation as written, for one GPU): micro
    batch and accumulation with micro x accumulation x gpus == that batch. RunError (one line)
    where the batch cannot be split so."""
    micro = int(cfg.get("micro_batch_size") or 1)
    effective = cfg.get("engram_effective_batch") or micro * int(cfg.get("gradient_accumulation_steps") or 1)
    try:
        micro, accum = split_batch(int(effective), micro, gpus)
    except BatchError as exc:
        raise RunError(f"GPUS={gpus}: {exc}") from None
    return {**cfg, "micro_batch_size": micro, "gradient_accumulation_steps": accum}


def write_config(cfg: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


PLUGIN = "engram_plugin.EngramPlugin"


def schema_message(exc: Exception) -> str:
    """A pydantic error as one line that keeps every field name and hint."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return one_line(exc)
    parts = []
    for e in errors():
        where = ".".join(map(str, e.get("loc", ()))) or "config"
        got = f" (got {e['input']!r})" if "input" in e and not isinstance(e["input"], dict) else ""
        parts.append(f"{where}: {e['msg'].removeprefix('Value error, ')}{got}")
    return "; ".join(parts)


def gpu_capabilities(n_gpu: int = 1) -> tuple[dict, dict]:
    """What ``axolotl.cli.config.gpu_capabilities()`` reports on an H100/H200 box with this
    torch: bf16 and TF32, ``n_gpu`` processes."""
    import torch

    caps = {"bf16": True, "fp8": True, "tf32": True, "n_gpu": n_gpu, "compute_capability": "sm_90"}
    return caps, {"torch_version": str(torch.__version__).split("+", maxsplit=1)[0]}


def on_a_bf16_gpu(cfg: dict) -> dict:
    """The config with ``bf16: auto`` as Axolotl resolves it on a bf16 GPU (true)."""
    return {**cfg, "bf16": True} if cfg.get("bf16") == "auto" else cfg


def validate(cfg: dict, gpus: int | None = None):
    """Axolotl's own validation, plugins included (their args join the schema). Axolotl
    drops unknown keys silently, so ``engram_*`` keys without the plugin listed are refused.
    ``gpus``: validate as ``axolotl train`` does on a CUDA machine with that many processes."""
    from axolotl.utils.config import prepare_plugins, validate_config
    from axolotl.utils.dict import DictDefault

    stray = sorted(k for k in cfg if str(k).startswith("engram_"))
    if stray and PLUGIN not in (cfg.get("plugins") or []):
        raise RunError(
            f"{', '.join(stray)} set but plugins does not list {PLUGIN}, so Axolotl would ignore "
            f"{'it' if len(stray) == 1 else 'them'}; add the plugin or remove the keys"
        )
    cfg = DictDefault(copy.deepcopy(cfg))
    prepare_plugins(cfg)
    caps, env = gpu_capabilities(gpus) if gpus else (None, None)
    try:
        return validate_config(cfg, capabilities=caps, env_capabilities=env)
    except (ValueError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
        raise RunError(f"the config fails Axolotl's schema: {schema_message(exc)}") from None


def cpu_variant(
    cfg: dict,
    base_model: str | Path,
    output_dir: str | Path,
    data_dir: str | Path | None = None,
    max_steps: int | None = None,
) -> dict:
    """The recipe with a local model, CPU switches and its own output folders."""
    cfg = copy.deepcopy(cfg)
    for key in GPU_ONLY_KEYS:
        cfg.pop(key, None)
    cfg.update(CPU_SETTINGS)
    if cfg.get("attn_implementation", "").startswith("flash_attention"):
        cfg["attn_implementation"] = "eager"  # flash-attention is CUDA-only; eager exists for every model
    if cfg.get("adapter") == "qlora":
        # bitsandbytes (0.50) repacks 4-bit weights for CPU inference during an evaluation
        # pass on AVX512-BF16 CPUs; the next training step then fails on layers with a bias
        # (GPT-J, NeoX). GPUs are unaffected. On CPU, QLoRA trains without any inference
        # pass: no eval split (and so no metric to rank checkpoints by), no in-training recall.
        cfg["val_set_size"] = 0.0
        cfg.pop("metric_for_best_model", None)
        cfg.pop("greater_is_better", None)
        if "engram_recall_eval" in cfg or "engram_plugin.EngramPlugin" in cfg.get("plugins", []):
            cfg["engram_recall_eval"] = False
    cfg["base_model"] = str(base_model)
    cfg["special_tokens"] = {"pad_token": _pad_token(base_model)}
    if data_dir is not None:
        for ds in cfg.get("datasets", []):
            ds["path"] = ds["path"].replace(DEFAULT_DATA_DIR, str(data_dir), 1)
        if "engram_data_dir" in cfg:
            cfg["engram_data_dir"] = str(data_dir)
    if "engram_eval_samples" in cfg:
        cfg["engram_eval_samples"] = min(cfg["engram_eval_samples"] or 8, 8)  # a CPU: a few per field
    output_dir = Path(output_dir)
    cfg["output_dir"] = str(output_dir)
    cfg["dataset_prepared_path"] = str(output_dir / "prepared")
    if max_steps is not None:
        cfg["max_steps"] = max_steps
        cfg["warmup_steps"] = 0
    return cfg


def _pad_token(model_dir: str | Path) -> str:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir)).pad_token
