"""The plugin's smaller training jobs, one callback each, beside the recall callback
(callbacks.py): garbage-collector freezing, layer freezing, stopping on a rising validation
loss, the trainer's log lines as a file, the progress file a launcher reads, and handing the
optimizer to the plugin for the post-training release check. They share a
:class:`RunState`, which a resumed run restores (resume.py)."""

from __future__ import annotations

import gc
import json
import os
import weakref
from dataclasses import dataclass, field
from pathlib import Path

from transformers import TrainerCallback

from engram_data.run_files import LOG_HISTORY, PROGRESS_ENV
from engram_plugin.freeze import apply_freezing


@dataclass
class RunState:
    """What the callbacks share: a resumed run's checkpoint step (what was logged up to it is
    not logged again), the best recall so far, and the validation losses so far."""

    resumed_at: int = -1
    best: float | None = None
    val_losses: list[float] = field(default_factory=list)


def note(trainer, message: str) -> None:
    if trainer.is_world_process_zero():
        print(f"[engram] {message}", flush=True)


class GcFreeze(TrainerCallback):
    """Objects alive at train start (modules, model, data) live for the whole run: frozen, the
    collections Axolotl's sampler and checkpointing trigger only walk what training creates."""

    def __init__(self):
        self.froze = False

    def on_train_begin(self, args, state, control, **kwargs):
        # Axolotl's MultipackBatchSampler.generate_batches and _save_checkpoint call
        # gc.collect() several times per epoch; each full collection walks every tracked
        # object (~0.4 s in the demo's process).
        gc.collect()
        gc.freeze()
        self.froze = True

    def on_train_end(self, args, state, control, **kwargs):
        if self.froze:
            # Frozen objects are never collected: the trainer <-> callback cycle (and with it the
            # model and optimizer) would outlive Axolotl's `del model, trainer; gc.collect()` and
            # stay on the GPU while the post-training evaluation loads the model again.
            gc.unfreeze()
            self.froze = False


class Freezing(TrainerCallback):
    """Freezing guard: nothing between model load and the first step may undo it."""

    def __init__(self, cfg, trainer):
        self.cfg, self.trainer = cfg, trainer

    def on_train_begin(self, args, state, control, **kwargs):
        apply_freezing(self.trainer.model, self.cfg.engram_freeze_embeddings, self.cfg.engram_freeze_layers)


class LossRiseStop(TrainerCallback):
    """Stop when the validation loss rose ``patience`` evaluations in a row. HF's
    EarlyStoppingCallback stops when a metric has not improved for N evaluations and needs
    save_steps aligned with eval_steps; this rule has no such constraint."""

    def __init__(self, patience: int, shared: RunState, trainer):
        self.patience, self.shared, self.trainer = patience, shared, trainer

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        loss = (metrics or {}).get("eval_loss")
        if loss is None or state.global_step <= self.shared.resumed_at:
            return
        self.shared.val_losses.append(loss)
        recent = self.shared.val_losses[-(self.patience + 1) :]
        if len(recent) == self.patience + 1 and all(b > a for a, b in zip(recent, recent[1:])):
            control.should_training_stop = True
            note(self.trainer, f"validation loss rose for {self.patience} evaluations in a row: stopping")


class LogFile(TrainerCallback):
    """The trainer's own log lines (training loss every logging_steps, eval_loss at every
    evaluation) as a file: Axolotl writes no trainer_state.json at the end of training. Axolotl
    evaluates on start, a resumed run too: its checkpoint's step was logged already."""

    def __init__(self, output_dir: Path, shared: RunState, trainer):
        self.output_dir, self.shared, self.trainer = output_dir, shared, trainer

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and self.trainer.is_world_process_zero() and state.global_step > self.shared.resumed_at:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            with open(self.output_dir / LOG_HISTORY, "a", encoding="utf-8") as f:
                f.write(json.dumps({"step": state.global_step, "epoch": state.epoch, **logs}) + "\n")


class ProgressFile(TrainerCallback):
    """For a launcher that shows a progress bar (engram_run): the step, written atomically to
    the file ``$ENGRAM_PROGRESS`` names."""

    def __init__(self, trainer):
        self.trainer = trainer

    def on_step_end(self, args, state, control, **kwargs):
        path = os.environ.get(PROGRESS_ENV)
        if path and self.trainer.is_world_process_zero():
            tmp = f"{path}.tmp"
            progress = {"step": state.global_step, "max_steps": state.max_steps, "epoch": state.epoch}
            with open(tmp, "w") as f:
                json.dump({**progress, "epochs": args.num_train_epochs}, f)
            os.replace(tmp, path)


class HandOptimizer(TrainerCallback):
    """A weak reference to the optimizer for the plugin, which checks after training that the
    model and optimizer were released before the post-training evaluation loads the model."""

    def __init__(self, held: dict, trainer):
        self.held, self.trainer = held, trainer

    def on_train_end(self, args, state, control, optimizer=None, **kwargs):
        optimizer = optimizer or getattr(self.trainer, "optimizer", None)
        if optimizer is not None:
            self.held["optimizer"] = weakref.ref(getattr(optimizer, "optimizer", optimizer))  # accelerate wraps it
