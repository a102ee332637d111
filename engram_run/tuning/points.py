"""One point of a sweep: what a job receives (``PointJob``, picklable for SLURM), runs
(``run_point``: `axolotl train`, its curves, ``point.json``) and how a finished one is known
again (``finished``). Both the sweep and its executors import it; it imports neither."""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import submitit
import yaml

from engram_run.runs import launch
from engram_run.tuning.curves import curves

POINT_FILE = "point.json"
WEIGHTS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "checkpoint-*", "best_model_qa_*")


@dataclass(frozen=True)
class PointJob:
    """Everything one point needs, picklable: what a SLURM job receives."""

    id: str
    values: dict
    config: dict
    dir: str  # absolute
    cwd: str  # where the recipe's relative paths resolve
    launcher_args: tuple[str, ...] = ()
    keep_model: bool = False


def finished(job: PointJob) -> dict | None:
    """The point's result if it finished with this very config (else it runs again)."""
    path = Path(job.dir) / POINT_FILE
    try:
        row = json.loads(path.read_text()) if path.exists() else None
    except ValueError:
        return None
    if not row or row.get("config") != job.config or row.get("status") != "done" or "curves" not in row:
        return None
    return {"id": job.id, **job.values, "status": "done", "seconds": row["seconds"], **summarize(row["curves"])}


def run_point(job: PointJob) -> dict:
    """Train the point with ``axolotl train``, read its curves, write ``point.json``; the
    model's weights are deleted unless ``keep_model``. Returns the point's row."""
    os.chdir(job.cwd)
    folder = Path(job.dir)
    model_dir = folder / "model"
    (folder / POINT_FILE).unlink(missing_ok=True)
    config = folder / "config.yml"
    config.write_text(yaml.safe_dump(job.config, sort_keys=False))
    launch.start_over_unless_resumable(config, model_dir)  # a stale try goes; an interrupted one resumes
    start = time.perf_counter()
    ok = launch.train(config, model_dir, folder / "train.log", job.launcher_args)
    seconds = time.perf_counter() - start
    if not ok:
        return {"id": job.id, **job.values, "status": f"failed: see {folder / 'train.log'}", "seconds": seconds}
    row = {"id": job.id, **job.values, "status": "done", "seconds": round(seconds, 1), **summarize(curves(model_dir))}
    if not job.keep_model:
        for pattern in WEIGHTS:
            for path in model_dir.glob(pattern):
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    tmp = folder / f".{POINT_FILE}.tmp"
    tmp.write_text(json.dumps({**row, "config": job.config}, indent=1) + "\n")  # the scores are re-read from the curves
    os.replace(tmp, folder / POINT_FILE)
    return row


class RunPoint(submitit.helpers.Checkpointable):
    """``run_point`` as a submitit job that requeues itself when SLURM preempts it or its time
    runs out (submitit's checkpointing: on the signal SLURM sends first, ``checkpoint()``
    resubmits the same call, the training child is stopped, and the requeued job resumes from
    the point's last complete checkpoint through ``launch.train``)."""

    def __call__(self, job: PointJob) -> dict:
        return run_point(job)


def summarize(c: dict) -> dict:
    """Final and best recall (train people), the first epoch at 0.9 recall (how fast it
    memorizes), heldout, validation and training loss, and the curves themselves."""
    evals = c["eval"]
    scored = [e for e in evals if e["recall"] is not None]
    best = max(scored, key=lambda e: e["recall"], default=None)
    last = scored[-1] if scored else None
    val = [e["eval_loss"] for e in evals]
    return {
        "recall_final": last and last["recall"],
        "recall_best": best and best["recall"],
        "best_epoch": best and round(best["epoch"], 3),
        "epoch_to_90": next((round(e["epoch"], 3) for e in scored if e["recall"] >= 0.9), None),
        "heldout_final": last and last["heldout"],
        "heldout_at_best": best and best["heldout"],
        "val_loss_final": val[-1] if val else None,
        "val_loss_min": min(val) if val else None,
        "train_loss_final": c["train"][-1]["loss"] if c["train"] else None,
        "curves": c,
    }
