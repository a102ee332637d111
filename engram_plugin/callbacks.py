"""Recall as evaluation metrics, the best checkpoint by recall, and stopping at a target recall.

Recall is scored at step 0 (the untrained floor) and in every evaluation, and joins that
evaluation's own metrics as ``eval_engram_qa_acc_<field>``, ``eval_engram_qa_acc_overall``,
``eval_engram_heldout_acc_...`` and ``eval_engram_reverse_acc``: the trainer's loggers (W&B,
TensorBoard, MLflow, trackio) show them beside ``eval_loss``, and HF's own machinery can
use them (``metric_for_best_model: eval_engram_qa_acc_overall`` with ``save_strategy: best``
or ``load_best_model_at_end``; Axolotl's ``early_stopping_patience``). Without an eval split
no evaluation runs, so recall is scored at the end of every epoch instead.

:func:`engram_callbacks` is the list the plugin hands Axolotl: this callback and the smaller
jobs of jobs.py, in the order their ``on_train_begin`` must run.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from transformers import TrainerCallback

from engram_data.contract import VARIANTS
from engram_data.run_files import RECALL_HISTORY, TIMING_FILE
from engram_eval.capacity_bound import BoundEvaluator
from engram_eval.capacity_bound import metric_names as bound_metrics
from engram_eval.capacity_qa import CapacityEvaluator
from engram_eval.capacity_qa import metric_names as capacity_metrics
from engram_eval.recall import RecallEvaluator
from engram_plugin.best import BEST_PREFIX, best_dirs, hf_tracks_the_best, link_best, save_best
from engram_plugin.jobs import (
    Freezing,
    GcFreeze,
    HandOptimizer,
    LogFile,
    LossRiseStop,
    ProgressFile,
    RunState,
    note,
)
from engram_plugin.resume import SCORES_FILE, read_lines, resume_state

__all__ = ["BEST_PREFIX", "SCORES_FILE", "EngramCallback", "best_dirs", "engram_callbacks", "metric_names"]
HISTORY_FILE = RECALL_HISTORY  # one line per scoring: step, epoch and every metric
OVERALL = "eval_engram_qa_acc_overall"


def metric_names(results: dict[str, dict[str, float]], prefix: str = "eval") -> dict[str, float]:
    """``{prefix}_engram_qa_acc_<field>`` / ``_overall`` / ``_overall_norm`` (train people),
    the same under ``engram_heldout_acc``, and ``{prefix}_engram_reverse_acc``."""
    logs: dict[str, float] = {}
    names = {"train": "engram_qa_acc", "heldout": "engram_heldout_acc"}
    for qset, res in results.items():
        if qset == "reverse":
            logs[f"{prefix}_engram_reverse_acc"] = res["overall"]
            continue
        for field, acc in res.items():  # the bioS fields, or a documents dataset's styles
            if field not in ("overall", "overall_norm", "num_questions"):
                logs[f"{prefix}_{names[qset]}_{field}"] = acc
        logs[f"{prefix}_{names[qset]}_overall"] = res["overall"]
        logs[f"{prefix}_{names[qset]}_overall_norm"] = res["overall_norm"]
    return logs


def engram_callbacks(cfg, trainer, held: dict | None = None) -> list[TrainerCallback]:
    """The plugin's callbacks for one run, sharing one :class:`RunState`."""
    shared = RunState()
    recall = EngramCallback(cfg, trainer, shared)
    jobs = [GcFreeze()] if cfg.engram_gc_freeze else []
    jobs += [Freezing(cfg, trainer), recall]
    if cfg.engram_early_stopping_patience:
        jobs.append(LossRiseStop(cfg.engram_early_stopping_patience, shared, trainer))
    jobs += [LogFile(Path(cfg.output_dir), shared, trainer), ProgressFile(trainer)]
    return jobs + [HandOptimizer({} if held is None else held, trainer)]


