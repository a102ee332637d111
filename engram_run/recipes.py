"""Axolotl recipes: find one by model and method, load and validate it with Axolotl's own
schema, derive a run's config from it, and derive a CPU variant.

Usage:
    python -m engram_run.recipes check axolotl_configs/*.yml

The CPU variant keeps a recipe's own settings and swaps in a local model, CPU precision
and kernel switches: it is how the tests train every architecture and method offline.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import yaml

from engram_data.contract import VARIANTS
from engram_data.errors import one_line

RECIPES_DIR = Path(__file__).resolve().parent.parent / "axolotl_configs"
DEFAULT_DATA_DIR = "data/bios"
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
}
GPU_ONLY_KEYS = ("deepspeed", "fsdp_version", "fsdp_config", "flash_attention")


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


def recipe_path(model: str, method: str | None = None) -> Path:
    """``axolotl_configs/<model>.yml``, or ``<model>-<method>.yml`` for another method."""
    base = RECIPES_DIR / f"{model}.yml"
    if not base.exists():
        known = sorted(p.stem for p in RECIPES_DIR.glob("*.yml") if p.stem.rsplit("-", 1)[-1] not in METHODS)
        raise RunError(f"no recipe for MODEL={model}; choose from {', '.join(known)}")
    if method is None or method == recipe_method(load_recipe(base)):
        return base
    if method not in METHODS:
        raise RunError(f"unknown METHOD={method}; choose from {', '.join(METHODS)}")
    variant = RECIPES_DIR / f"{model}-{method}.yml"
    if not variant.exists():
        have = [recipe_method(load_recipe(base))] + [m for m in METHODS if (RECIPES_DIR / f"{model}-{m}.yml").exists()]
        raise RunError(f"no {method} recipe for {model}; its recipes use {', '.join(have)}")
    return variant


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


def validate(cfg: dict):
    """Axolotl's own validation, plugins included (their args join the schema). Axolotl
    drops unknown keys silently, so ``engram_*`` keys without the plugin listed are refused."""
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
    try:
        return validate_config(cfg)
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


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] != "check" or len(args) < 2:
        print("python -m engram_run.recipes: error: usage: python -m engram_run.recipes check RECIPE.yml [...]",
              file=sys.stderr)  # fmt: skip
        return 2
    failed = 0
    for path in args[1:]:
        try:
            validate(load_recipe(path))
            print(f"ok      {path}")
        except RunError as exc:  # report every recipe, not only the first failure
            failed += 1
            print(f"FAILED  {path}: {exc}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
