"""lm-eval's arguments for a run: ``--metadata`` for a generated dataset, and ``--model_args``
for what a recipe trained: a full model folder, a LoRA adapter on its base (hf's ``peft=``,
vLLM's ``lora_local_path=``), a QLoRA adapter on the 4-bit base it trained on, read from the
Axolotl config keys (``adapter``, ``load_in_4bit``, ``bnb_config_kwargs``)."""

from __future__ import annotations

import json
from pathlib import Path

BACKENDS = ("hf", "vllm")


def eval_metadata(data_dir: str | Path) -> dict:
    """lm-eval's ``--metadata`` for a generated dataset: the bios_qa tasks read ``data_dir``,
    the corpus_qa tasks ``corpus_dir``; one folder is one or the other, and only tasks that match it run."""
    return {"data_dir": str(data_dir), "corpus_dir": str(data_dir)}


def model_args(
    model_dir: str | Path, base_model: str, backend: str = "hf", extra: str = "", quantization: dict | None = None
) -> str:
    """lm-eval's ``--model_args`` for a trained output folder: the model itself, or for a
    LoRA adapter the base model plus the adapter (``peft=`` for hf, ``lora_local_path=``
    for vLLM, with the adapter's rank), then ``extra`` (``key=value,...``) as given.
    ``quantization``: a QLoRA run's bitsandbytes settings (``load_in_4bit=True``, ...), so that
    the adapter is scored on the 4-bit base it trained on (``engram-eval`` turns them into a
    ``BitsAndBytesConfig``); vLLM cannot load a bitsandbytes base with a LoRA adapter."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown lm-eval backend {backend!r}; choose from {', '.join(BACKENDS)}")
    model_dir = Path(model_dir)
    adapter = model_dir / "adapter_config.json"
    if not adapter.exists():
        args = f"pretrained={model_dir},dtype=auto"
    elif backend == "hf":
        args = f"pretrained={base_model},peft={model_dir},dtype=auto"
        if quantization:
            args += "," + ",".join(f"{k}={v}" for k, v in quantization.items())
    else:
        rank = json.loads(adapter.read_text()).get("r", 16)
        args = f"pretrained={base_model},lora_local_path={model_dir},enable_lora=True,max_lora_rank={rank},dtype=auto"
    return f"{args},{extra.strip(',')}" if extra.strip(",") else args


def qlora_quantization(cfg: dict, dtype: str | None = None) -> dict | None:
    """A QLoRA config's 4-bit base as Axolotl's ``ModelLoader`` builds it (NF4, double
    quantization, compute in the run's dtype, then ``bnb_config_kwargs``), as lm-eval model
    args; None for any other config. ``dtype``: the run's resolved dtype (``bfloat16``...),
    else read from ``bf16`` / ``fp16`` as a bf16 GPU resolves them."""
    if not (cfg.get("adapter") == "qlora" and cfg.get("load_in_4bit")):
        return None
    if dtype is None:
        dtype = "bfloat16" if cfg.get("bf16") in (True, "auto") else "float16" if cfg.get("fp16") else "float32"
    settings = {
        "load_in_4bit": True,
        "bnb_4bit_quant_type": "nf4",
        "bnb_4bit_use_double_quant": True,
        "bnb_4bit_compute_dtype": str(dtype).removeprefix("torch."),
    }
    for key, value in (cfg.get("bnb_config_kwargs") or {}).items():
        if key in settings:
            settings[key] = str(value).removeprefix("torch.") if "dtype" in key else value
    return settings
