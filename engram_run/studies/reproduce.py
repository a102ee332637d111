"""``make reproduce``: Physics of Language Models 3.1 (Allen-Zhu and Li, arXiv:2309.14316 v3)
in the paper's protocol, scaled down in people, model, batch and steps (reproduce_config.py
says each choice; ``SCALE=ci|default|reference|paper``).

One population (half of it with trained QA) and one initial model, trained on each text
variant (the paper's: single, single + permute1, single + permute5, multi5, multi5 + permute,
with and without full names) for the same number of optimizer steps, under both protocols:

- ``mixed``: the biographies of everyone and the QA of train people (``qa_share`` of the text)
  in one run.
- ``bio_then_qa``: the biographies alone; the memorization gate (next-token accuracy on the
  attribute tokens of the QA-heldout people's biographies, ``engram_eval.memorization``);
  then a second Axolotl run from those weights on the QA of train people only: LoRA on the
  query and value projections plus the embeddings (the paper's QA fine-tune).

Each final model (the best checkpoint by trained-QA recall) is scored by lm-eval on the
trained QA, on extraction (heldout people, whose QA never trained: exact match of a greedy
generation, the paper's metric, and four-option) and on reversal, beside its untrained score
(the plugin's step 0) and the paper's own figure for the same cell.

    RESULTS/reproduce.json   {protocol: {variant: {steps, scores, stderr, questions, memorization, ...}}}
    RESULTS/reproduce.md     one table per protocol, the paper's figure beside each cell
    RESULTS/reproduce.png    grouped bars per protocol, chance lines
"""

from __future__ import annotations

import json
from pathlib import Path

from engram_data.contract import MANIFEST, QA_TRAIN, read_manifest, train_file
from engram_data.run_files import BEST_PREFIX, RECALL_HISTORY
from engram_run.reports.report import untrained_recall
from engram_run.runs import launch
from engram_run.runs.recipes import RunError, write_config
from engram_run.studies.common import lm_eval_row, timer
from engram_run.studies.reproduce_config import (
    PROTOCOLS,
    SCALES,
    ReproduceSettings,
    at_scale,
    qa_repeats,
    run_config,
    write_repeated_qa,
)
from engram_run.studies.reproduce_report import SCORES, write_results

__all__ = ["PROTOCOLS", "SCALES", "ReproduceSettings", "at_scale", "reproduce"]


def check_data(s: ReproduceSettings) -> None:
    if not (s.data_dir / MANIFEST).exists():
        raise RunError(f"{s.data_dir} has no dataset; run `make data DATA_DIR={s.data_dir}` first")
    missing = [v for v in (*s.variants, QA_TRAIN) if not train_file(s.data_dir, v).exists()]
    if missing:
        have = read_manifest(s.data_dir).get("variants", [])
        raise RunError(
            f"{s.data_dir} has no {', '.join(sorted(missing))} (it has {', '.join(have)}); regenerate it "
            f"with `python generate_data.py --variants {','.join(s.variants)} --out {s.data_dir} --overwrite`"
        )


def check(s: ReproduceSettings) -> None:
    """Everything that can be refused before anything is written."""
    unknown = [p for p in s.protocols if p not in PROTOCOLS]
    if unknown or not s.protocols:
        raise RunError(f"unknown protocol {', '.join(unknown) or '(none)'}; choose from {', '.join(PROTOCOLS)}")
    if s.qa_finetune not in ("lora", "full"):
        raise RunError(f"unknown --qa-finetune {s.qa_finetune}; choose lora or full")
    if not 0 <= s.qa_share < 1:
        raise RunError(f"--qa-share {s.qa_share} is not in [0, 1); the paper's is 0.8")
    if s.model != "tiny" and "bio_then_qa" in s.protocols:
        probe = run_config(s, "bio", s.variants[0], None, s.outputs / "model")
        if probe.get("adapter"):
            raise RunError(
                f"bio_then_qa fine-tunes the first run's weights: {s.model} trains an adapter; "
                "use a full recipe (e.g. llama1b) or --protocols mixed"
            )
    if s.outputs.exists() and not (s.outputs / launch.MARKER).exists():
        raise RunError(f"{s.outputs} exists and was not written by reproduce; move it away or pass --outputs")


