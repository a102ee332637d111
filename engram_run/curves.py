"""Loss curves of a training run and the two measures that tuning reads from them.

* **Smoothness** (``make lr-find``): the share of evaluations at which validation loss rose
  over the one before (0 for a curve that only falls), and the training loss's total
  variation over its net drop (1.0 for a curve that only falls; oscillation adds to it, a
  curve that ends higher than it began is ``inf``).
* **Turn-up** (``make epoch-find``): the evaluation with the lowest validation loss that
  ``patience`` later evaluations in a row failed to beat: early stopping's rule, applied
  after the fact to one long constant-rate run.

The curves come from the plugin's ``engram_log.jsonl`` (the trainer's log lines) and
``engram_recall.jsonl`` (recall at every evaluation).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from engram_data.contract import LOG_HISTORY, RECALL_HISTORY
from engram_run.recipes import RunError

RECALL = "eval_engram_qa_acc_overall"
HELDOUT = "eval_engram_heldout_acc_overall"
REVERSE = "eval_engram_reverse_acc"


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    try:
        return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]
    except ValueError as exc:
        raise RunError(f"{path} is not JSON lines ({exc}); it was cut or edited: rerun that point") from None


def curves(model_dir: Path) -> dict[str, list[dict]]:
    """``train``: [{step, epoch, loss}], ``eval``: [{step, epoch, eval_loss, recall, heldout,
    reverse}] (recall keys where the plugin scored that evaluation)."""
    logs = read_jsonl(model_dir / LOG_HISTORY)
    recall = {r["step"]: r for r in read_jsonl(model_dir / RECALL_HISTORY)}
    train = [{"step": r["step"], "epoch": r["epoch"], "loss": r["loss"]} for r in logs if "loss" in r]
    evals = []
    for r in logs:
        if "eval_loss" in r:
            scored = recall.get(r["step"], {})
            evals.append({"step": r["step"], "epoch": r["epoch"], "eval_loss": r["eval_loss"],
                          "recall": scored.get(RECALL), "heldout": scored.get(HELDOUT),
                          "reverse": scored.get(REVERSE)})  # fmt: skip
    return {"train": train, "eval": evals}


def rise_share(values: list[float]) -> float:
    """The share of steps where the value rose over the one before (0 for fewer than 2)."""
    steps = list(zip(values, values[1:]))
    if not steps:
        return 0.0
    return sum(b > a for a, b in steps) / len(steps)


def tv_ratio(values: list[float]) -> float:
    """Total variation over net drop: 1.0 for a curve that only falls, more the more it
    oscillates, ``inf`` for one that does not end lower than it began (or is not finite)."""
    if not all(math.isfinite(v) for v in values):
        return math.inf
    if len(values) < 2:
        return 1.0
    drop = values[0] - values[-1]
    if drop <= 0:
        return math.inf
    return sum(abs(b - a) for a, b in zip(values, values[1:])) / drop


def diverged(values: list[float]) -> bool:
    """No finite curve, or one that ends no lower than it began."""
    return not values or not all(math.isfinite(v) for v in values) or values[-1] >= values[0]


def smoothness(run_curves: dict[str, list[dict]]) -> dict:
    """The measures of one run: ``val_rise_share`` decides, the rest explains."""
    val = [e["eval_loss"] for e in run_curves["eval"]]
    train = [t["loss"] for t in run_curves["train"]]
    return {
        "evaluations": len(val),
        "val_rises": sum(b > a for a, b in zip(val, val[1:])),
        "val_rise_share": rise_share(val),
        "val_diverged": diverged(val),
        "train_tv_ratio": tv_ratio(train),
        "val_loss_first": val[0] if val else None,
        "val_loss_final": val[-1] if val else None,
        "train_loss_final": train[-1] if train else None,
    }


def choose_rate(runs: dict[float, dict], max_rise_share: float) -> tuple[float | None, str]:
    """The highest rate whose validation loss stays smooth (rises in at most
    ``max_rise_share`` of its evaluations, and ends below where it began), and why."""
    if not runs:
        return None, "no run finished, so no rate can be chosen"
    smooth = {lr: m for lr, m in runs.items() if not m["val_diverged"] and m["val_rise_share"] <= max_rise_share}

    def told(lr: float) -> str:
        m = runs[lr]
        if m["val_diverged"]:
            return f"{lr:g} (validation loss did not end below where it began)"
        return f"{lr:g} (validation loss rose in {m['val_rises']} of {max(m['evaluations'] - 1, 0)} evaluations)"

    if not smooth:
        return None, (f"no rate kept validation loss smooth (rising in at most {max_rise_share:.0%} of evaluations): "
                      f"{'; '.join(told(lr) for lr in sorted(runs))}; try lower rates")  # fmt: skip
    best = max(smooth)
    higher = sorted(lr for lr in runs if lr > best)
    why = f"{told(best)}: the highest rate whose validation loss rose in at most {max_rise_share:.0%} of evaluations"
    if higher:
        why += f"; the next higher, {told(higher[0])}, oscillates"
    else:
        why += "; it is the highest rate tried, so a higher one may be smooth too: add higher LRS"
    return best, why


def turn_up(losses: list[float], patience: int) -> int | None:
    """The index of the evaluation where validation loss turned up: the lowest loss so far,
    followed by ``patience`` evaluations in a row that did not go below it. None if the
    curve was still falling (or had not waited ``patience`` evaluations) at its end."""
    if patience < 1:
        raise ValueError("patience must be at least 1")
    best, since = None, 0
    for i, loss in enumerate(losses):
        if best is None or loss < losses[best]:
            best, since = i, 0
        else:
            since += 1
            if since >= patience:
                return best
    return None
