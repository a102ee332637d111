"""``make reversal``'s files: the scores it reads from lm-eval, the table and the plot."""

from __future__ import annotations

import json
from pathlib import Path

from engram_data.atomic import atomic_output
from engram_data.contract import CHANCE, MANIFEST

GENERATOR = "llm-engram/reversal"
# score -> (lm-eval task, metric)
SCORES = {
    "reverse_heldout": ("bios_qa_reverse_heldout", "acc"),
    "reverse_gen_heldout": ("bios_qa_reverse_gen_heldout", "exact_match"),
    "reverse_train": ("bios_qa_reverse_train", "acc"),
    "reverse_gen_train": ("bios_qa_reverse_gen", "exact_match"),
    "heldout_exact": ("bios_qa_gen_heldout", "exact_match"),
    "trained_qa": ("bios_qa", "acc"),
}
COLUMNS = {
    "reverse_heldout": "reverse, heldout (four-option)",
    "reverse_gen_heldout": "reverse, heldout (exact match)",
    "reverse_train": "reverse, train (four-option)",
    "reverse_gen_train": "reverse, train (exact match)",
    "heldout_exact": "forward extraction, heldout (exact match)",
    "trained_qa": "forward trained QA (four-option)",
}


def markdown(rows: dict, s) -> str:
    arms = {k: v for k, v in rows.items() if k != "untrained"}
    lines = [
        "# What beats the reversal curse",
        "",
        f"{s.people} people (half heldout), a random {s.hidden}-wide {s.layers}-layer Llama, every arm "
        f"{s.multi5_epochs} epochs of `bioS_multi5_permutes` + the QA of train people, plus its remedy "
        "(*extra text*: the remedy's characters as a share of the biographies'). lm-eval's scores ± its "
        'standard error. *Reverse*: "Who was born on {birth date} in {birth city}?", the name among four '
        "(chance 0.25) or generated (exact match). *Heldout* people's reverse questions never trained in "
        "any arm; *train* people's did in the `reverse_qa` arms.",
        "",
        "| arm | extra text | " + " | ".join(COLUMNS.values()) + " |",
        "| --- | ---: | " + " | ".join("---:" for _ in COLUMNS) + " |",
    ]
    for arm, r in {"untrained": rows["untrained"], **arms}.items():
        cells = [f"{r['scores'][k]:.3f} ± {r['stderr'][k]:.3f}" for k in COLUMNS]
        extra = "" if arm == "untrained" else f"{r['extra_text_share']:.2f}"
        lines.append(f"| `{arm}` | {extra} | {' | '.join(cells)} |")
    n = rows["untrained"]["questions"]
    lines += [
        "",
        "Questions per cell: " + ", ".join(f"{COLUMNS[k]} {v}" for k, v in n.items()) + ".",
        "",
        "![reversal](reversal.png)",
    ]
    return "\n".join(lines) + "\n"


def plot(rows: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = ("reverse_heldout", "reverse_gen_heldout", "reverse_train", "heldout_exact")
    fig, ax = plt.subplots(figsize=(8, 4.2))
    width = 0.8 / len(shown)
    for i, key in enumerate(shown):
        xs = [j + (i - (len(shown) - 1) / 2) * width for j in range(len(rows))]
        ax.bar(
            xs,
            [r["scores"][key] for r in rows.values()],
            width,
            yerr=[r["stderr"][key] for r in rows.values()],
            capsize=2,
            label=COLUMNS[key],
        )
    ax.axhline(CHANCE, color="grey", linestyle="--", linewidth=1, label=f"four-option chance ({CHANCE})")
    ax.set_xticks(range(len(rows)), [a.replace("+", "+\n") for a in rows], fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("score")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_results(rows: dict, s) -> Path:
    with atomic_output(s.results, GENERATOR, overwrite=True) as tmp:
        (tmp / "reversal.json").write_text(json.dumps(rows, indent=2) + "\n")
        (tmp / "reversal.md").write_text(markdown(rows, s))
        plot(rows, tmp / "reversal.png")
        (tmp / MANIFEST).write_text(json.dumps({"generator": GENERATOR, "settings": str(s)}, indent=2) + "\n")
    return s.results / "reversal.md"
