"""``make lr-find`` and ``make epoch-find``: the learning rate and the epochs, the way this
project's advice for memorization fine-tuning finds them.

1. lr-find: short runs at a constant rate (no warmup, no decay), one per rate, with
   frequent evaluation. The chosen rate is the highest whose validation loss stays smooth:
   it rises in at most ``max_rise_share`` of the evaluations, ends below where it began, and
   no lower rate ends lower (a higher rate that learns less has overshot; engram_run.tuning.curves).
   The training loss's oscillation (total variation over net drop) is reported beside it;
   with small batches it is noisy at every rate, so it does not decide.
2. epoch-find: one long run at that constant rate, evaluated ``evals_per_epoch`` times an
   epoch; the epoch where validation loss turns up (lowest, then ``patience`` evaluations
   without a new low), recall there, and the ``make train`` command that retrains for that
   many epochs with ``lr_scheduler: cosine``.

Both are sweeps (engram_run.tuning.sweep): the same executors, folders and skipping of finished runs.

    RESULTS/sweeps/<name>/lr_find.{md,csv,json,png}      name: <run>-lr-find
    RESULTS/sweeps/<name>/epoch_find.{md,csv,json,png}   name: <run>-epoch-find
"""

from __future__ import annotations

import math
import shlex
from dataclasses import replace
from pathlib import Path

from engram_run.runs.recipes import DEFAULT_DATA_DIR, RunError, load_recipe
from engram_run.tuning.curves import choose_rate, smoothness, turn_up
from engram_run.tuning.sweep import SweepSettings, sweep
from engram_run.tuning.sweep_report import frame, markdown, plot_curves, write

LRS = (1e-4, 2e-4, 5e-4, 1e-3)


def constant_rate(epochs: float, evals: dict):
    """What every tuning run sets over the recipe: a constant rate from the first step, the
    epochs, and the evaluation frequency (``{"eval_steps": share}`` or ``{"evals_per_epoch": n}``)."""

    def adjust(cfg: dict) -> dict:
        if not cfg.get("val_set_size"):
            raise RunError("tuning reads validation loss, and this recipe has no eval split; SET=val_set_size=0.02")
        for key in ("warmup_ratio", "evals_per_epoch", "eval_steps", "eval_strategy"):
            cfg.pop(key, None)
        return cfg | {"lr_scheduler": "constant", "warmup_steps": 0, "num_epochs": epochs, **evals}

    return adjust


def _fmt(v) -> str:
    return "" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)


def lr_find(
    s: SweepSettings, executor, lrs=LRS, epochs: float = 1.0, evals: int = 10, max_rise_share: float = 0.2
) -> Path:
    """Short constant-rate runs, one per rate; the chosen rate and why."""
    s = replace(s, name=s.name or f"{s.run.name}-lr-find")
    rates = sorted(set(lrs))
    # Training loss at every step (Axolotl takes whole steps only, and the run's length is not known here).
    frequency = {"eval_steps": 1 / evals, "logging_steps": 1}
    rows = sweep(s, executor, [{"learning_rate": lr} for lr in rates], constant_rate(epochs, frequency))
    measures = {r["learning_rate"]: smoothness(r["curves"]) for r in rows if r["status"] == "done"}
    for r in rows:
        r.update(measures.get(r["learning_rate"], {}))
    chosen, why = choose_rate(measures, max_rise_share)
    table = frame(rows, ["learning_rate"], ("val_rises", "evaluations", "val_rise_share", "train_tv_ratio"))
    md = [
        "# Learning rate",
        "",
        f"Constant-rate runs of {epochs:g} epoch(s), no warmup, {evals} evaluations each, "
        f"model `{s.model}` ({s.run.name}).",
        "",
        f"**Chosen: {_fmt(chosen) or 'none'}** — {why}.",
        "",
        "Smoothness: `val_rise_share` is the share of evaluations at which validation loss rose over the one "
        f"before (the choice: at most {max_rise_share:.0%}, the curve ends below its start, and no lower rate "
        "ends lower: a higher rate that learns less has overshot); "
        "`train_tv_ratio` is the training loss's total variation over its net drop (1.0: it only fell; "
        "inf: it ended no lower than it began).",
        "",
        markdown(table),
        "",
        "![curves](lr_find.png)",
    ]
    if chosen is not None:
        md += ["", "Next: `" + epoch_find_command(s, chosen) + "`"]
    data = {
        "chosen": chosen,
        "why": why,
        "max_rise_share": max_rise_share,
        "epochs": epochs,
        "evals": evals,
        "runs": rows,
    }
    out = s.results / "sweeps" / s.sweep_name
    path = write(
        out,
        "lr_find",
        data,
        table,
        md,
        lambda tmp: plot_curves(rows, tmp / "lr_find.png", lambda r: f"lr {r['learning_rate']:g}"),
    )
    print(f"[lr-find] chosen learning rate: {_fmt(chosen) or 'none'} ({why})", flush=True)
    return path


