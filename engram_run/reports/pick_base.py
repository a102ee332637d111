"""``make pick-base``: which base model to fine-tune on your documents.

Each candidate (a recipe name, whose ``base_model`` it scores, or a local model folder) is
scored un-tuned by lm-eval on one seeded random sample of the documents' trained questions
(``corpus_qa``, four-option; the same questions for every candidate), then ranked. Beside each:
lm-eval's standard error, and the two-sided p-value of its gap to the best (the two scores'
standard errors combined); candidates the sample cannot tell from the best are marked so.

    OUT/pick-base.json, .md, .csv   rank, candidate, model, accuracy, stderr, gap, p, questions
    OUT/pick-base.png               accuracy ± 1.96 stderr per candidate, chance line
    OUT/<candidate>/                lm-eval's own JSON
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pandas as pd

from engram_data.atomic import atomic_output
from engram_data.contract import CHANCE, MANIFEST, corpus_qa_name, qa_file, read_jsonl, read_manifest
from engram_eval.lm_eval_args import model_args
from engram_run.runs import evaluation
from engram_run.runs.recipes import RunError, load_recipe, recipe_path

TASK = "corpus_qa"
GENERATOR = "llm-engram/pick-base"


def base_of(candidate: str) -> str:
    """A local model folder as it is, else the base model of the recipe of that name."""
    if Path(candidate).is_dir():
        return str(candidate)
    return str(load_recipe(recipe_path(candidate))["base_model"])


def sample_indices(data_dir: Path, size: int, seed: int = 0) -> list[int]:
    """``size`` of corpus_qa's questions (the trained temperatures), seeded, in file order."""
    n = sum(r["split"] == "train" for r in read_jsonl(qa_file(data_dir, corpus_qa_name(data_dir))))
    if n == 0:
        raise RunError(
            f"{data_dir} has no trained document questions; run make corpus-train or generate_data.py corpus"
        )
    return sorted(random.Random(f"{seed}:pick-base").sample(range(n), min(size, n)))


def p_value(a: float, se_a: float, b: float, se_b: float) -> float:
    """Two-sided p of a gap between two independent estimates (normal approximation)."""
    se = math.hypot(se_a, se_b)
    return 1.0 if se == 0 else math.erfc(abs(a - b) / se / math.sqrt(2))


def pick_base(candidates: list[str], data_dir: Path, out: Path, sample: int = 200, seed: int = 0) -> Path:
    """Score, rank and write every candidate into ``out`` (all of it, or nothing on a failure)."""
    if not candidates:
        raise RunError('no candidates; pass MODELS="llama1b gpt2" (recipes) or local model folders')
    read_manifest(data_dir)
    bases = {c: base_of(c) for c in candidates}  # an unknown recipe fails before any evaluation
    indices = sample_indices(data_dir, sample, seed)
    with atomic_output(out, GENERATOR, overwrite=True) as tmp:
        rows = []
        for c, base in bases.items():
            label = Path(c).name if Path(c).is_dir() else c
            print(f"[pick-base] {label}: lm-eval {TASK} on {len(indices)} questions ({base})", flush=True)
            ok = evaluation.evaluate(
                model_args(base, base),
                data_dir,
                tmp / label,
                (TASK,),
                log_samples=False,
                extra=["--samples", json.dumps({TASK: indices})],
            )
            if not ok:
                last = (tmp / label / "eval.log").read_text(errors="replace").strip().splitlines() or ["no output"]
                raise RunError(f"evaluating {label} ({base}) failed: {last[-1][:300]}")
            res = evaluation.read_results(evaluation.latest_results(tmp / label))["results"][TASK]
            rows.append(
                {
                    "candidate": label,
                    "model": base,
                    "acc": res["acc,none"],
                    "stderr": res["acc_stderr,none"],
                    "questions": len(indices),
                }
            )
        verdict = write(rank(rows), tmp, data_dir, seed)
    print(f"[pick-base] {verdict}; {out / 'pick-base.md'}", flush=True)
    return out / "pick-base.md"


def rank(rows: list[dict]) -> list[dict]:
    rows = sorted(rows, key=lambda r: -r["acc"])
    best = rows[0]
    for i, r in enumerate(rows, 1):
        r["rank"], r["gap"] = i, best["acc"] - r["acc"]
        r["p_vs_best"] = 1.0 if r is best else p_value(best["acc"], best["stderr"], r["acc"], r["stderr"])
        r["tied_with_best"] = r["p_vs_best"] >= 0.05
    return rows


def write(rows: list[dict], tmp: Path, data_dir: Path, seed: int) -> str:
    """The tables, plot and manifest into ``tmp``; the verdict line."""
    frame = pd.DataFrame(
        rows, columns=["rank", "candidate", "model", "acc", "stderr", "gap", "p_vs_best", "tied_with_best", "questions"]
    ).set_index("rank")
    tied = [r["candidate"] for r in rows[1:] if r["tied_with_best"]]
    verdict = f"{rows[0]['candidate']} scores best" + (
        f"; the sample cannot tell it from {', '.join(tied)} (p >= 0.05): take the cheapest of them, or a larger SAMPLE"
        if tied
        else ""
    )
    (tmp / "pick-base.json").write_text(json.dumps(rows, indent=2) + "\n")
    frame.to_csv(tmp / "pick-base.csv")
    plot(rows, tmp / "pick-base.png")
    (tmp / "pick-base.md").write_text(
        "\n".join(
            [
                "# Which base to fine-tune on these documents",
                "",
                f"Un-tuned four-option accuracy on {rows[0]['questions']} of the trained questions of `{data_dir}` "
                f"(`corpus_qa`, one sample, seed {seed}, the same for every candidate); chance is {CHANCE}. "
                "stderr is lm-eval's; p is the two-sided p-value of the gap to the best.",
                "",
                frame.to_markdown(floatfmt=".3f"),
                "",
                verdict + ".",
                "",
                "![accuracy per candidate](pick-base.png)",
                "",
            ]
        )
    )
    (tmp / MANIFEST).write_text(json.dumps({"generator": GENERATOR, "data_dir": str(data_dir)}, indent=2) + "\n")
    return verdict


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(5, 1.1 * len(rows) + 2), 3.5))
    ax.bar(
        [r["candidate"] for r in rows],
        [r["acc"] for r in rows],
        yerr=[1.96 * r["stderr"] for r in rows],
        capsize=3,
        color=["C2" if r["rank"] == 1 else "C0" if r["tied_with_best"] else "C7" for r in rows],
    )
    ax.axhline(CHANCE, color="grey", linestyle="--", linewidth=1, label=f"chance ({CHANCE})")
    ax.set_ylim(0, 1)
    ax.set_ylabel("un-tuned corpus_qa accuracy\n(± 1.96 stderr)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
