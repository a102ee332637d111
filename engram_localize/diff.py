"""``engram-localize diff``: how much every tensor changed in fine-tuning, and the same per
layer × module type: elements, changed elements, L2 norm of the change, relative change
(‖Δ‖ / ‖W_base‖), largest |Δ|, and the count of |Δ| above each threshold.

Streams one tensor pair at a time; Δ is computed in float32 and norms are summed in
float64, so that two 8B checkpoints never need two models in memory.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from engram_localize.checkpoints import (  # noqa: E402
    MODULES,
    OUTSIDE,
    OUTSIDE_MODULES,
    Checkpoint,
    classify,
    paired_names,
    pairs,
)
from engram_localize.outputs import markdown_table, percent, write_json  # noqa: E402

DEFAULT_THRESHOLDS = (1e-5, 1e-4, 1e-3, 1e-2)


def above_key(threshold: float) -> str:
    return f"above_{threshold:g}"


def tensor_stats(name: str, base: torch.Tensor, tuned: torch.Tensor, thresholds) -> dict:
    layer, module = classify(name)
    delta = tuned.float() - base.float()
    size = abs(delta)
    row = {
        "name": name,
        "layer": OUTSIDE if layer is None else layer,
        "module": module,
        "shape": "x".join(map(str, base.shape)),
        "numel": base.numel(),
        "changed": int((delta != 0).sum()),
        "l2": float(torch.linalg.vector_norm(delta, dtype=torch.float64)),
        "base_l2": float(torch.linalg.vector_norm(base.float(), dtype=torch.float64)),
        "max_abs": float(size.max()) if base.numel() else 0.0,
    }
    row["relative"] = row["l2"] / row["base_l2"] if row["base_l2"] else math.nan
    for t in thresholds:
        row[above_key(t)] = int((size > t).sum())
    return row


def group_order(layer, module) -> tuple:
    """Layers in order, then the tensors outside them; module types in heatmap order."""
    kinds = OUTSIDE_MODULES if layer == OUTSIDE else MODULES
    return (layer if isinstance(layer, int) else math.inf, kinds.index(module) if module in kinds else len(kinds))


def aggregate(tensors: list[dict], thresholds) -> list[dict]:
    """One row per (layer, module type): sums of counts, norms combined as sqrt(Σ‖·‖²)."""
    groups: dict[tuple, dict] = {}
    counts = ("numel", "changed", *(above_key(t) for t in thresholds))
    for row in tensors:
        g = groups.setdefault(
            (row["layer"], row["module"]),
            {
                "layer": row["layer"],
                "module": row["module"],
                "tensors": 0,
                "l2_sq": 0.0,
                "base_sq": 0.0,
                "max_abs": 0.0,
                **dict.fromkeys(counts, 0),
            },
        )
        g["tensors"] += 1
        g["l2_sq"] += row["l2"] ** 2
        g["base_sq"] += row["base_l2"] ** 2
        g["max_abs"] = max(g["max_abs"], row["max_abs"])
        for key in counts:
            g[key] += row[key]
    rows = []
    for key in sorted(groups, key=lambda k: group_order(*k)):
        g = groups[key]
        l2, base = math.sqrt(g.pop("l2_sq")), math.sqrt(g.pop("base_sq"))
        rows.append({**g, "l2": l2, "base_l2": base, "relative": l2 / base if base else math.nan})
    return rows


def diff(base: Checkpoint, tuned: Checkpoint, thresholds=DEFAULT_THRESHOLDS, progress: bool = True) -> dict:
    names = paired_names(base, tuned)
    tensors = [
        tensor_stats(name, b, t, thresholds)
        for name, b, t in tqdm(
            pairs(base, tuned, names), total=len(names), desc="diff", unit="tensor", disable=not progress
        )
    ]
    total = aggregate([{**r, "layer": "all", "module": "all"} for r in tensors], thresholds)[0]
    return {
        "base": str(base.path),
        "tuned": str(tuned.path),
        "thresholds": list(thresholds),
        "total": total,
        "groups": aggregate(tensors, thresholds),
        "tensors": tensors,
    }


def heatmap(groups: list[dict], path: Path, threshold: float) -> Path:
    """Two panels, layer × module type: relative change, and the share of weights whose
    change is above ``threshold``; tensors outside the layers in the last row."""
    layers = sorted({g["layer"] for g in groups if g["layer"] != OUTSIDE})
    rows = [*layers, *([OUTSIDE] if any(g["layer"] == OUTSIDE for g in groups) else [])]
    present = {g["module"] for g in groups}
    cols = [m for m in MODULES if m in present] + [m for m in OUTSIDE_MODULES if m in present and m not in MODULES]
    fig, axes = plt.subplots(1, 2, figsize=(2 * (1.5 + 0.55 * len(cols)), 1.8 + 0.35 * len(rows)), squeeze=False)
    for ax, (title, value) in zip(
        axes[0],
        (
            ("relative change ‖Δ‖/‖W‖", lambda g: g["relative"]),
            (f"share of weights with |Δ| > {threshold:g}", lambda g: g[above_key(threshold)] / g["numel"]),
        ),
    ):
        grid = np.full((len(rows), len(cols)), np.nan)
        for g in groups:
            grid[rows.index(g["layer"]), cols.index(g["module"])] = value(g)
        image = ax.imshow(grid, aspect="auto", cmap="viridis")
        ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right")
        ax.set_yticks(range(len(rows)), [str(r) for r in rows])
        ax.set_ylabel("layer")
        ax.set_title(title)
        fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def summary(result: dict, top: int = 10) -> str:
    total, thresholds = result["total"], result["thresholds"]
    groups = [g for g in result["groups"] if not math.isnan(g["relative"])]
    ranked = sorted(groups, key=lambda g: -g["relative"])
    first = ranked[0] if ranked else None
    lines = [
        "# What changed (diff)",
        "",
        f"`{result['tuned']}` against `{result['base']}`: {total['changed']:,} of {total['numel']:,} weights changed "
        f"({percent(total['changed'] / max(total['numel'], 1))}); relative change ‖Δ‖/‖W‖ = {total['relative']:.3g} "
        f"over all tensors.",
    ]
    if first:
        where = f"layer {first['layer']}" if isinstance(first["layer"], int) else "outside the layers"
        lines.append(f"The largest relative change is in {first['module']}, {where} ({first['relative']:.3g}).")
    big = above_key(thresholds[-1]) if thresholds else None
    if big:
        lines.append(f"{total[big]:,} weights changed by more than {thresholds[-1]:g}.")
    frame = pd.DataFrame(ranked[:top])
    if not frame.empty:
        keep = ["layer", "module", "numel", "changed", "l2", "relative", "max_abs", *(above_key(t) for t in thresholds)]
        lines += [
            "",
            f"Top {min(top, len(frame))} layer × module groups by relative change "
            "(all in `groups.csv`, every tensor in `tensors.csv`):",
            "",
            markdown_table(frame[keep]),
        ]
    lines += ["", "![diff heatmap](heatmap.png)", ""]
    return "\n".join(lines)


def write(result: dict, folder: Path) -> None:
    pd.DataFrame(result["tensors"]).to_csv(folder / "tensors.csv", index=False)
    pd.DataFrame(result["groups"]).to_csv(folder / "groups.csv", index=False)
    write_json(folder / "diff.json", result)
    thresholds = result["thresholds"]
    heatmap(result["groups"], folder / "heatmap.png", thresholds[-1] if thresholds else 0.0)
    (folder / "diff.md").write_text(summary(result))
