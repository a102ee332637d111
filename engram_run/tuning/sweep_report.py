"""The files a sweep leaves for a person: a table (Markdown, CSV, JSON with every curve) and
plots (recall per point, validation and training loss per point), written whole or not at all."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from engram_data.atomic import atomic_output

GENERATOR = "llm-engram/sweep"
SHOWN = (
    "status",
    "recall_final",
    "recall_best",
    "best_epoch",
    "epoch_to_90",
    "heldout_final",
    "heldout_at_best",
    "val_loss_final",
    "val_loss_min",
    "train_loss_final",
    "seconds",
)


def frame(rows: list[dict], keys: list[str], extra: tuple[str, ...] = ()) -> pd.DataFrame:
    """One line per point: its grid values, then the scores (no curves)."""
    columns = [*keys, *extra, *SHOWN]
    return pd.DataFrame([{c: r.get(c) for c in columns} for r in rows], columns=columns)


def markdown(table: pd.DataFrame) -> str:
    """The table for a person: 4 significant digits, empty cells where there is no value."""
    return table.astype(object).where(table.notna(), None).to_markdown(index=False, floatfmt=".4g", missingval="")


def plot_curves(rows: list[dict], path: Path, label=None, mark: float | None = None) -> None:
    """Validation loss, training loss and recall against the epoch, one line per point;
    ``mark``: an epoch to draw a line at (where validation loss turned up)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if r["status"] == "done"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for i, r in enumerate(done):
        c, name = r["curves"], (label(r) if label else r["id"])
        axes[0].plot(
            [e["epoch"] for e in c["eval"]], [e["eval_loss"] for e in c["eval"]], "o-", ms=3, color=f"C{i}", label=name
        )
        axes[1].plot([t["epoch"] for t in c["train"]], [t["loss"] for t in c["train"]], color=f"C{i}", lw=1)
        scored = [e for e in c["eval"] if e["recall"] is not None]
        axes[2].plot([e["epoch"] for e in scored], [e["recall"] for e in scored], "o-", ms=3, color=f"C{i}")
    titles = ["validation loss", "training loss", "recall (train people)"]
    for ax, title in zip(axes, titles, strict=True):
        ax.set_xlabel("epoch")
        ax.set_title(title)
        if mark is not None:
            ax.axvline(mark, color="red", ls=":", lw=1)
    axes[2].axhline(0.25, color="grey", ls="--", lw=1)
    axes[2].set_ylim(0, 1)
    if done:
        axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_recall(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(rows) + 2), 4))
    xs = range(len(rows))
    for offset, key, name in ((-0.2, "recall_final", "final"), (0.2, "recall_best", "best")):
        ax.bar([x + offset for x in xs], [r.get(key) or 0 for r in rows], 0.4, label=f"recall: {name}")
    ax.plot(list(xs), [r.get("heldout_final") or math.nan for r in rows], "kx", label="heldout: final")
    ax.axhline(0.25, color="grey", ls="--", lw=1, label="chance (0.25)")
    ax.set_xticks(list(xs), [r["id"].replace("__", "\n") for r in rows], fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("four-option accuracy")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(out: Path, stem: str, data: dict, table: pd.DataFrame, md: list[str], plots) -> Path:
    """``out/<stem>.{json,csv,md}`` and the plots (``plots(tmp)`` draws them), atomically."""
    with atomic_output(out, GENERATOR, overwrite=True) as tmp:
        (tmp / f"{stem}.json").write_text(json.dumps(data, indent=1, allow_nan=True) + "\n")
        table.to_csv(tmp / f"{stem}.csv", index=False)
        (tmp / f"{stem}.md").write_text("\n".join(md) + "\n")
        plots(tmp)
        (tmp / "manifest.json").write_text(json.dumps({"generator": GENERATOR}) + "\n")
    return out / f"{stem}.md"


def write_sweep(rows: list[dict], keys: list[str], out: Path, title: str, settings: dict) -> Path:
    table = frame(rows, keys)
    failed = [r for r in rows if r["status"] != "done"]
    md = [
        f"# {title}",
        "",
        f"{len(rows)} points, {len(rows) - len(failed)} finished, {len(failed)} failed. "
        "Recall: four-option accuracy on train people (the plugin's, at every evaluation; chance 0.25); "
        "best: the highest of the run's evaluations; epoch_to_90: the first evaluation at 0.9 or more; "
        "heldout: people whose QA was never trained.",
        "",
        markdown(table),
        "",
        "![recall per point](sweep.png)",
        "",
        "![curves per point](sweep_curves.png)",
    ]

    def plots(tmp: Path) -> None:
        _plot_recall(rows, tmp / "sweep.png")
        plot_curves(rows, tmp / "sweep_curves.png")

    return write(out, "sweep", {"settings": settings, "points": rows}, table, md, plots)
