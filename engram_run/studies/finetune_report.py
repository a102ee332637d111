"""``make finetune-study``'s files: the scores it reads from lm-eval, the tables and the plot."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict
from pathlib import Path

from engram_data.atomic import atomic_output
from engram_data.contract import CHANCE, MANIFEST

GENERATOR = "llm-engram/finetune-study"
# score -> (lm-eval task, metric)
SCORES = {
    "trained_qa": ("bios_qa", "acc"),
    "heldout": ("bios_qa_heldout", "acc"),
    "heldout_exact": ("bios_qa_gen_heldout", "exact_match"),
    "reverse": ("bios_qa_reverse", "acc"),
}
COLUMNS = {
    "trained_qa": "trained QA (four-option)",
    "heldout": "heldout extraction (four-option)",
    "heldout_exact": "heldout extraction (exact match)",
    "reverse": "reverse (four-option)",
}


def cell(row: dict, key: str) -> str:
    return f"{row['scores'][key]:.3f} ± {row['stderr'][key]:.3f}"


def spread(rows: dict) -> dict[str, dict]:
    """Per arm run on several seeds: each score's mean and (max - min) over them."""
    by_arm: dict[str, list[dict]] = {}
    for r in rows.values():
        by_arm.setdefault(r["arm"], []).append(r)
    out = {}
    for arm, runs in by_arm.items():
        if len(runs) < 2:
            continue
        out[arm] = {"seeds": [r["seed"] for r in runs]}
        for key in (*SCORES, "kl"):
            values = [r["forgetting"]["kl"] if key == "kl" else r["scores"][key] for r in runs]
            out[arm][key] = {"mean": statistics.fmean(values), "range": max(values) - min(values)}
    return out


def markdown(rows: dict, untrained: dict, s, partial: bool) -> str:
    base = untrained["forgetting"]
    lines = [
        "# Fine-tuning a pretrained model on bioS: batch, LoRA and what it forgot",
        "",
        *(["**Partial: the study is still running; the arms done so far.**", ""] if partial else []),
        f"`{s.model}`, {s.people} people (half with trained QA), `{s.variant}` biographies + the QA of train "
        f"people as plain text, {s.epochs} epochs for every arm, constant learning rate (full: {s.learning_rate:g}; "
        f"LoRA: {s.lora_learning_rate:g}), one sample per row (no packing), bf16 autocast with fp32 weights unless "
        "the arm says fp32. lm-eval's scores ± its standard error; *untrained* is the un-tuned model on the same "
        f"questions (the floor; four-option chance {CHANCE}). *Text loss* and *KL*: on a fixed English text of "
        f"{base['tokens']} tokens (`engram_eval/data/general_english.txt`), the un-tuned model's loss "
        f"{base['loss_base']:.3f}; KL(un-tuned ‖ tuned) in nats per token.",
        "",
        "| arm | seed | batch | lr | steps | train s | " + " | ".join(COLUMNS.values()) + " | text loss | KL |",
        "| --- | ---: | ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in COLUMNS) + " | ---: | ---: |",
        f"| untrained | | | | | | {' | '.join(cell(untrained, k) for k in COLUMNS)} | {base['loss_base']:.3f} | 0 |",
    ]
    for r in rows.values():
        f = r["forgetting"]
        lines.append(
            f"| `{r['arm']}` | {r['seed']} | {r['batch']} | {r['learning_rate']:g} | {r['steps']} | "
            f"{r['train_seconds']:.0f} | {' | '.join(cell(r, k) for k in COLUMNS)} | {f['loss_tuned']:.3f} | "
            f"{f['kl']:.3f} |"
        )
    lines += [
        "",
        "## Trained-QA recall by epoch",
        "",
        "The plugin's four-option recall of every train person's questions at "
        "each epoch's end (epoch 0: before training).",
        "",
    ]
    for label, r in rows.items():
        curve = ", ".join(f"{e:g}: {a:.3f}" for e, a in r.get("recall_by_epoch", []))
        lines.append(f"- `{label}`: {curve}")
    seeds = spread(rows)
    if seeds:
        lines += [
            "",
            "## Over seeds",
            "",
            "Mean and range (max − min) over the seeds each arm ran on.",
            "",
            "| arm | seeds | " + " | ".join(COLUMNS.values()) + " | KL |",
            "| --- | --- | " + " | ".join("---:" for _ in COLUMNS) + " | ---: |",
        ]
        for arm, v in seeds.items():
            cells = [f"{v[k]['mean']:.3f} (range {v[k]['range']:.3f})" for k in (*COLUMNS, "kl")]
            lines.append(f"| `{arm}` | {', '.join(map(str, v['seeds']))} | {' | '.join(cells)} |")
    lines += [
        "",
        "## General prompts, un-tuned and tuned",
        "",
        "Greedy; chat prompts in the model's chat template.",
        "",
    ]
    for i, a in enumerate(base["answers"]):
        lines += [f"**{a['prompt']}**{' (chat)' if a['chat'] else ''}", "", f"- untrained: {a['base']!r}"]
        for label, r in rows.items():
            lines.append(f"- `{label}`: {r['forgetting']['answers'][i]['tuned']!r}")
        lines.append("")
    n = untrained["questions"]
    lines += ["Questions per cell: " + ", ".join(f"{COLUMNS[k]} {v}" for k, v in n.items()) + ".", ""]
    lines += ["![finetune](finetune.png)"]
    return "\n".join(lines) + "\n"


def plot(rows: dict, untrained: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = ["untrained", *rows]
    runs = [untrained, *rows.values()]
    fig, (ax, kx) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [3, 1]})
    width = 0.8 / len(COLUMNS)
    for i, key in enumerate(COLUMNS):
        xs = [j + (i - (len(COLUMNS) - 1) / 2) * width for j in range(len(runs))]
        ax.bar(
            xs,
            [r["scores"][key] for r in runs],
            width,
            yerr=[r["stderr"][key] for r in runs],
            capsize=2,
            label=COLUMNS[key],
        )
    ax.axhline(CHANCE, color="grey", linestyle="--", linewidth=1, label=f"four-option chance ({CHANCE})")
    ax.set_xticks(range(len(runs)), [x.replace("@", "\n") for x in labels], fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("score")
    ax.legend(fontsize=7, loc="upper right")
    kx.bar(range(len(rows)), [r["forgetting"]["kl"] for r in rows.values()], color="tab:red")
    kx.set_xticks(range(len(rows)), [x.replace("@", "\n") for x in rows], fontsize=7, rotation=90)
    kx.set_ylabel("KL(un-tuned ‖ tuned), nats/token")
    kx.set_title("forgetting", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_results(rows: dict, untrained: dict, s, partial: bool = False) -> Path:
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(s).items()}
    data = {"settings": settings, "partial": partial, "untrained": untrained, "rows": rows, "seeds": spread(rows)}
    with atomic_output(s.results, GENERATOR, overwrite=True) as tmp:
        (tmp / "finetune.json").write_text(json.dumps(data, indent=2) + "\n")
        (tmp / "finetune.md").write_text(markdown(rows, untrained, s, partial))
        if rows:
            plot(rows, untrained, tmp / "finetune.png")
        (tmp / MANIFEST).write_text(json.dumps({"generator": GENERATOR, "settings": settings}, indent=2) + "\n")
    return s.results / "finetune.md"
