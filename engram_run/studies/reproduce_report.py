"""``make reproduce``'s files: the scores it reads from lm-eval, the paper's figure for each
cell, the Markdown tables and the plot."""

from __future__ import annotations

import json
from pathlib import Path

from engram_data.atomic import atomic_output
from engram_data.contract import CHANCE, MANIFEST

GENERATOR = "llm-engram/reproduce"
# score -> (lm-eval task, metric); "trained QA": questions whose QA pairs were trained.
SCORES = {
    "trained_qa": ("bios_qa", "acc"),
    "trained_qa_exact": ("bios_qa_gen", "exact_match"),
    "heldout_exact": ("bios_qa_gen_heldout", "exact_match"),
    "heldout": ("bios_qa_heldout", "acc"),
    "reverse": ("bios_qa_reverse", "acc"),
}
COLUMNS = {
    "trained_qa": "trained QA (four-option)",
    "trained_qa_exact": "trained QA (exact match)",
    "heldout_exact": "heldout extraction (exact match)",
    "heldout": "heldout (four-option)",
    "reverse": "reverse (four-option)",
}
# The paper's heldout extraction (exact match of generated answers) for the same protocol and
# variant, as Physics of LM 3.1 (Allen-Zhu and Li, arXiv:2309.14316) states it in its text.
# Cells marked "not transcribed" are in the paper's ablation figures, not copied here.
NOT_GIVEN = "in the paper's ablation figures; not transcribed here"
PAPER = {
    ("bio_then_qa", "bioS"): "near 10% (BIO pretrain + QA finetune, one biography per person)",
    ("bio_then_qa", "bioS_multi5_permutes"): "above 90% (multi5 + permute)",
    ("bio_then_qa", "bioS_multi5_permutes_fullname"): "above 90% (multi5 + permute + fullname)",
    ("mixed", "bioS"): "high even with one biography per person (mixed training); value not transcribed here",
}
REVERSAL = "Reversal: at chance for every variant and protocol (Physics of LM 3.2, Allen-Zhu and Li, arXiv:2309.14402)."
PROTOCOL_TEXT = {
    "mixed": "**Mixed training**: biographies of every person and the QA of train people in one run.",
    "bio_then_qa": "**BIO pretrain, then QA fine-tune**: biographies of every person alone, then a second run "
    "from those weights on the QA of train people only.",
}


def paper(protocol: str, variant: str) -> str:
    return PAPER.get((protocol, variant), NOT_GIVEN)


def markdown(rows: dict, s) -> str:
    lines = [
        "# Physics of LM 3.1 at miniature scale",
        "",
        f"{s.people} people (half of them heldout), model `{s.model}`, every variant on the same budget of "
        "biography passes. lm-eval's scores ± its standard error. *Trained QA*: train people, whose QA pairs "
        "were trained (memorization); *heldout extraction*: people whose QA never trained, scored as the paper "
        "scores it (greedy generation, exact match; chance near 0) and as four-option accuracy (chance 0.25, "
        "partial knowledge counts); *untrained*: the same model before training (four-option, train people).",
    ]
    for protocol, by_variant in rows.items():
        lines += [
            "",
            f"## {protocol}",
            "",
            PROTOCOL_TEXT[protocol],
            "",
            "| variant | epochs | " + " | ".join(COLUMNS.values()) + " | untrained | paper: heldout extraction |",
            "| --- | ---: | " + " | ".join("---:" for _ in COLUMNS) + " | ---: | --- |",
        ]
        for v, r in by_variant.items():
            epochs = f"{r['epochs']}" + (f" + {r['qa_epochs']} QA" if "qa_epochs" in r else "")
            cells = [f"{r['scores'][k]:.3f} ± {r['stderr'][k]:.3f}" for k in COLUMNS]
            untrained = "" if r["untrained"] is None else f"{r['untrained']:.3f}"
            lines.append(f"| `{v}` | {epochs} | {' | '.join(cells)} | {untrained} | {paper(protocol, v)} |")
        if {"bioS", "bioS_multi5_permutes"} <= set(by_variant):
            gap = (
                by_variant["bioS_multi5_permutes"]["scores"]["heldout_exact"]
                - by_variant["bioS"]["scores"]["heldout_exact"]
            )
            lines += ["", f"Extraction gained by multi5 + permutation (exact match): {gap:+.3f}."]
    n = next(iter(next(iter(rows.values())).values()))["questions"]
    lines += [
        "",
        "Questions per cell: " + ", ".join(f"{COLUMNS[k]} {v}" for k, v in n.items()) + ".",
        "",
        REVERSAL,
        "",
        "![reproduce](reproduce.png)",
    ]
    return "\n".join(lines) + "\n"


def plot(rows: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = ("heldout_exact", "heldout", "trained_qa", "reverse")
    fig, axes = plt.subplots(1, len(rows), figsize=(6.5 * len(rows), 4.2), squeeze=False)
    for ax, (protocol, by_variant) in zip(axes[0], rows.items()):
        width = 0.8 / len(shown)
        for i, key in enumerate(shown):
            xs = [j + (i - (len(shown) - 1) / 2) * width for j in range(len(by_variant))]
            ax.bar(
                xs,
                [r["scores"][key] for r in by_variant.values()],
                width,
                yerr=[r["stderr"][key] for r in by_variant.values()],
                capsize=2,
                label=COLUMNS[key],
            )
        ax.axhline(CHANCE, color="grey", linestyle="--", linewidth=1, label=f"four-option chance ({CHANCE})")
        ax.set_xticks(range(len(by_variant)), [v.replace("bioS_", "") for v in by_variant], rotation=20, fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_title(protocol)
        ax.set_ylabel("score")
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_results(rows: dict, s) -> Path:
    with atomic_output(s.results, GENERATOR, overwrite=True) as tmp:
        (tmp / "reproduce.json").write_text(json.dumps(rows, indent=2) + "\n")
        (tmp / "reproduce.md").write_text(markdown(rows, s))
        plot(rows, tmp / "reproduce.png")
        (tmp / MANIFEST).write_text(json.dumps({"generator": GENERATOR, "settings": str(s)}, indent=2) + "\n")
    return s.results / "reproduce.md"
