"""``make reproduce``'s sizes (``SCALE=ci|default|reference|paper``) and the Axolotl config of
each of its runs, in Physics of LM 3.1's protocol (Allen-Zhu and Li, arXiv:2309.14316 v3,
section 2 and appendices B-D), scaled down in people, model size, batch and steps only:

- **Pretraining** (the biographies, or in ``mixed`` the biographies and the QA of train
  people): AdamW with weight decay 0.1 and eps 1e-6, warmup for the paper's share of the steps
  (1,000 of 80,000) and cosine decay to a tenth of the peak rate, the **same number of
  optimizer steps for every variant** (a one-biography variant passes over its text more
  often), rows of packed text. Every person's biographies train: no validation split; the
  plugin's recall runs on the trained QA as the evaluation set.
- **Mixed training**: the QA of train people make ``qa_share`` of the training text (the
  paper's 80% of sequences), by repeating the QA file.
- **QA fine-tune** (``bio_then_qa``'s second run): LoRA on the query and value projections
  (rank ``qa_lora_rank``; the paper: 8 to 16) with the embeddings updated in full
  (``lora_modules_to_save``; the paper: rank 128 on them), weight decay 0.01, no warmup,
  cosine to a tenth (the paper's appendix D); ``qa_finetune: full`` updates every weight instead.

The tokenizer is a BPE trained on the data (the paper's GPT-2 tokenizer is not available
offline); the model a Llama with rotary embeddings and 64-wide heads, as the paper's
GPT-2 shape with rotary embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path

from engram_data.contract import QA_TRAIN, VARIANTS, train_file
from engram_run.runs.recipes import RECIPES_DIR, RunError, derive_config, recipe_path
from engram_run.studies.common import text_size

PROTOCOLS = ("mixed", "bio_then_qa")
# The paper's variants (docs/data.md), one biography to five permuted reworded ones.
PAPER_VARIANTS = VARIANTS
PAPER_WARMUP = 1000 / 80000  # warmup steps over all steps
PAPER_STEPS = 80000
EVAL_ROWS = 32
EVALUATIONS = 8  # recall scorings (and checkpoints) per run, at the same shares of every run


@dataclass(frozen=True)
class ReproduceSettings:
    model: str = "tiny"  # tiny: a model from scratch (any size, CPU or GPU); else a full recipe (llama1b, ...)
    scale: str = "default"
    people: int = 60  # half of them have trained QA
    hidden: int = 128
    layers: int = 4
    vocab_size: int = 2048
    sequence_len: int = 256  # the paper: 512
    micro_batch: int = 8  # packed rows per optimizer step (the paper: 96)
    steps: int = 900  # the biography (or mixed) run's optimizer steps, every variant the same
    learning_rate: float = 2e-3  # the paper: 1e-3 at batch 96
    weight_decay: float = 0.1
    adam_epsilon: float = 1e-6
    warmup_ratio: float = PAPER_WARMUP
    min_lr_ratio: float = 0.1
    qa_share: float = 0.8  # mixed: the QA of train people's share of the training text
    qa_finetune: str = "lora"  # lora | full
    qa_steps: int = 300
    qa_learning_rate: float = 3e-3  # the paper: 3e-4 at batch 48, for a 124M model
    qa_weight_decay: float = 0.01
    qa_lora_rank: int = 16
    qa_micro_batch: int = 16  # QA pairs per step, unpacked (the paper: 48)
    seed: int = 0
    variants: tuple[str, ...] = PAPER_VARIANTS
    protocols: tuple[str, ...] = PROTOCOLS
    data_dir: Path = Path("data/reproduce")
    outputs: Path = Path("outputs/reproduce")
    results: Path = Path("results/reproduce")

    @property
    def heads(self) -> int:
        return max(1, self.hidden // 64)  # 64-wide heads, as the paper's GPT-2 shape


# Each scale's sizes over the defaults above; every other setting is the paper's or stated there.
SCALES: dict[str, dict] = {
    # The suite's: bioS under both protocols, seconds per run (tests/test_reproduce.py).
    "ci": {
        "people": 60,
        "hidden": 64,
        "layers": 2,
        "vocab_size": 1024,
        "micro_batch": 4,
        "steps": 400,
        "learning_rate": 3e-3,
        "qa_steps": 150,
        "qa_micro_batch": 8,
        "variants": ("bioS",),
    },
    "default": {},
    # The smallest run that separates bioS from multi5 + permute on 2 cores (docs/reproduce.md).
    "reference": {
        "people": 500,
        "hidden": 128,
        "layers": 4,
        "vocab_size": 4096,
        "micro_batch": 8,
        "steps": 2500,
        "learning_rate": 2e-3,
        "qa_steps": 600,
        "qa_micro_batch": 16,
        "variants": ("bioS", "bioS_multi5_permutes"),
        "protocols": ("bio_then_qa",),
    },
    # The paper's N, model (GPT-2 small's 12 x 768), steps and QA fine-tune (50,000 x 48), for a GPU.
    "paper": {
        "people": 100000,
        "hidden": 768,
        "layers": 12,
        "vocab_size": 32768,
        "sequence_len": 512,
        "micro_batch": 96,
        "steps": PAPER_STEPS,
        "learning_rate": 1e-3,
        "qa_steps": 50000,
        "qa_learning_rate": 3e-4,
        "qa_micro_batch": 48,
        "qa_lora_rank": 16,
    },
}


def at_scale(scale: str, **given) -> ReproduceSettings:
    """The settings of ``scale`` with ``given`` (options set on the command line) on top."""
    if scale not in SCALES:
        raise RunError(f"unknown SCALE={scale}; choose from {', '.join(SCALES)}")
    known = {f.name for f in fields(ReproduceSettings)}
    return replace(
        ReproduceSettings(), scale=scale, **{**SCALES[scale], **{k: v for k, v in given.items() if k in known}}
    )


def qa_repeats(s: ReproduceSettings, variant: str) -> int:
    """How many copies of the QA of train people make ``qa_share`` of the mixed text."""
    bio, qa = text_size(train_file(s.data_dir, variant)), text_size(train_file(s.data_dir, QA_TRAIN))
    return max(1, round(s.qa_share / (1 - s.qa_share) * bio / qa))


def write_repeated_qa(s: ReproduceSettings, folder: Path, repeats: int) -> Path:
    """The QA of train people ``repeats`` times in ``folder`` (a run's own data file)."""
    text = train_file(s.data_dir, QA_TRAIN).read_text("utf-8")
    path = folder / f"{QA_TRAIN}_x{repeats}.jsonl"
    path.write_text(text * repeats, "utf-8")
    return path


def schedule(s: ReproduceSettings, steps: int, learning_rate: float, weight_decay: float, warmup: bool = True) -> dict:
    """Warmup for the paper's share of ``steps`` (pretraining; the paper's QA fine-tune has
    none: ``warmup=False``), cosine to ``min_lr_ratio`` of the peak."""
    return {
        "max_steps": steps,
        "num_epochs": 100000,  # max_steps ends the run; Axolotl caps its step count by the epochs
        "learning_rate": learning_rate,
        "lr_scheduler": "cosine",
        "cosine_min_lr_ratio": s.min_lr_ratio,
        # Axolotl reads warmup_ratio against its epoch count: the steps, exactly.
        "warmup_steps": max(1, round(s.warmup_ratio * steps)) if warmup else 0,
        "weight_decay": weight_decay,
        "adam_epsilon": s.adam_epsilon,
        "optimizer": "adamw_torch",
        "eval_steps": 1 / EVALUATIONS,
        "save_steps": 1 / EVALUATIONS,
        "seed": s.seed,
    }


def run_config(
    s: ReproduceSettings,
    stage: str,
    variant: str | None,
    init: Path | None,
    model_dir: Path,
    extra_data: Path | None = None,
) -> dict:
    """The config of one run: ``stage`` is ``bio`` (the variant's biographies), ``mixed`` (those
    and ``extra_data``, the repeated QA) or ``qa`` (the QA fine-tune from ``init``)."""
    recipe = RECIPES_DIR / "tiny-full.yml" if s.model == "tiny" else recipe_path(s.model)
    cfg = derive_config(recipe, s.data_dir, model_dir, variant if stage != "qa" else None)
    for key in ("evals_per_epoch", "saves_per_epoch", "val_set_size"):
        cfg.pop(key, None)
    bio = cfg["datasets"][0]
    qa = {**bio, "path": str(train_file(s.data_dir, QA_TRAIN))}
    if init is not None:
        cfg["base_model"] = str(init)
    if s.model == "tiny":
        cfg |= {"micro_batch_size": s.micro_batch, "sequence_len": s.sequence_len, "gradient_accumulation_steps": 1}
    if stage == "qa":
        cfg["datasets"] = [qa]
        cfg |= schedule(s, s.qa_steps, s.qa_learning_rate, s.qa_weight_decay, warmup=False)
        # One QA pair per row, qa_micro_batch of them per step (the paper's batch 48).
        cfg |= {"micro_batch_size": s.qa_micro_batch, "sample_packing": False, "gradient_accumulation_steps": 1}
        if s.qa_finetune == "lora":
            cfg |= {
                "adapter": "lora",
                "lora_r": s.qa_lora_rank,
                "lora_alpha": 2 * s.qa_lora_rank,
                "lora_dropout": 0.0,
                "lora_target_modules": ["q_proj", "v_proj"],
                # The embeddings in full (the paper: a rank-128 update of them); tied to the LM head
                # in the tiny Llama, so one trained copy that both share.
                "lora_modules_to_save": ["embed_tokens"],
                "peft_ensure_weight_tying": True,
            }
        elif s.qa_finetune != "full":
            raise RunError(f"unknown --qa-finetune {s.qa_finetune}; choose lora or full")
    else:
        cfg["datasets"] = [bio] if stage == "bio" else [bio, {**bio, "path": str(extra_data)}]
        cfg |= schedule(s, s.steps, s.learning_rate, s.weight_decay)
    # No validation split: every person's biographies train. The evaluations (where the plugin
    # scores recall and HF keeps the best checkpoint by it) run on the first EVAL_ROWS trained
    # QA pairs, their loss the eval_loss: a few, since all of them took most of a run's time.
    cfg["test_datasets"] = [{**qa, "split": f"train[:{EVAL_ROWS}]"}]
    cfg["save_total_limit"] = 1
    return cfg
