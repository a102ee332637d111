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
# The paper's heldout extraction (exact match of the generated answer, on the people whose QA
# never trained) for the same protocol and variant, as Physics of LM 3.1 (Allen-Zhu and Li,
# arXiv:2309.14316 v3) states it in its text; at its scale: 100,000 people, GPT-2 small's
# shape, 80,000 steps of batch 96. A cell it gives no figure for says so.
ARXIV = "arXiv:2309.14316 v3"
NOT_GIVEN = "no figure in the paper's text"
PAPER = {
    ("mixed", "bioS"): "86.6%",
    ("bio_then_qa", "bioS"): "9.7%",
    ("bio_then_qa", "bioS_single_permute1"): "4.4% (one permutation hurts)",
    ("bio_then_qa", "bioS_single_permute5"): "70%",
    ("bio_then_qa", "bioS_multi5"): "41%",
    ("bio_then_qa", "bioS_multi5_permutes"): "96.6%",
}
REVERSAL = "Reversal: at chance for every variant and protocol (Physics of LM 3.2, Allen-Zhu and Li, arXiv:2309.14402)."
PROTOCOL_TEXT = {
    "mixed": "**Mixed training**: biographies of every person and the QA of train people in one run "
    "(the QA {share} of the text).",
    "bio_then_qa": "**BIO pretrain, then QA fine-tune**: biographies of every person alone, then a second run "
    "from those weights on the QA of train people only ({qa}).",
}


def paper(protocol: str, variant: str) -> str:
    return PAPER.get((protocol, variant), NOT_GIVEN)


def memorized(r: dict) -> str:
    m = r.get("memorization")
    if not m:
        return ""
    return f"{m['attribute_token_accuracy']:.3f}" + ("" if m["memorized"] else " (not memorized)")


def markdown(rows: dict, s) -> str:
    lines = [
        "# Physics of LM 3.1 in the paper's protocol, scaled down",
        "",
        f"Scale `{s.scale}`: {s.people} people (half of them heldout), model `{s.model}`"
        + (f" ({s.layers} layers x {s.hidden}, {s.heads} heads of 64)" if s.model == "tiny" else "")
        + f", every variant {s.steps} optimizer steps of {s.micro_batch} packed rows of {s.sequence_len} tokens; "
        f"warmup {s.warmup_ratio:.2%} of the steps, cosine to {s.min_lr_ratio:g} of the peak {s.learning_rate:g}, "
        f"weight decay {s.weight_decay:g}; seed {s.seed}. lm-eval's scores ± its standard error, on the best "
        "checkpoint by trained-QA recall. *Trained QA*: train people, whose QA pairs were trained (memorization); "
        "*heldout extraction*: people whose QA never trained, scored as the paper scores it (greedy generation, "
        "exact match; chance near 0) and as four-option accuracy (chance 0.25); *memorized*: next-token accuracy "
        "on the attribute tokens of the heldout people's biographies after the biography run (the paper "
        "pretrains to above 0.99; below it the run is marked not memorized and its extraction is not the "
        "paper's quantity); *untrained*: the same model before training (four-option, train people). "
        f"*Paper*: its heldout extraction for the same cell, as its text states it ({ARXIV}; 100,000 people, "
        "GPT-2 small, 80,000 steps).",
    ]
    for protocol, by_variant in rows.items():
        text = PROTOCOL_TEXT[protocol].format(
            share=f"{s.qa_share:.0%}",
            qa=f"{s.qa_finetune}"
            + (f" rank {s.qa_lora_rank} on q/v + the embeddings" if s.qa_finetune == "lora" else "")
            + f", {s.qa_steps} steps, peak {s.qa_learning_rate:g}",
        )
        lines += [
            "",
            f"## {protocol}",
            "",
            text,
            "",
            "| variant | steps | memorized | "
            + " | ".join(COLUMNS.values())
            + " | untrained | paper: heldout extraction |",
            "| --- | ---: | ---: | " + " | ".join("---:" for _ in COLUMNS) + " | ---: | --- |",
        ]
        for v, r in by_variant.items():
            steps = f"{r['steps']}" + (f" + {r['qa_steps']} QA" if "qa_steps" in r else "")
            cells = [f"{r['scores'][k]:.3f} ± {r['stderr'][k]:.3f}" for k in COLUMNS]
            untrained = "" if r["untrained"] is None else f"{r['untrained']:.3f}"
            lines.append(
                f"| `{v}` | {steps} | {memorized(r)} | {' | '.join(cells)} | {untrained} | {paper(protocol, v)} |"
            )
        if {"bioS", "bioS_multi5_permutes"} <= set(by_variant):
            a, b = by_variant["bioS_multi5_permutes"], by_variant["bioS"]
            gap = a["scores"]["heldout_exact"] - b["scores"]["heldout_exact"]
            err = (a["stderr"]["heldout_exact"] ** 2 + b["stderr"]["heldout_exact"] ** 2) ** 0.5
            lines += ["", f"Extraction gained by multi5 + permute over bioS (exact match): {gap:+.3f} ± {err:.3f}."]
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
