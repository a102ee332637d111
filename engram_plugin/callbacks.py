"""Trainer callback of the engram plugin: recall at the start and at every evaluation,
logged through the trainer's own loggers; best checkpoint by recall; stopping rules."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from transformers import TrainerCallback

from engram_data.contract import FIELDS
from engram_plugin.freeze import apply_freezing
from engram_plugin.recall import RecallEvaluator

BEST_PREFIX = "best_model_qa_"
SCORES_FILE = "engram_scores.json"
HISTORY_FILE = "engram_recall.jsonl"  # one line per scoring: step, epoch and every metric


def metric_names(results: dict[str, dict[str, float]]) -> dict[str, float]:
    """``engram/qa_acc/<field>``, ``engram/qa_acc/overall`` (train people); the heldout
    and reverse sets under ``engram/heldout_acc/...`` and ``engram/reverse_acc``."""
    logs: dict[str, float] = {}
    prefix = {"train": "engram/qa_acc", "heldout": "engram/heldout_acc"}
    for qset, res in results.items():
        if qset == "reverse":
            logs["engram/reverse_acc"] = res["overall"]
            continue
        for field in FIELDS:
            if field in res:
                logs[f"{prefix[qset]}/{field}"] = res[field]
        logs[f"{prefix[qset]}/overall"] = res["overall"]
        logs[f"{prefix[qset]}/overall_norm"] = res["overall_norm"]
    return logs


def best_dirs(output_dir: str | Path) -> list[Path]:
    return sorted(p for p in Path(output_dir).glob(f"{BEST_PREFIX}*") if p.is_dir())


class EngramCallback(TrainerCallback):
    def __init__(self, cfg, trainer):
        self.cfg = cfg
        self.trainer = trainer
        self.output_dir = Path(cfg.output_dir)
        self.best: float | None = None
        self.val_losses: list[float] = []
        self.scored_step: int | None = None  # eval_on_start and on_train_begin meet at step 0
        self.evaluator = None
        if cfg.engram_recall_eval:
            sets = (
                ["train"]
                + (["heldout"] if cfg.engram_eval_heldout else [])
                + (["reverse"] if cfg.engram_eval_reverse else [])
            )
            self.evaluator = RecallEvaluator(
                cfg.engram_data_dir,
                trainer.processing_class,
                sets=sets,
                limit=cfg.engram_eval_samples,
                batch_size=cfg.engram_eval_batch_size,
            )

    # -- freezing guard: nothing between model load and the first step may undo it
    def on_train_begin(self, args, state, control, **kwargs):
        apply_freezing(self.trainer.model, self.cfg.engram_freeze_embeddings, self.cfg.engram_freeze_layers)
        if self.evaluator is not None and state.global_step == 0:
            self._recall(state, control)  # the baseline, before any update

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self.evaluator is not None:
            self._recall(state, control)
        loss = (metrics or {}).get("eval_loss")
        patience = self.cfg.engram_early_stopping_patience
        if loss is not None and patience:
            self.val_losses.append(loss)
            recent = self.val_losses[-(patience + 1) :]
            if len(recent) == patience + 1 and all(b > a for a, b in zip(recent, recent[1:])):
                control.should_training_stop = True
                self._note(f"validation loss rose for {patience} evaluations in a row: stopping")

    def on_epoch_end(self, args, state, control, **kwargs):
        # Without an eval split on_evaluate never fires: score recall once per epoch instead.
        if self.evaluator is not None and self.trainer.eval_dataset is None:
            self._recall(state, control)

    # -- helpers
    def _recall(self, state, control):
        if self.scored_step == state.global_step:
            return
        self.scored_step = state.global_step
        results = self.evaluator.evaluate(self.trainer.model)
        logs = metric_names(results)
        self.trainer.log(logs)
        if self.trainer.is_world_process_zero():
            self.output_dir.mkdir(parents=True, exist_ok=True)
            with open(self.output_dir / HISTORY_FILE, "a", encoding="utf-8") as f:
                f.write(json.dumps({"step": state.global_step, "epoch": state.epoch, **logs}) + "\n")
        overall = results["train"]["overall"]
        if self.cfg.engram_save_best and state.global_step > 0 and (self.best is None or overall > self.best):
            self.best = overall
            self._save_best(overall, results, state)
        target = self.cfg.engram_stop_at_recall
        if target is not None and overall >= target:
            control.should_training_stop = True
            self._note(f"overall recall {overall:.4f} reached engram_stop_at_recall {target}: stopping")

    def _save_best(self, overall: float, results, state):
        """Save to a temp folder (every rank: sharded models gather), then rank 0 renames it
        to best_model_qa_<acc> and removes the previous best."""
        tmp = self.output_dir / f".{BEST_PREFIX}tmp"
        self.trainer.save_model(str(tmp))
        if self.trainer.is_world_process_zero():
            (tmp / SCORES_FILE).write_text(
                json.dumps({"global_step": state.global_step, "epoch": state.epoch, "results": results}, indent=2)
                + "\n"
            )
            old = best_dirs(self.output_dir)
            final = self.output_dir / f"{BEST_PREFIX}{overall:.4f}"
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            for path in old:
                if path != final:
                    shutil.rmtree(path, ignore_errors=True)
        self.trainer.accelerator.wait_for_everyone()

    def _note(self, message: str):
        if self.trainer.is_world_process_zero():
            print(f"[engram] {message}", flush=True)
