"""A graft or prune curve written as JSON, CSV, a PNG plot and a Markdown summary that
says how few weights carry the memory and where they are."""

from __future__ import annotations

from pathlib import Path

import matplotlib

from engram_data.contract import CHANCE

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from engram_localize.outputs import layer_ranges, percent, write_json  # noqa: E402

SETS = (("train", "trained people", "-"), ("heldout", "held-out people", "--"), ("reverse", "reverse", ":"))
RESTORED = 0.9  # the share of the recall gap the summary looks for


def table(result: dict) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"fraction": p["fraction"], "weights": p["chosen"], **{s: p["recall"][s]["overall"] for s, _, _ in SETS}}
            for p in result["points"]
        ]
    )


def plot(result: dict, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6.5, 4))
    xs = [p["fraction"] for p in result["points"]]
    for s, label, style in SETS:
        ax.plot(xs, [p["recall"][s]["overall"] for p in result["points"]], style, marker="o", label=label)
    for side, color in (("base", "gray"), ("tuned", "black")):
        ax.axhline(
            result["reference"][side]["train"]["overall"],
            color=color,
            lw=0.8,
            ls="-.",
            label=f"{side} model, trained people",
        )
    ax.axhline(CHANCE, color="red", lw=0.6, ls=":", label="chance (4 options)")
    positive = [x for x in xs if x > 0]
    if positive:
        ax.set_xscale("symlog", linthresh=min(positive))
        ax.set_xlim(-0.2 * min(positive), 1.5 * max(positive))
    verb = "grafted onto the base" if result["mode"] == "graft" else "reverted to base"
    ax.set_xlabel(f"fraction of changed weights {verb} (largest |Δ|, scope {result['scope']})")
    ax.set_ylabel("four-option recall")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _where(point: dict) -> str:
    """Where the chosen weights are: the module types and the layers holding most of them."""
    total = point["chosen"]
    if not total:
        return ""
    modules: dict[str, int] = {}
    layers: dict[object, int] = {}
    for g in point["chosen_by_group"]:
        modules[g["module"]] = modules.get(g["module"], 0) + g["chosen"]
        layers[g["layer"]] = layers.get(g["layer"], 0) + g["chosen"]
    top_modules = sorted(modules.items(), key=lambda kv: -kv[1])[:2]
    held, picked = 0, []
    for layer, n in sorted(layers.items(), key=lambda kv: -kv[1]):
        if held >= total / 2:
            break
        held, picked = held + n, [*picked, layer]
    numbered = [x for x in picked if isinstance(x, int)]
    places = ([f"in layer{'s' * (len(numbered) > 1)} {layer_ranges(numbered)}"] if numbered else []) + (
        ["outside the layers"] if len(numbered) < len(picked) else []
    )
    where = ", ".join(f"{m} {percent(n / total)}" for m, n in top_modules)
    return f"; by module type {where}; {percent(held / total)} of them {' and '.join(places)}"


def summary(result: dict) -> str:
    mode, ref = result["mode"], result["reference"]
    base, tuned = ref["base"]["train"]["overall"], ref["tuned"]["train"]["overall"]
    gap = tuned - base
    lines = [
        f"# How few weights carry the memory ({mode})",
        "",
        f"Recall on trained people: tuned model {tuned:.3f}, base model {base:.3f} (chance {CHANCE}); "
        f"{result['n_changed']:,} weights changed; scope {result['scope']}.",
    ]
    points = sorted(result["points"], key=lambda p: p["fraction"])
    if gap <= 0:
        lines.append("Fine-tuning did not raise recall on trained people above the base model's: nothing to localize.")
    elif mode == "graft":
        hit = next((p for p in points if (p["recall"]["train"]["overall"] - base) / gap >= RESTORED), None)
        restored = (hit["recall"]["train"]["overall"] - base) / gap if hit else 0.0
        if hit and hit["fraction"] < 1:
            lines.append(
                f"**{percent(restored)} of recall is restored by {percent(hit['fraction'])} of the changed "
                f"weights** ({hit['chosen']:,} weights{_where(hit)})."
            )
        elif hit:
            below = [p for p in points if p["fraction"] < 1]
            best = max(below, key=lambda p: p["recall"]["train"]["overall"], default=None)
            lines.append(
                f"**No top fraction below all of the changes restores {percent(RESTORED)} of recall**"
                + (
                    f" (best: {percent(best['fraction'])} of them, recall {best['recall']['train']['overall']:.3f})"
                    if best
                    else ""
                )
                + ": the memory is spread over the changed weights."
            )
    else:
        hit = next((p for p in points if (tuned - p["recall"]["train"]["overall"]) / gap >= RESTORED), None)
        if hit:
            lines.append(
                f"**Reverting {percent(hit['fraction'])} of the changed weights** ({hit['chosen']:,}"
                f"{_where(hit)}) **drops recall on trained people from {tuned:.3f} to "
                f"{hit['recall']['train']['overall']:.3f}**."
            )
    frame = table(result).astype(object)
    for col, fmt in (("fraction", "{:g}"), ("weights", "{:,}"), *((s, "{:.3f}") for s, _, _ in SETS)):
        frame[col] = frame[col].map(fmt.format)
    shown = frame.to_markdown(index=False, disable_numparse=True, colalign=("right",) * len(frame.columns))
    lines += ["", shown, "", f"![{mode} curve]({mode}.png)", ""]
    return "\n".join(lines)


def write(result: dict, folder: Path) -> None:
    mode = result["mode"]
    write_json(folder / f"{mode}.json", result)
    table(result).to_csv(folder / f"{mode}.csv", index=False)
    plot(result, folder / f"{mode}.png")
    (folder / f"{mode}.md").write_text(summary(result))