def reproduce(s: ReproduceSettings) -> Path:
    step = timer("reproduce")
    check(s)
    if s.model == "tiny":
        step(f"generating {s.people} people into {s.data_dir}")
        launch.generate_data(s.data_dir, s.people, seed=s.seed, variants=s.variants)
    check_data(s)
    launch.remove_own(s.outputs)
    launch.claim(s.outputs)
    init = None
    if s.model == "tiny":
        step(f"building one random Llama (hidden {s.hidden}, {s.layers} layers, {s.heads} heads) for every variant")
        init = launch.build_model(
            s.data_dir,
            s.outputs / "init",
            s.outputs / "build.log",
            hidden=s.hidden,
            layers=s.layers,
            heads=s.heads,
            vocab_size=s.vocab_size,
            seed=s.seed,
        )
    rows: dict[str, dict] = {}
    for protocol in s.protocols:
        rows[protocol] = {}
        for variant in s.variants:
            label = f"{protocol}/{variant}"
            where = launch.claim(launch.claim(s.outputs / protocol) / variant)
            row: dict = {"steps": s.steps}
            if protocol == "mixed":
                repeats = qa_repeats(s, variant)
                extra = write_repeated_qa(s, where, repeats)
                first = train_run(s, where / "run", "mixed", variant, init, step, label, extra)
                row["qa_repeats"] = repeats
            else:
                first = train_run(s, where / "bio", "bio", variant, init, step, label)
            row["memorization"] = memorization(s, first, variant, step, label)
            final = first
            if protocol == "bio_then_qa":
                final = train_run(s, where / "qa", "qa", None, first, step, label)
                row["qa_steps"] = s.qa_steps
                row["qa_finetune"] = s.qa_finetune
            scored = best_checkpoint(final)
            base = str(
                first if protocol == "bio_then_qa" else init or run_config(s, "bio", variant, None, final)["base_model"]
            )
            row |= score(s, scored, base, where / "lm_eval", step, label)
            row |= {"scored": str(scored), "untrained": untrained_recall(history(first))}
            rows[protocol][variant] = row
    path = write_results(rows, s)
    step(f"done: {path}")
    return path


def train_run(s, folder: Path, stage: str, variant, init, step, label: str, extra: Path | None = None) -> Path:
    """One ``axolotl train`` in ``folder`` (config.yml, train.log, model/); the model folder."""
    cfg = run_config(s, stage, variant, init, folder / "model", extra)
    config = write_config(cfg, launch.claim(folder) / "config.yml")
    what = {
        "mixed": f"biographies + QA of train people ({s.qa_share:.0%} of the text)",
        "bio": "biographies",
        "qa": f"QA of train people ({s.qa_finetune})",
    }[stage]
    steps = s.qa_steps if stage == "qa" else s.steps
    step(f"{label}: axolotl train on {what}, {steps} steps (log: {folder / 'train.log'})")
    if not launch.train(config, folder / "model", folder / "train.log"):
        raise RunError(f"training {label} failed; see {folder / 'train.log'}")
    return folder / "model"


def best_checkpoint(model_dir: Path) -> Path:
    """The checkpoint with the best trained-QA recall (the plugin's best_model_qa_* link), else
    the final model."""
    best = sorted(model_dir.glob(f"{BEST_PREFIX}*"))
    return best[-1] if best else model_dir


def history(model_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (model_dir / RECALL_HISTORY).read_text().splitlines()]


def memorization(s, model_dir: Path, variant: str, step, label: str) -> dict:
    """The gate: next-token accuracy on the attribute tokens of the QA-heldout people's
    biographies, which the run trained on."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engram_eval.memorization import AttributeAccuracy

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    result = AttributeAccuracy(s.data_dir, tok, variant, split="heldout").evaluate(model)
    verdict = "memorized" if result["memorized"] else "NOT memorized"
    step(
        f"{label}: attribute-token accuracy on heldout people's biographies {result['attribute_token_accuracy']:.4f} ({verdict})"
    )
    return result


def score(s, model_dir: Path, base_model: str, out: Path, step, label: str) -> dict:
    """lm-eval's scores, standard errors and question counts for every entry of SCORES."""
    step(f"{label}: lm-eval")
    row = lm_eval_row(model_dir, base_model, s.data_dir, out, SCORES, label)
    sc = row["scores"]
    step(
        f"{label}: trained QA {sc['trained_qa']:.3f}, heldout exact match {sc['heldout_exact']:.3f}, "
        f"heldout four-option {sc['heldout']:.3f}, reverse {sc['reverse']:.3f}"
    )
    return row
