"""``engram-localize probe``'s files: every probe as CSV + JSON, a heatmap per view (layer x
attribute), and a Markdown summary with the floors beside each accuracy."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from engram_data.contract import FIELDS
from engram_localize.outputs import markdown_table, write_json
from engram_localize.probe import NAME, NAME_END

# view -> (title, rows of the table it shows)
VIEWS = {
    "P_name": ("P-probe at the end of the name (biography)", lambda f: (f.probe == "P") & (f.position == NAME)),
    "P_before": (
        "P-probe just before the attribute (biography)",
        lambda f: (f.probe == "P") & (f.position == "before " + f.field),
    ),
    "Q_name": ("Q-probe: the name alone", lambda f: (f.probe == "Q") & (f.position == NAME)),
    "Q_end": ("Q-probe: the name + end token (the paper's)", lambda f: (f.probe == "Q") & (f.position == NAME_END)),
}


def view(frame: pd.DataFrame, name: str, column: str = "accuracy") -> pd.DataFrame:
    """layer x field of one view."""
    rows = frame[VIEWS[name][1](frame)]
    return rows.pivot(index="layer", columns="field", values=column)[list(FIELDS)]


def heatmap(frame: pd.DataFrame, path: Path, label: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = views(frame)
    fig, axes = plt.subplots(1, len(shown), figsize=(5.2 * len(shown), 3.6), squeeze=False)
    for ax, name in zip(axes[0], shown):
        grid = view(frame, name)
        image = ax.imshow(grid.to_numpy(), vmin=0, vmax=1, cmap="viridis", aspect="auto", origin="lower")
        for (i, j), value in pd.DataFrame(grid.to_numpy()).stack().items():
            ax.text(
                j, i, f"{value:.2f}", ha="center", va="center", fontsize=7, color="white" if value < 0.6 else "black"
            )
        ax.set_xticks(range(len(FIELDS)), [f.replace("_", "\n") for f in FIELDS], fontsize=7)
        ax.set_yticks(range(len(grid)), [("emb" if i == 0 else str(i)) for i in grid.index], fontsize=7)
        ax.set_ylabel("layer")
        ax.set_title(VIEWS[name][0], fontsize=9)
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="heldout accuracy")
    fig.suptitle(label, fontsize=9)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def views(frame: pd.DataFrame) -> list[str]:
    """The views this frame has rows for (no ``Q_end`` where the tokenizer has no end token)."""
    return [name for name in VIEWS if VIEWS[name][1](frame).any()]


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per view and field at the last layer: accuracy beside its three floors."""
    last = frame.layer.max()
    out = []
    for name in views(frame):
        rows = frame[VIEWS[name][1](frame) & (frame.layer == last)].set_index("field")
        for field in FIELDS:
            r = rows.loc[field]
            out.append(
                {
                    "probe": VIEWS[name][0],
                    "field": field,
                    "accuracy": r.accuracy,
                    "shuffled": r.shuffled,
                    "untrained": r.untrained,
                    "majority": r.majority,
                    "classes": int(r.classes),
                    "scored": f"{int(r.scored)}/{int(r.heldout_people)}",
                }
            )
    return pd.DataFrame(out)


def decodable_at_name(frame: pd.DataFrame, margin: float = 0.2) -> list[str]:
    """Fields whose Q-probe (the name, alone or with the end token), at its best layer and site,
    beats every floor by ``margin``."""
    q = frame[(frame.probe == "Q") & frame.accuracy.notna()]
    best = q.loc[q.groupby("field").accuracy.idxmax()].set_index("field")
    floor = best[["shuffled", "untrained", "majority"]].max(axis=1)
    return [f for f in FIELDS if f in best.index and best.accuracy[f] >= floor[f] + margin]


def write(rows: list[dict], folder: Path, model: str) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    frame.to_csv(folder / "probe.csv", index=False)
    write_json(folder / "probe.json", rows)
    heatmap(frame, folder / "probe.png", model)
    last = frame.layer.max()
    decodable = decodable_at_name(frame)
    md = [
        "# Probes: where the attributes are decodable",
        "",
        f"Linear probes on `{model}`'s frozen hidden states, trained on train people and scored on heldout people "
        "whose value some train person holds (*scored*). Floors on the same people: *shuffled* labels, the "
        "*untrained* model of the same architecture, and the *majority* value. Last layer "
        f"({last}); every layer is in `probe.csv` and the heatmap.",
        "",
        markdown_table(summary(frame), ".3f"),
        "",
        f"Attributes decodable from the name (Q-probe, alone or with the end token; best layer, at least 0.2 "
        "above every floor): "
        f"{', '.join(decodable) or 'none'}.",
        "",
        "![probe heatmap](probe.png)",
    ]
    (folder / "probe.md").write_text("\n".join(md) + "\n")
    # What a study reads without importing this package: the Q-probe's best layer per field.
    q = frame[(frame.probe == "Q") & frame.accuracy.notna()].groupby("field").accuracy.max()
    write_json(
        folder / "decodable.json",
        {"margin": 0.2, "decodable_at_name": decodable, "q_probe_best": {f: float(q[f]) for f in FIELDS if f in q}},
    )
    return frame
