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

import math
from pathlib import Path

from engram_data.contract import read_jsonl
from engram_data.run_files import LOG_HISTORY, RECALL_HISTORY
from engram_run.runs.recipes import RunError

RECALL = "eval_engram_qa_acc_overall"
HELDOUT = "eval_engram_heldout_acc_overall"
REVERSE = "eval_engram_reverse_acc"


def read_log(path: Path) -> list[dict]:
    """A log the plugin writes (none if it wrote none); RunError if it was cut or edited."""
    if not path.exists():
        return []
    try:
        return read_jsonl(path)
    except ValueError as exc:
        raise RunError(f"{path} is not JSON lines ({exc}); it was cut or edited: rerun that point") from None


def curves(model_dir: Path) -> dict[str, list[dict]]:
    """``train``: [{step, epoch, loss}], ``eval``: [{step, epoch, eval_loss, recall, heldout,
    reverse}] (recall keys where the plugin scored that evaluation)."""
    logs = read_log(model_dir / LOG_HISTORY)
    recall = {r["step"]: r for r in read_log(model_dir / RECALL_HISTORY)}
    train = [{"step": r["step"], "epoch": r["epoch"], "loss": r["loss"]} for r in logs if "loss" in r]
    evals = []
    for r in logs:
        if "eval_loss" in r:
            scored = recall.get(r["step"], {})
            evals.append(
                {
                    "step": r["step"],
                    "epoch": r["epoch"],
                    "eval_loss": r["eval_loss"],
                    "recall": scored.get(RECALL),
                    "heldout": scored.get(HELDOUT),
                    "reverse": scored.get(REVERSE),
                }
            )
    return {"train": train, "eval": evals}


def rises(values: list[float]) -> int:
    """How many times the value rose over the one before."""
    return sum(b > a for a, b in zip(values, values[1:]))


def rise_share(values: list[float]) -> float:
    """The share of steps where the value rose over the one before (0 for fewer than 2)."""
    return rises(values) / (len(values) - 1) if len(values) > 1 else 0.0


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
        "val_rises": rises(val),
        "val_rise_share": rise_share(val),
        "val_diverged": diverged(val),
        "train_tv_ratio": tv_ratio(train),
        "val_loss_first": val[0] if val else None,
        "val_loss_final": val[-1] if val else None,
        "train_loss_final": train[-1] if train else None,
    }


def choose_rate(runs: dict[float, dict], max_rise_share: float) -> tuple[float | None, str]:
    """The highest rate whose validation loss stays smooth, and why. Smooth: it rises in at
    most ``max_rise_share`` of the evaluations and ends below where it began. A smooth rate
    that ends above a lower rate's final validation loss has overshot (a jump early on, then
    a slower descent) and is not chosen either."""
    if not runs:
        return None, "no run finished, so no rate can be chosen"

    def problem(lr: float) -> str | None:
        m = runs[lr]
        if m["val_diverged"]:
            return "its validation loss did not end below where it began"
        if m["val_rise_share"] > max_rise_share:
            return f"its validation loss rose in {m['val_rises']} of {m['evaluations'] - 1} evaluations: it oscillates"
        lower = [x for x in runs if x < lr and not runs[x]["val_diverged"]]
        better = min(lower, key=lambda x: runs[x]["val_loss_final"], default=None)
        if better is not None and runs[better]["val_loss_final"] < m["val_loss_final"]:
            return (
                f"its validation loss ended at {m['val_loss_final']:.4g}, above {runs[better]['val_loss_final']:.4g} "
                f"at {better:g}: it overshoots"
            )
        return None

    problems = {lr: problem(lr) for lr in sorted(runs)}
    fine = [lr for lr, p in problems.items() if p is None]
    if not fine:
        return None, (
            "no rate kept validation loss smooth: "
            + "; ".join(f"{lr:g}: {p}" for lr, p in problems.items())
            + "; try lower rates"
        )
    best = max(fine)
    m = runs[best]
    why = (
        f"{best:g}: the highest rate whose validation loss stays smooth (rose in {m['val_rises']} of "
        f"{m['evaluations'] - 1} evaluations, at most {max_rise_share:.0%}, and ended lowest so far)"
    )
    higher = [lr for lr in problems if lr > best]
    if higher:
        why += "; " + "; ".join(f"{lr:g}: {problems[lr]}" for lr in higher)
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
