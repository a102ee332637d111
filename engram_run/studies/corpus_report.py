"""``make corpus-study``'s files: the scores it reads from lm-eval, the tables and the plot."""

from __future__ import annotations

import json
from pathlib import Path

from engram_data.atomic import atomic_output
from engram_data.contract import CHANCE, MANIFEST

GENERATOR = "llm-engram/corpus-study"
# score -> (lm-eval task, metric), on the documents' people's true facts
SCORES = {
    "forward": ("bios_qa", "acc"),
    "forward_exact": ("bios_qa_gen", "exact_match"),
    "reverse": ("bios_qa_reverse", "acc"),
    "reverse_exact": ("bios_qa_reverse_gen", "exact_match"),
}
COLUMNS = {
    "forward": "forward (four-option)",
    "forward_exact": "forward (exact match)",
    "reverse": "reverse (four-option)",
    "reverse_exact": "reverse (exact match)",
}
WHAT = {
    "chunks": "the documents' text only",
    "qa1": "+ pairs at one temperature",
    "qa9": "+ pairs at nine temperatures",
    "qa9-grounded": "+ pairs at nine temperatures, grounded ones only",
    "qa9+reverse": "+ pairs at nine, + reverse pairs",
}


def _share(x) -> str:
    return "" if x is None else f"{x:.2f}"


def markdown(rows: dict, per_t: dict, s) -> str:
    if s.generator == "taught":
        generator = f"a 128x4 LFM2 taught here on {s.teach_people} other people, {s.generator_steps} steps"
    else:
        generator = s.generator_model or s.generator
    if s.model == "tiny":
        model = f"one random {s.hidden}-wide {s.layers}-layer Llama"
        length = (
            f"{s.steps} steps of {s.micro_batch} packed rows of 256 tokens each (the same compute; "
            "a smaller data set is repeated more)"
        )
    else:
        model = f"the pretrained base of the `{s.model}` recipe, fine-tuned (its un-tuned self is the floor),"
        length = (
            f"{s.epochs} passes over each arm's own texts, {s.micro_batch} a step, in bf16 autocast over fp32 "
            "weights (each arm learns what it trains on; a larger data set takes more steps)"
        )
    lines = [
        "# Does the documents recipe work?",
        "",
        f"{s.people} people's biographies as documents (half text, half PDF), expanded by the generator "
        f"({generator}) through `transformers serve`, trained into {model} per arm at learning rate "
        f"{s.learning_rate:g}, {length}. Scored by lm-eval on the people's "
        "**true** facts (their `bios_qa` questions, not the generator's pairs), ± lm-eval's standard error. "
        "*Forward*: a field's value from the name; *reverse*: the name from birth date and city; four options "
        "(chance 0.25) or generated (exact match). *Pairs*: the generator's pairs trained; *true*: their share "
        "that is right; *coverage*: the share of the people's facts (forward: 6 per person; reverse: the "
        "scored question) that some true trained pair states.",
        "",
        "| arm | trains on | " + " | ".join(COLUMNS.values()) + " | pairs | true | coverage fwd / rev |",
        "| --- | --- | " + " | ".join("---:" for _ in COLUMNS) + " | ---: | ---: | ---: |",
    ]
    for arm, r in rows.items():
        cells = [f"{r['scores'][k]:.3f} ± {r['stderr'][k]:.3f}" for k in COLUMNS]
        extra = (
            ["", "", ""]
            if arm == "untrained"
            else [
                str(r["pairs"]),
                _share(r["pairs_true"]),
                f"{r['coverage_forward']:.2f} / {r['coverage_reverse']:.2f}",
            ]
        )
        lines.append(f"| `{arm}` | {WHAT.get(arm, 'nothing')} | {' | '.join(cells)} | {' | '.join(extra)} |")
    n = rows["untrained"]["questions"]
    lines += ["", "Questions per cell: " + ", ".join(f"{COLUMNS[k]} {v}" for k, v in n.items()) + "."]
    if per_t:
        lines += [
            "",
            "## The generator's pairs per temperature",
            "",
            f"Everything the generator wrote in the nine-temperature run with reverse pairs ({s.people} "
            "documents x 2 styles per temperature), before duplicates and ungrounded pairs are removed: "
            "*malformed*, the share of replies the parser could not read (by kind: empty, no JSON, "
            "truncated, wrong keys); then the pairs parsed: *grounded* (the answer is in the document), "
            "*paraphrased* (the question is worded as none of the data's), and judged against the truth: "
            "*true* (a question of the data's with the right answer, or in other words with an answer that "
            "states the person's own value), *wrong* (the wrong answer: another person's value), *other* "
            "(neither: a garbled or invented value).",
            "",
            "| temperature | requests | malformed | (empty / no JSON / truncated / wrong keys) | pairs | grounded "
            "| paraphrased | true | wrong | other |",
            "| ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for t, c in per_t.items():
            k = max(c["pairs"], 1)
            kinds = c.get("malformed_kinds") or {}
            kinds = " / ".join(str(kinds.get(x, 0)) for x in ("empty", "no_json", "truncated", "wrong_keys"))
            lines.append(
                f"| {t} | {c['requests']} | {c['malformed'] / max(c['requests'], 1):.2f} | {kinds} | {c['pairs']} | "
                f"{c.get('grounded', 0) / k:.2f} | {c.get('paraphrased', 0) / k:.2f} | "
                f"{c['true'] / k:.2f} | {c['wrong'] / k:.2f} | {c['other'] / k:.2f} |"
            )
    lines += ["", "![corpus-study](corpus-study.png)"]
    return "\n".join(lines) + "\n"


def plot(rows: dict, per_t: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2 if per_t else 1, figsize=(12 if per_t else 7.5, 4.2), squeeze=False)
    ax = axes[0, 0]
    width = 0.8 / len(COLUMNS)
    for i, key in enumerate(COLUMNS):
        xs = [j + (i - (len(COLUMNS) - 1) / 2) * width for j in range(len(rows))]
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
    ax.set_ylabel("recall of the true facts")
    ax.legend(fontsize=7, loc="upper left")
    if per_t:
        ax = axes[0, 1]
        ts = [float(t) for t in per_t]
        for key, color in (("true", "C2"), ("wrong", "C3"), ("other", "C7")):
            ax.plot(
                ts,
                [c[key] / max(c["pairs"], 1) for c in per_t.values()],
                "o-",
                color=color,
                label=f"{key} (share of pairs)",
            )
        ax.plot(
            ts,
            [c["malformed"] / max(c["requests"], 1) for c in per_t.values()],
            "s--",
            color="C1",
            label="malformed (share of replies)",
        )
        ax.set_xlabel("generator temperature")
        ax.set_ylabel("share")
        ax.set_ylim(0, 1)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_results(rows: dict, per_t: dict, s) -> Path:
    with atomic_output(s.results, GENERATOR, overwrite=True) as tmp:
        (tmp / "corpus-study.json").write_text(json.dumps({"arms": rows, "generator": per_t}, indent=2) + "\n")
        (tmp / "corpus-study.md").write_text(markdown(rows, per_t, s))
        plot(rows, per_t, tmp / "corpus-study.png")
        (tmp / MANIFEST).write_text(json.dumps({"generator": GENERATOR, "settings": str(s)}, indent=2) + "\n")
    return s.results / "corpus-study.md"