def _word(v) -> str:
    """A value as ``--set`` reads it back: 0.003, true, cosine."""
    return f"{v:g}" if isinstance(v, float) else str(v).lower() if isinstance(v, bool) else str(v)


def _make(target: str, s: SweepSettings, sets: dict, extra: str = "") -> str:
    words = [f"make {target} MODEL={s.model}"]
    if s.method:
        words.append(f"METHOD={s.method}")
    words.append(f"VARIANT={s.variant}")
    if s.data_dir != DEFAULT_DATA_DIR:
        words.append(f"DATA_DIR={s.data_dir}")
    setting = " ".join(f"{k}={_word(v)}" for k, v in {**s.overrides, **sets}.items())
    if setting:
        words.append(f"SET={shlex.quote(setting)}")
    return " ".join(words) + extra


def epoch_find_command(s: SweepSettings, lr: float) -> str:
    return _make("epoch-find", s, {}, f" LR={lr:g}")


def epoch_find(
    s: SweepSettings, executor, lr: float, epochs: float | None = None, evals_per_epoch: int = 2, patience: int = 3
) -> Path:
    """One long constant-rate run; where validation loss turns up, recall there, the retrain command."""
    if patience < 1:
        raise RunError(f"PATIENCE must be at least 1 (got {patience})")
    epochs = epochs or float(load_recipe(s.run.recipe).get("num_epochs") or 1)
    s = replace(s, name=s.name or f"{s.run.name}-epoch-find")
    adjust = constant_rate(epochs, {"evals_per_epoch": evals_per_epoch})
    (row,) = sweep(s, executor, [{"learning_rate": lr}], adjust)
    if row["status"] != "done":
        raise RunError(f"the epoch-find run {row['status']}")
    evals = row["curves"]["eval"]
    at = turn_up([e["eval_loss"] for e in evals], patience)
    found = evals[at] if at is not None else None
    turn_epoch = round(found["epoch"], 2) if found else None  # as logged: evaluations drift off the half-epochs
    retrain = (
        _make("train", s, {"learning_rate": lr, "num_epochs": turn_epoch, "lr_scheduler": "cosine"}, " FORCE=1")
        if found
        else None
    )
    result = {
        "learning_rate": lr,
        "epochs": epochs,
        "evals_per_epoch": evals_per_epoch,
        "patience": patience,
        "turn_up_epoch": turn_epoch,
        "turn_up_step": found and found["step"],
        "val_loss_at_turn_up": found and found["eval_loss"],
        "recall_at_turn_up": found and found["recall"],
        "heldout_at_turn_up": found and found["heldout"],
        "retrain": retrain,
        "run": row,
    }
    table = frame([row], ["learning_rate"])
    if found:
        verdict = (
            f"**Validation loss turns up at epoch {turn_epoch:g}** (step {found['step']}: {found['eval_loss']:.4f}, "
            f"then {patience} evaluations without a lower one); recall there {_fmt(found['recall'])}, heldout "
            f"{_fmt(found['heldout'])}."
        )
        tail = ["", "Retrain for that many epochs with a cosine schedule:", "", f"    {retrain}"]
    else:
        verdict = (
            f"**Validation loss had not turned up by epoch {epochs:g}** (patience {patience}): "
            f"rerun with EPOCHS={math.ceil(2 * epochs)}."
        )
        tail = []
    md = [
        "# Epochs",
        "",
        f"One constant-rate run at learning rate {lr:g} for {epochs:g} epochs, "
        f"{evals_per_epoch} evaluations an epoch, model `{s.model}` ({s.run.name}).",
        "",
        verdict,
        *tail,
        "",
        markdown(table),
        "",
        "![curves](epoch_find.png)",
    ]
    out = s.results / "sweeps" / s.sweep_name
    path = write(
        out,
        "epoch_find",
        result,
        table,
        md,
        lambda tmp: plot_curves([row], tmp / "epoch_find.png", lambda r: f"lr {r['learning_rate']:g}", mark=turn_epoch),
    )
    print(
        f"[epoch-find] {verdict.replace('**', '')}" + (f"\n[epoch-find] retrain: {retrain}" if retrain else ""),
        flush=True,
    )
    return path
