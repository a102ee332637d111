"""The plugin's state when Axolotl resumes a run from a checkpoint: its logs keep what was
logged up to the checkpoint's step (the steps after it run again, so their lines would
repeat), the best recall and early stopping's losses come back from them, and a best model
saved after the checkpoint (by the interrupted run's future) is removed."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from engram_data.run_files import LOG_HISTORY, TIMING_FILE

SCORES_FILE = "engram_scores.json"


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()] if path.exists() else []


def keep_until(path: Path, step: int) -> None:
    """Rewrite a JSON-lines log (atomically) with only its lines of ``step`` or before."""
    if path.exists():
        kept = [line for line in path.read_text("utf-8").splitlines() if json.loads(line)["step"] <= step]
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text("".join(line + "\n" for line in kept), "utf-8")
        os.replace(tmp, path)


def resume_state(trainer, output_dir: Path, step: int, history_file: str, best_dirs) -> tuple[float | None, list]:
    """Cut the logs back to ``step`` (rank 0), remove a best model saved after it; return the
    best recall and the validation losses logged up to it."""
    if trainer.is_world_process_zero():
        for name in (history_file, LOG_HISTORY, TIMING_FILE):
            keep_until(output_dir / name, step)
        for path in best_dirs(output_dir):
            scores = path / SCORES_FILE
            saved = json.loads(scores.read_text()).get("global_step", 0) if scores.exists() else step + 1
            if not path.is_symlink() and saved > step:
                shutil.rmtree(path, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    history = read_lines(output_dir / history_file)
    scores = [h["eval_engram_qa_acc_overall"] for h in history if h["step"] > 0 and "eval_engram_qa_acc_overall" in h]
    losses = [h["eval_loss"] for h in read_lines(output_dir / LOG_HISTORY) if "eval_loss" in h]
    return (max(scores) if scores else None), losses
