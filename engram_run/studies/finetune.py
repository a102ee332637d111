"""``make finetune-study``: the seeds' experiment on a model that already knows language.

A pretrained model (default: SmolLM2-135M-Instruct from ``make pretrained``) is fine-tuned on
one bioS population, ``bioS`` biographies of every person mixed with the QA pairs of the train
half (plain text, the ``Question: ...\\nAnswer: ...`` lines the bios_qa tasks score: no chat
template, so that training and scoring see the same form), every arm for the same epochs on
the same data. The arms:

- ``full-b1``, ``full-b8``, ``full-b32``: full fine-tuning at batch 1, 8 and 32 with the same
  constant learning rate (the advice "small batches memorize better" at equal epochs: batch 1
  takes 32x the updates of batch 32);
- ``full-b32-lr32``: batch 32 at 32x that rate (linear scaling from batch 1), the control;
- ``lora-r8``, ``lora-r64``: LoRA on every linear layer at ``lora_batch``, the embeddings frozen;
- ``lora-r8-emb``, ``lora-r64-emb``: the same with the embeddings trained
  (``lora_modules_to_save: [embed_tokens]`` with ``peft_ensure_weight_tying``: one trained copy
  that the tied LM head shares, so the tie holds);
- ``full-b1-fp32``: ``full-b1`` in fp32 instead of bf16 autocast (the precision control).

A batch is that many samples (one biography or one QA pair each): no packing, so that batch 1
is one fact-bearing text per update. Each final model is scored by lm-eval with its standard
errors: trained-QA recall (four-option, train people), extraction (heldout people, whose QA
never trained: four-option and generated, exact match) and reverse (the name from birth date
and city), beside the un-tuned model on the same questions (the floor); and what it forgot
(``engram_eval.forgetting``: loss and KL against the un-tuned model on a fixed English text,
answers to fixed general prompts). Arms in ``repeat`` run once per seed (training order and
LoRA initialisation), the others on the first seed.

    RESULTS/finetune.json   {"rows": {arm@seed: {...}}, "untrained": {...}, "settings": {...}}
    RESULTS/finetune.md     the tables; RESULTS/finetune.png: recall and forgetting per arm
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from engram_data.contract import MANIFEST, QA_TRAIN, train_file
from engram_run.runs import launch
from engram_run.runs.recipes import RECIPES_DIR, RunError, derive_config, write_config
from engram_run.studies.common import lm_eval_row, timer
from engram_run.studies.finetune_report import SCORES, write_results


@dataclass(frozen=True)
class Arm:
    method: str  # full | lora
    batch: int | None = None  # None: the study's lora_batch
    lr_scale: float = 1.0
    rank: int | None = None
    embeddings: bool = False
    fp32: bool = False


ARMS = {
    "full-b1": Arm("full", 1),
    "full-b8": Arm("full", 8),
    "full-b32": Arm("full", 32),
    "full-b32-lr32": Arm("full", 32, lr_scale=32.0),
    "lora-r8": Arm("lora", rank=8),
    "lora-r64": Arm("lora", rank=64),
    "lora-r8-emb": Arm("lora", rank=8, embeddings=True),
    "lora-r64-emb": Arm("lora", rank=64, embeddings=True),
    "full-b1-fp32": Arm("full", 1, fp32=True),
}
# What fits 45 minutes on 2 cores (measured; docs/finetune.md): the headline comparisons.
DEFAULT_ARMS = ("full-b1", "full-b32")
HEADLINE = ("full-b1", "full-b32", "lora-r64-emb")


@dataclass(frozen=True)
class FinetuneSettings:
    model: Path = Path("models/smollm2-135m")
    people: int = 100  # half train (QA trained), half heldout
    variant: str = "bioS"
    epochs: int = 6
    learning_rate: float = 1e-4  # every full fine-tuning arm (the recipe's rate)
    lora_learning_rate: float = 5e-4  # every LoRA arm (the LoRA recipe's rate)
    lora_batch: int = 1
    arms: tuple[str, ...] = DEFAULT_ARMS
    seeds: tuple[int, ...] = (0,)
    repeat: tuple[str, ...] = HEADLINE  # arms run on every seed; the others on the first
    limit: int | None = None  # questions per task scored (a reduced run); None: all
    data_dir: Path = Path("data/finetune")
    outputs: Path = Path("outputs/finetune")
    results: Path = Path("results/finetune")


def plan(s: FinetuneSettings) -> list[tuple[str, int]]:
    """(arm, seed) in the order they run: every arm on the first seed, then the repeats."""
    first, *others = s.seeds
    return [(a, first) for a in s.arms] + [(a, seed) for seed in others for a in s.arms if a in s.repeat]


def arm_config(s: FinetuneSettings, name: str, seed: int, model_dir: Path) -> dict:
    arm = ARMS[name]
    batch = arm.batch or s.lora_batch
    recipe = RECIPES_DIR / f"smollm2-135m-{arm.method}.yml"
    lr = (s.learning_rate if arm.method == "full" else s.lora_learning_rate) * arm.lr_scale
    overrides = {
        "base_model": str(s.model),
        "num_epochs": s.epochs,
        "micro_batch_size": batch,
        "gradient_accumulation_steps": 1,
        "engram_effective_batch": batch,
        "learning_rate": lr,
        "lr_scheduler": "constant",
        "warmup_steps": 0,
        "optimizer": "adamw_torch_fused",  # one pass over the weights: a third of foreach's time on a CPU
        "seed": seed,
        # One sample per row: batch N is N texts.
        "sample_packing": False,
        "pad_to_sequence_len": False,
        "sequence_len": 128,  # a biography is ~68 tokens, a QA pair ~20
        # Every biography trains (no validation split); the final model is scored by lm-eval.
        "val_set_size": 0,
        "save_strategy": "no",
        # With no validation split the plugin scores recall once per epoch: the curve, all of the
        # train people's questions (four-option), beside lm-eval's final scores.
        "engram_recall_eval": True,
        "engram_eval_samples": None,
        "engram_eval_heldout": False,
        "engram_eval_reverse": False,
        "engram_save_best": False,
        "gradient_checkpointing": False,
        "bf16": not arm.fp32,  # the plugin's fp32 master weights under bf16 autocast (CPU or GPU)
        "logging_steps": 10,
    }
    cfg = derive_config(recipe, s.data_dir, model_dir, s.variant, overrides)
    for key in ("evals_per_epoch", "saves_per_epoch", "metric_for_best_model", "greater_is_better"):
        cfg.pop(key, None)
    if arm.method == "full":
        cfg["engram_fp32_master_weights"] = not arm.fp32
    else:
        cfg |= {"lora_r": arm.rank, "lora_alpha": 2 * arm.rank}
        if arm.embeddings:
            cfg |= {"lora_modules_to_save": ["embed_tokens"], "peft_ensure_weight_tying": True}
    cfg["datasets"] = [cfg["datasets"][0], {**cfg["datasets"][0], "path": str(train_file(s.data_dir, QA_TRAIN))}]
    return cfg


def finetune_study(s: FinetuneSettings) -> Path:
    from engram_eval.forgetting import Reference

    step = timer("finetune")
    unknown = [a for a in (*s.arms, *s.repeat) if a not in ARMS]
    if unknown or not s.arms:
        raise RunError(f"unknown arm {', '.join(unknown) or '(none)'}; choose from {', '.join(ARMS)}")
    if not (Path(s.model) / "config.json").exists():
        raise RunError(f"{s.model} is not a model folder; run `make pretrained` or pass --model FOLDER")
    if s.outputs.exists() and not (s.outputs / launch.MARKER).exists():
        raise RunError(f"{s.outputs} exists and was not written by engram_run; move it away or pass --outputs")
    step(f"generating {s.people} people into {s.data_dir}")
    launch.generate_data(s.data_dir, s.people, seed=0, variants=(s.variant,))
    if not (s.data_dir / MANIFEST).exists():
        raise RunError(f"{s.data_dir} has no dataset")
    launch.remove_own(s.outputs)
    launch.claim(s.outputs)
    step(f"the un-tuned model {s.model}: general text and prompts")
    reference = Reference.of(s.model)
    untrained = score(s, s.model, s.outputs / "untrained", step, "untrained")
    untrained["forgetting"] = reference.compare(s.model)
    rows: dict[str, dict] = {}
    for name, seed in plan(s):
        label = f"{name}@seed{seed}"
        folder = launch.claim(s.outputs / f"{name}-seed{seed}")
        cfg = arm_config(s, name, seed, folder / "model")
        config = write_config(cfg, folder / "config.yml")
        step(f"{label}: axolotl train, batch {cfg['micro_batch_size']}, lr {cfg['learning_rate']:g}, {s.epochs} epochs")
        start = time.perf_counter()
        if not launch.train(config, folder / "model", folder / "train.log"):
            raise RunError(f"training {label} failed; see {folder / 'train.log'}")
        seconds = time.perf_counter() - start
        history = recall_history(folder / "model")
        row = score(s, folder / "model", folder / "lm_eval", step, label)
        row["forgetting"] = reference.compare(folder / "model")
        row |= {
            "arm": name,
            "seed": seed,
            "batch": cfg["micro_batch_size"],
            "learning_rate": cfg["learning_rate"],
            "steps": history[-1]["step"],  # the last scoring is at the last step
            "recall_by_epoch": recall_curve(history),
            "train_seconds": round(seconds, 1),
        }
        f = row["forgetting"]
        step(f"{label}: general-text loss {f['loss_base']:.3f} -> {f['loss_tuned']:.3f}, KL {f['kl']:.3f}")
        rows[label] = row
        write_results(rows, untrained, s, partial=True)
    path = write_results(rows, untrained, s)
    step(f"done: {path}")
    return path


def recall_history(model_dir: Path) -> list[dict]:
    """The plugin's recall scorings of a run, one per epoch's end (the first: before training)."""
    import json

    from engram_data.run_files import RECALL_HISTORY

    return [json.loads(line) for line in (model_dir / RECALL_HISTORY).read_text().splitlines() if line.strip()]


def recall_curve(history: list[dict]) -> list[list[float]]:
    """[[epoch, trained-QA recall]] (epoch 0: before training)."""
    key = "eval_engram_qa_acc_overall"
    return [[round(r.get("epoch") or 0.0, 3), r[key]] for r in history if key in r]


def score(s: FinetuneSettings, model_dir: Path, out: Path, step, label: str) -> dict:
    step(f"{label}: lm-eval")
    row = lm_eval_row(model_dir, str(s.model), s.data_dir, out, SCORES, label, limit=s.limit)
    sc = row["scores"]
    step(
        f"{label}: trained QA {sc['trained_qa']:.3f}, heldout {sc['heldout']:.3f} (four-option) "
        f"{sc['heldout_exact']:.3f} (exact), reverse {sc['reverse']:.3f}"
    )
    return row