class EngramCallback(TrainerCallback):
    """Recall (and capacity) at step 0 and in every evaluation, its history file, the best
    checkpoint by it, and stopping at ``engram_stop_at_recall``; a resumed run's state back."""

    def __init__(self, cfg, trainer, shared: RunState | None = None):
        self.cfg = cfg
        self.trainer = trainer
        self.shared = RunState() if shared is None else shared
        self.output_dir = Path(cfg.output_dir)
        self.scored_step: int | None = None
        self.scored: dict[str, float] = {}
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
            self._join_evaluation(trainer)
        self.capacity = None
        self.capacity_metrics = capacity_metrics
        if cfg.engram_recall_eval and cfg.engram_eval_capacity and cfg.engram_capacity_measure == "qa":
            self.capacity = CapacityEvaluator(
                cfg.engram_data_dir, trainer.processing_class, split="train", limit=cfg.engram_eval_samples, names=False
            )  # attributes: the total
        elif cfg.engram_recall_eval and cfg.engram_eval_capacity:  # the bound, on the run's own biographies
            trained = [Path(d["path"]).stem for d in cfg.datasets or [] if Path(d["path"]).stem in VARIANTS]
            self.capacity = BoundEvaluator(
                cfg.engram_data_dir,
                trainer.processing_class,
                (trained or ["bioS"])[0],
                limit=cfg.engram_eval_samples,
                split="train",
            )
            self.capacity_metrics = bound_metrics

    # -- recall inside the trainer's evaluation
    def _join_evaluation(self, trainer) -> None:
        """Add recall to every evaluation's metrics before they are logged and handed to the
        callbacks. HF has no hook for metrics computed from the model (``compute_metrics``
        sees only predictions), so the plugin wraps this one trainer's evaluation loop."""
        loop = trainer.evaluation_loop

        def evaluation_loop(*args, **kwargs):
            output = loop(*args, **kwargs)
            prefix = kwargs.get("metric_key_prefix", args[4] if len(args) > 4 else "eval")
            if prefix == "eval":
                output.metrics.update(self._recall(trainer.state, trainer.control))
            return output

        trainer.evaluation_loop = evaluation_loop

    def on_train_begin(self, args, state, control, **kwargs):
        if state.global_step > 0:  # resumed from a checkpoint (trainer_state.json is loaded by now)
            self._resume(state.global_step)
        if self.evaluator is not None and state.global_step == 0:
            floor = self._recall(state, control)  # the untrained floor, before any update
            if not (args.eval_on_start and self.trainer.eval_dataset is not None):
                self.trainer.log(floor)  # else the evaluation at start carries it

    def on_epoch_end(self, args, state, control, **kwargs):
        # Without an eval split no evaluation runs: score recall once per epoch instead.
        if self.evaluator is not None and self.trainer.eval_dataset is None:
            self.trainer.log(self._recall(state, control))

    def on_train_end(self, args, state, control, **kwargs):
        if self.cfg.engram_save_best and hf_tracks_the_best(self.trainer) and state.best_model_checkpoint:
            link_best(self.trainer, self.output_dir, state, HISTORY_FILE)

    def _resume(self, step: int) -> None:
        """The shared state back to the checkpoint's ``step`` (resume.py)."""
        self.shared.best, losses = resume_state(self.trainer, self.output_dir, step, HISTORY_FILE, best_dirs)
        self.shared.val_losses[:] = losses
        self.shared.resumed_at = step
        note(self.trainer, f"resumed at step {step}: best recall so far {self.shared.best}")

    def _recall(self, state, control) -> dict[str, float]:
        if self.scored_step == state.global_step:
            return dict(self.scored)  # scored already at this step (eval_on_start, a final evaluation)
        if state.global_step == self.shared.resumed_at:  # scored before the interruption: the same weights
            kept = [h for h in read_lines(self.output_dir / HISTORY_FILE) if h["step"] == state.global_step]
            if kept:
                self.scored_step, self.scored = (
                    state.global_step,
                    {k: v for k, v in kept[-1].items() if k not in ("step", "epoch")},
                )
                return dict(self.scored)
        self.scored_step = state.global_step
        start = time.perf_counter()
        # In the training's own autocast (bf16/fp16), as the trained forward pass runs: fp32
        # master weights stay fp32, and flash-attention gets the half-precision inputs it needs.
        with self.trainer.accelerator.autocast():
            results = self.evaluator.evaluate(self.trainer.model, device=self.trainer.args.device)
            logs = self.scored = metric_names(results)
            if self.capacity is not None:
                logs.update(
                    self.capacity_metrics(self.capacity.evaluate(self.trainer.model, device=self.trainer.args.device))
                )
        seconds = time.perf_counter() - start
        if self.trainer.is_world_process_zero():
            self.output_dir.mkdir(parents=True, exist_ok=True)
            with open(self.output_dir / HISTORY_FILE, "a", encoding="utf-8") as f:
                f.write(json.dumps({"step": state.global_step, "epoch": state.epoch, **logs}) + "\n")
            # How long each scoring took, apart from the scores (which reruns reproduce exactly).
            with open(self.output_dir / TIMING_FILE, "a", encoding="utf-8") as f:
                f.write(json.dumps({"step": state.global_step, "seconds": round(seconds, 3)}) + "\n")
        overall = results["train"]["overall"]
        if (
            self.cfg.engram_save_best
            and not hf_tracks_the_best(self.trainer)
            and state.global_step > 0
            and (self.shared.best is None or overall > self.shared.best)
        ):
            self.shared.best = overall
            save_best(self.trainer, self.output_dir, overall, results, state)
        target = self.cfg.engram_stop_at_recall
        if target is not None and overall >= target:
            control.should_training_stop = True  # HF has no "stop at a target" rule
            note(self.trainer, f"overall recall {overall:.4f} reached engram_stop_at_recall {target}: stopping")
        return logs
