"""The engram plugin's configuration keys: one pydantic model, every key ``engram_*``.

Axolotl merges this model into its config schema when a recipe lists
``plugins: [engram_plugin.EngramPlugin]``. Axolotl drops unknown keys silently, so a
misspelled ``engram_*`` key is rejected here, with the nearest valid key suggested.
"""

from __future__ import annotations

import difflib
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from engram_data.contract import DEFAULT_DATA_DIR, DEFAULT_TASKS
from engram_plugin.effective_batch import BatchError, data_parallel, split_batch, world_size

DEFAULT_POST_EVAL_TASKS = list(DEFAULT_TASKS)


class EngramArgs(BaseModel):
    """Input args of the engram plugin (all optional)."""

    engram_data_dir: str = Field(
        default=DEFAULT_DATA_DIR,
        description="Dataset written by generate_data.py: its qa/<field>.jsonl are the recall questions (a documents "
        "dataset, generate_data.py corpus: qa/corpus.jsonl by style, heldout = the held-out temperatures).",
    )
    # Freezing
    engram_freeze_embeddings: bool = Field(
        default=False,
        description="Freeze what the original froze: the input embeddings, GPT-2's position embeddings, "
        "and the output head whether tied to the embeddings or not (GPT-J, NeoX, Llama 3.1 8B: untied).",
    )
    engram_freeze_layers: list[int] | None = Field(
        default=None, description="Indices of transformer layers to freeze (0 is the first)."
    )
    # Recall evaluation during training
    engram_recall_eval: bool = Field(
        default=True,
        description="Score four-option recall at the start and in every evaluation, as eval_engram_* metrics.",
    )
    engram_eval_samples: int | None = Field(
        default=100,
        description="Questions per field (the first N, like lm_eval --limit N); null for all.",
    )
    engram_eval_heldout: bool = Field(default=False, description="Also score heldout people (never QA-trained).")
    engram_eval_reverse: bool = Field(default=False, description="Also score the reverse (name) questions.")
    engram_eval_batch_size: int = Field(default=32, description="Questions per forward pass.")
    engram_eval_capacity: bool = Field(
        default=False,
        description="Also log knowledge capacity in every evaluation (eval_engram_capacity_bits, _bits_per_param, "
        "...) for the first engram_eval_samples train people; the measure is engram_capacity_measure.",
    )
    engram_capacity_measure: Literal["bound", "qa"] = Field(
        default="bound",
        description="bound: Physics of LM 3.3's bit-complexity lower bound from the losses inside the training "
        "biographies (_name_bits, _value_bits); qa: bits extractable through QA prompts (per field).",
    )
    # Best checkpoint and stopping
    engram_save_best: bool = Field(
        default=True,
        description="Keep the checkpoint with the best overall recall as OUTPUT_DIR/best_model_qa_<acc>: a link to "
        "HF's best checkpoint when metric_for_best_model is an eval_engram_* metric, else the plugin's own save.",
    )
    engram_early_stopping_patience: int | None = Field(
        default=None, description="Stop when validation loss has risen for this many evaluations in a row."
    )
    engram_stop_at_recall: float | None = Field(
        default=None, description="Stop once overall recall (train people) reaches this accuracy."
    )
    # Speed
    engram_gc_freeze: bool = Field(
        default=True,
        description="Before the data is prepared and again at the start of training, exempt every object alive "
        "then (libraries, model, data) from Python's garbage collection (gc.freeze, undone at train end): "
        "Axolotl's packing sampler and checkpoint saves call gc.collect() several times per epoch, and each call "
        "would scan them all again (a tenth of the demo's CPU training).",
    )
    # Batch and precision: the experiment a recipe states, on any GPU count
    engram_effective_batch: int | None = Field(
        default=None,
        description="Sequences per optimizer step, whatever the GPU count: micro_batch_size and "
        "gradient_accumulation_steps are derived for the run's data-parallel processes (Axolotl would "
        "multiply the batch by them). Unset: the batch grows with the GPU count, as in Axolotl.",
    )
    engram_fp32_master_weights: bool = Field(
        default=False,
        description="Full fine-tuning under bf16/fp16: keep the trained weights (and so AdamW's states) in fp32 "
        "while the forward pass runs in bf16 autocast. Axolotl loads the weights in bf16, where one step at "
        "a fine-tuning rate leaves most weights unchanged. DeepSpeed and FSDP2 keep fp32 masters themselves.",
    )
    # After training
    engram_post_eval: bool = Field(default=False, description="Run lm-eval's bios_qa family after training.")
    engram_post_eval_model: Literal["final", "best"] = Field(
        default="final", description="Which model the post-training evaluation scores."
    )
    engram_post_eval_tasks: list[str] = Field(
        default_factory=lambda: list(DEFAULT_POST_EVAL_TASKS), description="lm-eval tasks to run after training."
    )
    engram_post_eval_limit: int | None = Field(default=None, description="lm-eval --limit for the post-training run.")
    engram_post_eval_log_samples: bool = Field(
        default=True, description="lm-eval --log_samples: every question's scores, beside the results file."
    )

    @model_validator(mode="before")
    @classmethod
    def reject_unknown_engram_keys(cls, data):
        if not isinstance(data, dict):
            return data
        known = set(EngramArgs.model_fields)
        for key in data:
            if isinstance(key, str) and key.startswith("engram_") and key not in known:
                close = difflib.get_close_matches(key, sorted(known), n=1)
                hint = f"did you mean '{close[0]}'?" if close else f"valid keys: {', '.join(sorted(known))}"
                raise ValueError(f"unknown engram plugin key '{key}': {hint} (Axolotl would silently ignore it)")
        return data

    @model_validator(mode="before")
    @classmethod
    def keep_the_effective_batch(cls, data):
        """micro x accumulation x data-parallel GPUs == engram_effective_batch, in every process: the
        accumulation (and, where a GPU's share is smaller, the micro batch) is derived, whatever
        the config wrote; the plugin logs the split at model load."""
        if not isinstance(data, dict) or data.get("engram_effective_batch") is None:
            return data
        effective = data["engram_effective_batch"]
        if not isinstance(effective, int) or effective < 1:
            raise ValueError(f"engram_effective_batch must be a positive integer (got {effective!r})")
        n = data_parallel(world_size(data), data.get("context_parallel_size"), data.get("tensor_parallel_size"))
        micro = data.get("micro_batch_size") or 1
        accum = data.get("gradient_accumulation_steps")
        if accum and micro * accum * n == effective:
            return data
        try:
            micro, accum = split_batch(effective, micro, n)
        except BatchError as exc:
            raise ValueError(str(exc)) from None
        data = {**data, "micro_batch_size": micro, "gradient_accumulation_steps": accum}
        data.pop("batch_size", None)  # Axolotl recomputes it from the two
        return data

    @model_validator(mode="before")
    @classmethod
    def fp32_masters_for_full_fine_tuning_only(cls, data):
        if not isinstance(data, dict) or not data.get("engram_fp32_master_weights"):
            return data
        if data.get("adapter"):
            raise ValueError(
                "engram_fp32_master_weights is for full fine-tuning; peft already keeps LoRA weights in fp32: "
                "remove the key"
            )
        if data.get("deepspeed") or data.get("fsdp_config") or data.get("fsdp"):
            raise ValueError(
                "engram_fp32_master_weights is not needed with DeepSpeed or FSDP, which keep fp32 master "
                "weights themselves: remove the key"
            )
        return data

    @model_validator(mode="before")
    @classmethod
    def early_stopping_needs_an_eval_split(cls, data):
        if (
            isinstance(data, dict)
            and data.get("engram_early_stopping_patience")
            and not (data.get("val_set_size") or data.get("test_datasets"))
        ):
            raise ValueError(
                "engram_early_stopping_patience watches validation loss: set val_set_size > 0 "
                "(or test_datasets), or remove engram_early_stopping_patience"
            )
        return data

    @model_validator(mode="before")
    @classmethod
    def best_by_recall_needs_recall(cls, data):
        metric = str(data.get("metric_for_best_model") or "") if isinstance(data, dict) else ""
        if metric.removeprefix("eval_").startswith("engram_") and data.get("engram_recall_eval") is False:
            raise ValueError(
                f"metric_for_best_model is {metric}, which only exists with engram_recall_eval: true; "
                "turn recall on, or rank checkpoints by another metric (e.g. eval_loss)"
            )
        return data

    @field_validator("engram_freeze_layers")
    @classmethod
    def check_layers(cls, layers):
        if layers is not None:
            if any(i < 0 for i in layers):
                raise ValueError(f"engram_freeze_layers must hold layer indices >= 0 (got {layers})")
            if len(set(layers)) != len(layers):
                raise ValueError(f"engram_freeze_layers lists a layer twice (got {layers}); list each index once")
        return layers

    @field_validator("engram_eval_samples", "engram_post_eval_limit", "engram_early_stopping_patience")
    @classmethod
    def check_positive(cls, value, info):
        if value is not None and value <= 0:
            raise ValueError(f"{info.field_name} must be a positive integer or null (got {value})")
        return value

    @field_validator("engram_eval_batch_size")
    @classmethod
    def check_batch(cls, value):
        if value <= 0:
            raise ValueError(f"engram_eval_batch_size must be a positive integer (got {value})")
        return value

    @field_validator("engram_stop_at_recall")
    @classmethod
    def check_target(cls, value):
        if value is not None and not 0.0 < value <= 1.0:
            raise ValueError(f"engram_stop_at_recall is an accuracy in (0, 1] (got {value}), e.g. 0.99")
        return value

    @field_validator("engram_post_eval_tasks")
    @classmethod
    def check_tasks(cls, tasks):
        if not tasks:
            raise ValueError("engram_post_eval_tasks is empty; list lm-eval tasks such as bios_qa")
        return tasks
