"""Recall as evaluation metrics, the best checkpoint by recall, and stopping rules.

Recall is scored at step 0 (the untrained floor) and in every evaluation, and joins that
evaluation's own metrics as ``eval_engram_qa_acc_<field>``, ``eval_engram_qa_acc_overall``,
``eval_engram_heldout_acc_...`` and ``eval_engram_reverse_acc``: the trainer's loggers (W&B,
TensorBoard, MLflow, trackio) show them beside ``eval_loss``, and HF's own machinery can
use them (``metric_for_best_model: eval_engram_qa_acc_overall`` with ``save_strategy: best``
or ``load_best_model_at_end``; Axolotl's ``early_stopping_patience``). Without an eval split
no evaluation runs, so recall is scored at the end of every epoch instead.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import time
import weakref
from pathlib import Path

from transformers import TrainerCallback

from engram_data.contract import VARIANTS
from engram_data.run_files import LOG_HISTORY, PROGRESS_ENV, RECALL_HISTORY, TIMING_FILE
from engram_eval.capacity_bound import BoundEvaluator
from engram_eval.capacity_bound import metric_names as bound_metrics
from engram_eval.capacity_qa import CapacityEvaluator
from engram_eval.capacity_qa import metric_names as capacity_metrics
from engram_eval.recall import RecallEvaluator
from engram_plugin.freeze import apply_freezing
from engram_plugin.resume import SCORES_FILE, read_lines, resume_state

BEST_PREFIX = "best_model_qa_"
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


def best_dirs(output_dir: str | Path) -> list[Path]:
    return sorted(p for p in Path(output_dir).glob(f"{BEST_PREFIX}*") if p.is_dir())


class EngramCallback(TrainerCallback):
    def __init__(self, cfg, trainer, held: dict | None = None):
        self.cfg = cfg
        self.trainer = trainer
        self.held = {} if held is None else held  # the plugin's weak references; the optimizer joins at the end
        self.froze_gc = False
        self.output_dir = Path(cfg.output_dir)
        self.best: float | None = None
        self.val_losses: list[float] = []
        self.scored_step: int | None = None
        self.scored: dict[str, float] = {}
        self.resumed_at = -1  # a resumed run's checkpoint step: what is logged up to it is not logged again
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

    def hf_tracks_the_best(self) -> bool:
        """HF keeps the best checkpoint when there is an evaluation to rank by and its
        metric is one of ours; otherwise the plugin saves it itself."""
        metric = self.trainer.args.metric_for_best_model or ""
        return self.trainer.eval_dataset is not None and metric.removeprefix("eval_").startswith("engram_")

    # -- freezing guard: nothing between model load and the first step may undo it
    def on_train_begin(self, args, state, control, **kwargs):
        if self.cfg.engram_gc_freeze:
            # Axolotl's MultipackBatchSampler.generate_batches and _save_checkpoint call
            # gc.collect() several times per epoch; each full collection walks every tracked
            # object (~0.4 s in the demo's process). Objects alive now (modules, model, data)
            # live for the whole run: frozen, collections only walk what training creates.
            gc.collect()
            gc.freeze()
            self.froze_gc = True
        apply_freezing(self.trainer.model, self.cfg.engram_freeze_embeddings, self.cfg.engram_freeze_layers)
        if state.global_step > 0:  # resumed from a checkpoint (trainer_state.json is loaded by now)
            self._resume(state.global_step)
        if self.evaluator is not None and state.global_step == 0:
            floor = self._recall(state, control)  # the untrained floor, before any update
            if not (args.eval_on_start and self.trainer.eval_dataset is not None):
                self.trainer.log(floor)  # else the evaluation at start carries it

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        # HF's EarlyStoppingCallback stops when the metric has not improved for N evaluations
        # and needs save_steps aligned with eval_steps; this rule is "validation loss rose
        # N evaluations in a row" with no such constraint.
        loss = (metrics or {}).get("eval_loss")
        patience = self.cfg.engram_early_stopping_patience
        if loss is not None and patience and state.global_step > self.resumed_at:
            self.val_losses.append(loss)
            recent = self.val_losses[-(patience + 1) :]
            if len(recent) == patience + 1 and all(b > a for a, b in zip(recent, recent[1:])):
                control.should_training_stop = True
                self._note(f"validation loss rose for {patience} evaluations in a row: stopping")

    def on_step_end(self, args, state, control, **kwargs):
        # For a launcher that shows a progress bar (engram_run): the step, written atomically.
        path = os.environ.get(PROGRESS_ENV)
        if path and self.trainer.is_world_process_zero():
            tmp = f"{path}.tmp"
            with open(tmp, "w") as f:
                json.dump(
                    {
                        "step": state.global_step,
                        "max_steps": state.max_steps,
                        "epoch": state.epoch,
                        "epochs": args.num_train_epochs,
                    },
                    f,
                )
            os.replace(tmp, path)

    def on_log(self, args, state, control, logs=None, **kwargs):
        # The trainer's own log lines (training loss every logging_steps, eval_loss at every
        # evaluation) as a file: Axolotl writes no trainer_state.json at the end of training.
        # Axolotl evaluates on start, a resumed run too: its checkpoint's step was logged already.
        if logs and self.trainer.is_world_process_zero() and state.global_step > self.resumed_at:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            with open(self.output_dir / LOG_HISTORY, "a", encoding="utf-8") as f:
                f.write(json.dumps({"step": state.global_step, "epoch": state.epoch, **logs}) + "\n")

    def on_epoch_end(self, args, state, control, **kwargs):
        # Without an eval split no evaluation runs: score recall once per epoch instead.
        if self.evaluator is not None and self.trainer.eval_dataset is None:
            self.trainer.log(self._recall(state, control))

    def on_train_end(self, args, state, control, optimizer=None, **kwargs):
        optimizer = optimizer or getattr(self.trainer, "optimizer", None)
        if optimizer is not None:
            self.held["optimizer"] = weakref.ref(getattr(optimizer, "optimizer", optimizer))  # accelerate wraps it
        if self.froze_gc:
            # Frozen objects are never collected: the trainer <-> callback cycle (and with it the
            # model and optimizer) would outlive Axolotl's `del model, trainer; gc.collect()` and
            # stay on the GPU while the post-training evaluation loads the model again.
            gc.unfreeze()
            self.froze_gc = False
        if self.cfg.engram_save_best and self.hf_tracks_the_best() and state.best_model_checkpoint:
            self._link_best(state)

    # -- helpers
    def _resume(self, step: int) -> None:
        """The plugin's state back to the checkpoint's ``step`` (resume.py)."""
        self.best, self.val_losses = resume_state(self.trainer, self.output_dir, step, HISTORY_FILE, best_dirs)
        self.resumed_at = step
        self._note(f"resumed at step {step}: best recall so far {self.best}")

    def _recall(self, state, control) -> dict[str, float]:
        if self.scored_step == state.global_step:
            return dict(self.scored)  # scored already at this step (eval_on_start, a final evaluation)
        if state.global_step == self.resumed_at:  # scored before the interruption: the same weights
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
            and not self.hf_tracks_the_best()
            and state.global_step > 0
            and (self.best is None or overall > self.best)
        ):
            self.best = overall
            self._save_best(overall, results, state)
        target = self.cfg.engram_stop_at_recall
        if target is not None and overall >= target:
            control.should_training_stop = True  # HF has no "stop at a target" rule
            self._note(f"overall recall {overall:.4f} reached engram_stop_at_recall {target}: stopping")
        return logs

    def _save_best(self, overall: float, results, state):
        """Save to a temp folder (every rank: sharded models gather), then rank 0 renames it
        to best_model_qa_<acc> and removes the previous best."""
        tmp = self.output_dir / f".{BEST_PREFIX}tmp"
        self.trainer.save_model(str(tmp))
        self.trainer.accelerator.wait_for_everyone()  # every rank is done with tmp before it moves
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

    def _link_best(self, state) -> None:
        """best_model_qa_<acc> (the original LLM Engram name) for HF's best checkpoint: a
        link, not a copy, since HF keeps that checkpoint past save_total_limit."""
        if not self.trainer.is_world_process_zero():
            return
        best = Path(state.best_model_checkpoint)
        link = self.output_dir / f"{BEST_PREFIX}{state.best_metric:.4f}"
        for path in best_dirs(self.output_dir):
            if path.is_symlink():
                path.unlink()
        link.symlink_to(os.path.relpath(best, self.output_dir))
        history = [json.loads(line) for line in (self.output_dir / HISTORY_FILE).read_text().splitlines()]
        scored = {
            "global_step": state.global_step,
            "best_metric": state.best_metric,
            "history": [h for h in history if h["step"] == int(best.name.rsplit("-", 1)[-1])],
        }
        (best / SCORES_FILE).write_text(json.dumps(scored, indent=2) + "\n")

    def _note(self, message: str):
        if self.trainer.is_world_process_zero():
            print(f"[engram] {message}", flush=True)
