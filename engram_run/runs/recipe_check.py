"""``make recipes``: every recipe as Axolotl takes it, on any machine and on a GPU.

Usage:
    python -m engram_run.runs.recipe_check axolotl_configs/*.yml

Each recipe is validated twice: with Axolotl's schema as on any machine, and as ``axolotl
train`` validates it on a CUDA machine with bf16 (the GPU's capabilities passed, which turns
on Axolotl's fused LoRA kernels where a recipe leaves them unset), then resolved as Axolotl
does (``normalize_config``) against its model's real config (engram_run.runs.architectures) and
given the attention patch those kernels need, with no GPU and no download.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

from engram_data.errors import one_line
from engram_run.runs.architectures import ARCHITECTURES, config_for
from engram_run.runs.recipes import RunError, load_recipe, on_a_bf16_gpu, validate


def recipe_gpus(path: str | Path) -> int:
    """The GPU count a recipe's header runs it on (``--num_processes N``), else 1."""
    head = "\n".join(Path(path).read_text(encoding="utf-8").splitlines()[:4])
    found = re.search(r"--num_processes (\d+)", head)
    return int(found.group(1)) if found else 1


def gpu_check(cfg: dict, gpus: int = 1, model_dir: str | Path | None = None):
    """The recipe as ``axolotl train`` takes it on a bf16 GPU: validated with the GPU's
    capabilities, resolved by ``normalize_config`` against its model's config (``model_dir``,
    else the real shape from :mod:`engram_run.runs.architectures`), and, where the fused LoRA kernels
    end up on, with Axolotl's attention patch applied (then undone). Returns the resolved config;
    RunError with Axolotl's own message where the GPU path would stop."""
    from axolotl.utils.config import normalize_config
    from axolotl.utils.dict import DictDefault

    validated = validate(cfg, gpus=gpus)
    with tempfile.TemporaryDirectory() as tmp:
        if model_dir is None:
            try:
                config_for(cfg["base_model"]).save_pretrained(tmp)
            except KeyError as exc:
                raise RunError(str(exc.args[0])) from None
            model_dir = tmp
        validated["base_model"] = validated["base_model_config"] = str(model_dir)
        validated.pop("tokenizer_config", None)
        validated = DictDefault(on_a_bf16_gpu(validated))
        try:
            normalize_config(validated)
        except (ValueError, OSError) as exc:
            raise RunError(f"Axolotl cannot resolve the config: {one_line(exc)}") from None
        if validated.get("lora_qkv_kernel") or validated.get("lora_o_kernel"):
            _try_attention_patch(validated)
    return validated


def _try_attention_patch(cfg) -> None:
    """Axolotl's LoRA QKV/O attention patch on the model's attention class, restored after."""
    from axolotl.monkeypatch.lora_kernels import get_attention_cls_from_config, patch_self_attn_lora

    cls = get_attention_cls_from_config(cfg)
    forward = cls.__dict__.get("forward")
    had_original = "_original_forward" in cls.__dict__
    try:
        patch_self_attn_lora(cfg)
    except AssertionError as exc:
        raise RunError(
            f"Axolotl's fused LoRA kernels (auto-enabled on a GPU) cannot patch {cls.__name__}: {exc}; "
            "set lora_qkv_kernel, lora_o_kernel and lora_mlp_kernel to false"
        ) from None
    finally:
        if forward is not None:
            cls.forward = forward
        if not had_original and "_original_forward" in cls.__dict__:
            delattr(cls, "_original_forward")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0].startswith("-"):
        print(
            "python -m engram_run.runs.recipe_check: error: usage: python -m engram_run.runs.recipe_check RECIPE.yml [...]",
            file=sys.stderr,
        )
        return 2
    failed = 0
    for path in args:
        try:
            cfg = load_recipe(path)
            validate(cfg)
            base = str(cfg.get("base_model"))
            local = Path(base).is_dir()
            note = f"schema only: {base} is built locally (make tiny-model)"
            if local or base in ARCHITECTURES:  # the GPU path too, against the model's config
                gpus = recipe_gpus(path)
                resolved = gpu_check(cfg, gpus, model_dir=base if local else None)
                kernels = "on" if resolved.get("lora_qkv_kernel") else "off" if cfg.get("adapter") else "n/a"
                note = f"GPU: bf16, {gpus} process(es), LoRA kernels {kernels}"
            print(f"ok      {path} ({note})")
        except RunError as exc:  # report every recipe, not only the first failure
            failed += 1
            print(f"FAILED  {path}: {exc}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
