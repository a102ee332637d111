"""The best checkpoint by recall, as ``best_model_qa_<acc>`` (the original LLM Engram name):
saved by the plugin when HF does not rank checkpoints by one of its metrics, else a link to
the checkpoint HF kept."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from engram_data.run_files import BEST_PREFIX
from engram_plugin.resume import SCORES_FILE

__all__ = ["BEST_PREFIX", "best_dirs", "hf_tracks_the_best", "link_best", "save_best"]


def best_dirs(output_dir: str | Path) -> list[Path]:
    return sorted(p for p in Path(output_dir).glob(f"{BEST_PREFIX}*") if p.is_dir())


def hf_tracks_the_best(trainer) -> bool:
    """HF keeps the best checkpoint when there is an evaluation to rank by and its metric is
    one of ours; otherwise the plugin saves it itself."""
    metric = trainer.args.metric_for_best_model or ""
    return trainer.eval_dataset is not None and metric.removeprefix("eval_").startswith("engram_")


def save_best(trainer, output_dir: Path, overall: float, results, state) -> None:
    """Save to a temp folder (every rank: sharded models gather), then rank 0 renames it
    to best_model_qa_<acc> and removes the previous best."""
    tmp = output_dir / f".{BEST_PREFIX}tmp"
    trainer.save_model(str(tmp))
    trainer.accelerator.wait_for_everyone()  # every rank is done with tmp before it moves
    if trainer.is_world_process_zero():
        (tmp / SCORES_FILE).write_text(
            json.dumps({"global_step": state.global_step, "epoch": state.epoch, "results": results}, indent=2) + "\n"
        )
        old = best_dirs(output_dir)
        final = output_dir / f"{BEST_PREFIX}{overall:.4f}"
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for path in old:
            if path != final:
                shutil.rmtree(path, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()


def link_best(trainer, output_dir: Path, state, history_file: str) -> None:
    """best_model_qa_<acc> for HF's best checkpoint: a link, not a copy, since HF keeps that
    checkpoint past save_total_limit."""
    if not trainer.is_world_process_zero():
        return
    best = Path(state.best_model_checkpoint)
    link = output_dir / f"{BEST_PREFIX}{state.best_metric:.4f}"
    for path in best_dirs(output_dir):
        if path.is_symlink():
            path.unlink()
    link.symlink_to(os.path.relpath(best, output_dir))
    history = [json.loads(line) for line in (output_dir / history_file).read_text().splitlines()]
    scored = {
        "global_step": state.global_step,
        "best_metric": state.best_metric,
        "history": [h for h in history if h["step"] == int(best.name.rsplit("-", 1)[-1])],
    }
    (best / SCORES_FILE).write_text(json.dumps(scored, indent=2) + "\n")
