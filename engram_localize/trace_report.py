"""Causal tracing over a dataset's questions, averaged per field, written as JSON, PNG
heatmaps (layer × token position) and a Markdown summary."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from engram_data.contract import FIELDS  # noqa: E402
from engram_localize.outputs import percent, write_json  # noqa: E402
from engram_localize.trace import CATEGORIES, KINDS, Tracer, pooled, prompts  # noqa: E402

ALL = "all fields"
SITE = {"hidden": "the hidden state (layer output)", "mlp": "the MLP output", "attn": "the attention output"}


def trace_data(
    tracer: Tracer,
    data: Path,
    tokenizer,
    split: str = "train",
    limit: int = 20,
    progress: bool = True,
    only: tuple[str, ...] = FIELDS,
) -> dict:
    """The first ``limit`` questions of each field (of ``only``) the model answers correctly, traced."""
    per_field: dict[str, dict] = {}
    fields = prompts(data, tokenizer, split, only)
    bar = tqdm(total=limit * len(fields), desc="trace", unit="question", disable=not progress)
    index = 0
    for field, items in fields.items():
        traced, seen, maps = [], 0, {k: [] for k in KINDS}
        for row, prompt in items:
            if len(traced) == limit:
                break
            seen += 1
            result = tracer.trace(prompt, index)
            index += 1
            if result is None:
                continue
            traced.append({"id": row["id"], "clean": result["clean"], "corrupted": result["corrupted"]})
            for kind in KINDS:
                maps[kind].append(pooled(result["restored"][kind], prompt))
            bar.update(1)
        per_field[field] = {"questions": traced, "seen": seen, "maps": maps}
    bar.close()
    return summarize(per_field, tracer)


def _mean(stack: list[torch.Tensor]) -> list[list[float | None]]:
    grid = torch.stack(stack).nanmean(0) if stack else torch.full((1, len(CATEGORIES)), math.nan)
    return [[None if math.isnan(v) else v for v in row] for row in grid.tolist()]


def summarize(per_field: dict, tracer: Tracer) -> dict:
    fields = {}
    for field, f in per_field.items():
        qs = f["questions"]
        fields[field] = {
            "traced": len(qs),
            "seen": f["seen"],
            "clean": float(np.mean([q["clean"] for q in qs])) if qs else None,
            "corrupted": float(np.mean([q["corrupted"] for q in qs])) if qs else None,
            "heatmaps": {k: _mean(f["maps"][k]) for k in KINDS},
        }
    every = [q for f in per_field.values() for q in f["questions"]]
    fields[ALL] = {
        "traced": len(every),
        "seen": sum(f["seen"] for f in per_field.values()),
        "clean": float(np.mean([q["clean"] for q in every])) if every else None,
        "corrupted": float(np.mean([q["corrupted"] for q in every])) if every else None,
        "heatmaps": {k: _mean([m for f in per_field.values() for m in f["maps"][k]]) for k in KINDS},
    }
    return {
        "layers": tracer.n_layers,
        "traced_layers": tracer.traced,  # the heatmaps' rows
        "positions": list(CATEGORIES),
        "kinds": list(KINDS),
        "noise_std": tracer.scale,
        "window": tracer.window,
        "seed": tracer.seed,
        "measure": "probability of the correct option among the four",
        "fields": fields,
        "questions": {field: f["questions"] for field, f in per_field.items()},
    }


def _panel(ax, grid, title, low, high, ids) -> None:
    values = np.array([[np.nan if v is None else v for v in row] for row in grid], dtype=float)
    image = ax.imshow(values, aspect="auto", cmap="Purples", vmin=low, vmax=high)
    ax.set_xticks(range(len(CATEGORIES)), CATEGORIES, rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(values.shape[0]), ids)
    ax.set_ylabel("layer")
    ax.set_title(title, fontsize=9)
    ax.figure.colorbar(image, ax=ax)


def plots(result: dict, folder: Path) -> None:
    rows = [ALL, *(f for f in FIELDS if f in result["fields"])]
    for name, shown in (("trace.png", rows[:1]), ("trace_by_field.png", rows[1:])):
        fig, axes = plt.subplots(
            len(shown),
            len(KINDS),
            figsize=(4.2 * len(KINDS), 0.6 + (1.2 + 0.3 * len(_ids(result))) * len(shown)),
            squeeze=False,
        )
        for r, field in enumerate(shown):
            f = result["fields"][field]
            low, high = f["corrupted"] or 0.0, f["clean"] or 1.0
            for c, kind in enumerate(KINDS):
                _panel(
                    axes[r][c],
                    f["heatmaps"][kind],
                    f"{field}: restore {kind}\nclean {high:.2f}, corrupted {low:.2f}, n={f['traced']}",
                    low,
                    high,
                    _ids(result),
                )
        fig.tight_layout()
        fig.savefig(folder / name, dpi=110)
        plt.close(fig)


def _ids(result: dict) -> list[int]:
    """The layer of each heatmap row (every layer unless --layers chose some)."""
    return result.get("traced_layers") or list(range(result["layers"]))


def peak(grid, ids: list[int] | None = None) -> tuple[int, int, float]:
    ids = ids or list(range(len(grid)))
    best = max(
        ((v, ids[row], c) for row, values in enumerate(grid) for c, v in enumerate(values) if v is not None),
        default=(math.nan, ids[0], 0),
    )
    return best[1], best[2], best[0]


def summary(result: dict, model: str) -> str:
    f = result["fields"][ALL]
    lines = ["# Which states carry the fact (trace)", ""]
    if not f["traced"]:
        return "\n".join(
            [*lines, f"`{model}` answered none of the {f['seen']} questions correctly: nothing to trace.", ""]
        )
    lost = f["clean"] - f["corrupted"]
    lines += [
        f"`{model}`, {f['traced']} questions it answers correctly (of {f['seen']} seen): the correct option's "
        f"probability among the four is {f['clean']:.3f} clean and {f['corrupted']:.3f} with the name's embeddings "
        f"corrupted (noise std {result['noise_std']:.3g}).",
        "",
    ]
    for kind in KINDS:
        layer, c, value = peak(f["heatmaps"][kind], _ids(result))
        share = (value - f["corrupted"]) / lost if lost > 0 else math.nan
        lines.append(
            f"- Restoring {SITE[kind]} of layer {layer} at the {CATEGORIES[c]} position brings back "
            f"{percent(max(share, 0.0)) if not math.isnan(share) else 'n/a'} of the lost probability "
            f"({value:.3f})."
        )
    subject = CATEGORIES.index("last subject")
    for kind in ("hidden", "mlp"):
        column = [
            (row[subject], layer) for layer, row in zip(_ids(result), f["heatmaps"][kind]) if row[subject] is not None
        ]
        if column and lost > 0:
            value, layer = max(column)
            lines.append(
                f"- At the last subject token, {SITE[kind]} matters most at layer {layer}: "
                f"{percent(max((value - f['corrupted']) / lost, 0.0))} of the lost probability."
            )
    lines += [
        "",
        "| field | traced | clean | corrupted | best hidden-state site |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for field, g in result["fields"].items():
        if field != ALL and g["traced"]:
            layer, c, value = peak(g["heatmaps"]["hidden"], _ids(result))
            lines.append(
                f"| {field} | {g['traced']} | {g['clean']:.3f} | {g['corrupted']:.3f} | "
                f"layer {layer}, {CATEGORIES[c]} ({value:.3f}) |"
            )
    lines += ["", "![trace](trace.png)", "", "![trace by field](trace_by_field.png)", ""]
    return "\n".join(lines)


def write(result: dict, folder: Path, model: str) -> None:
    write_json(folder / "trace.json", result)
    plots(result, folder)
    (folder / "trace.md").write_text(summary(result, model))
