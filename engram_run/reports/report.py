"""The report: one table of every run (Markdown, CSV, JSON) and PNG plots, from lm-eval's own
result files and the plugin's recall history.

    OUT/report.md, report.csv, report.json   per field, overall, heldout, reverse, gen, untrained
    OUT/accuracy.png                         accuracy per field and run, chance and each floor
    OUT/recall_over_training.png             the plugin's evaluations during training
    OUT/manifest.json                        marks the folder as a report (only a report is replaced)
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from engram_data.atomic import atomic_output, check_output_dir
from engram_data.contract import CHANCE, FIELDS, MANIFEST, DataError
from engram_data.run_files import RECALL_HISTORY
from engram_run.runs.evaluation import latest_results, read_results

COLUMNS = (*FIELDS, "overall", "heldout", "reverse", "gen", "corpus", "corpus_heldout", "corpus_gen", "untrained")
# Each column: (lm-eval task, metric); the stderr is lm-eval's <metric>_stderr.
SOURCES = {
    **{f: (f"bios_qa_{f}", "acc") for f in FIELDS},
    "overall": ("bios_qa", "acc"),
    "heldout": ("bios_qa_heldout", "acc"),
    "reverse": ("bios_qa_reverse", "acc"),
    "gen": ("bios_qa_gen", "exact_match"),
    "corpus": ("corpus_qa", "acc"),
    "corpus_heldout": ("corpus_qa_heldout", "acc"),
    "corpus_gen": ("corpus_qa_gen", "exact_match"),
}
GENERATOR = "llm-engram/report"


def _metric(task_results: dict, name: str) -> float | None:
    value = task_results.get(f"{name},none")
    return None if value is None or isinstance(value, str) else float(value)


def recall_history(outputs: Path, run: str) -> list[dict]:
    path = outputs / run / "model" / RECALL_HISTORY
    try:
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    except ValueError as exc:
        raise DataError(f"{path} is not JSON lines ({exc}); it was cut or edited: retrain, or move it away") from None


def untrained_recall(history: list[dict]) -> float | None:
    """Recall on train people before any update (the plugin scores step 0): the floor the
    trained number is to be read against, measured rather than assumed to be chance."""
    return next(
        (h["eval_engram_qa_acc_overall"] for h in history if h["step"] == 0 and "eval_engram_qa_acc_overall" in h), None
    )


def collect(results_dir: Path, outputs: Path | None = None) -> list[dict]:
    """One row per run with lm-eval results (``results/<run>/``, or the plugin's post-training
    run in ``outputs/<run>/model/lm_eval/``): per-field bios_qa accuracy, overall, heldout,
    reverse, gen, and the untrained floor where the plugin logged it."""
    rows = []
    found = {}  # run -> its newest lm-eval result file: results/<run>/, else the plugin's post-training run
    for root in (outputs, results_dir):  # results/<run>/ wins where both have one
        pattern = "*/model/lm_eval" if root is outputs else "*"
        for run_dir in sorted(root.glob(pattern)) if root is not None and root.is_dir() else []:
            name = run_dir.parts[len(root.parts)]
            path = latest_results(run_dir) if run_dir.is_dir() and not name.startswith(".") else None
            if path is not None:  # else not a run: a report, or a temp folder
                found[name] = path
    for name, path in sorted(found.items()):
        res = read_results(path)["results"]
        row: dict = {"run": name}
        for column, (task, metric) in SOURCES.items():
            row[column] = _metric(res.get(task, {}), metric)
            row[f"{column}_stderr"] = _metric(res.get(task, {}), f"{metric}_stderr")
        row["untrained"] = untrained_recall(recall_history(outputs, name)) if outputs else None
        row["results_file"] = str(path)
        stamp = path.stem.rsplit("_", 1)[-1]  # lm-eval's samples files carry their results file's time
        row["samples"] = sorted(str(p) for p in path.parent.glob(f"samples_bios_qa*_{stamp}.jsonl"))
        rows.append(row)
    return rows


def table(rows: list[dict]) -> pd.DataFrame:
    """The runs as a frame, with only the columns some run has."""
    frame = pd.DataFrame(rows, columns=["run", *COLUMNS]).set_index("run")
    return frame.dropna(axis=1, how="all")


def markdown_table(rows: list[dict]) -> str:
    return table(rows).to_markdown(floatfmt=".3f", missingval="") + "\n"


def _plot_accuracy(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # bios_qa's fields and overall, and the documents' questions, where some run has them
    labels = [c for c in (*FIELDS, "overall", "corpus", "corpus_heldout") if any(r.get(c) is not None for r in rows)]
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(FIELDS) + 2), 4))
    width = 0.8 / len(rows)
    for i, r in enumerate(rows):
        xs = [j + i * width for j in range(len(labels))]
        errors = [r.get(f"{f}_stderr") or 0 for f in labels]
        ax.bar(xs, [r.get(f) or 0 for f in labels], width, yerr=errors, capsize=2, label=r["run"])
        if r.get("untrained") is not None:
            ax.axhline(
                r["untrained"],
                color=f"C{i}",
                linestyle=":",
                linewidth=1,
                label=f"{r['run']}: untrained ({r['untrained']:.3f})",
            )
    ax.axhline(CHANCE, color="grey", linestyle="--", linewidth=1, label=f"chance ({CHANCE})")
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(labels))], labels, rotation=20)
    ax.set_ylim(0, 1)
    ax.set_ylabel("four-option accuracy\nerror bars: lm-eval's standard error")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_recall(histories: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (run, hist) in enumerate(histories.items()):
        floor = untrained_recall(hist)
        if floor is not None:
            ax.axhline(
                floor, color=f"C{i}", linestyle=":", linewidth=1, label=f"{run}: untrained, step 0 ({floor:.3f})"
            )
        for key, style in (
            ("eval_engram_qa_acc_overall", "-"),
            ("eval_engram_heldout_acc_overall", "--"),
            ("eval_engram_reverse_acc", ":"),
        ):
            pts = [(h["step"], h[key]) for h in hist if key in h]
            if pts:
                ax.plot(
                    *zip(*pts),
                    style,
                    marker="o",
                    markersize=3,
                    label=f"{run}: {key.removeprefix('eval_engram_').removesuffix('_overall')}",
                )
    ax.axhline(CHANCE, color="grey", linestyle="--", linewidth=1, label=f"chance ({CHANCE})")
    ax.set_xlabel("training step")
    ax.set_ylabel("four-option accuracy")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def comparisons(results_dir: Path) -> dict[str, list[dict]]:
    """Each run's newest ``make compare`` table (compare.json), by run."""
    found = {}
    for run_dir in sorted(p for p in results_dir.iterdir() if p.is_dir()) if results_dir.is_dir() else []:
        files = sorted(run_dir.rglob("compare.json"), key=lambda f: f.stat().st_mtime)
        if files:
            try:
                found[run_dir.name] = json.loads(files[-1].read_text())
            except ValueError as exc:
                raise DataError(f"{files[-1]} is not JSON ({exc}); rerun `make compare`, or move it away") from None
    return found


def _plot_forgetting(compared: dict[str, list[dict]], path: Path) -> None:
    """Per compared run: the bios_qa gain beside every general-ability delta, ± 1.96 × the
    combined standard error, * where p < 0.05."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = {
        run: [r for r in rows if r["task"] == "bios_qa" and r["metric"] == "acc"]
        + [r for r in rows if not r["task"].startswith("bios_qa")]
        for run, rows in compared.items()
    }
    height = sum(max(len(rows), 1) for rows in panels.values())
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 1.2 + 0.32 * height + 0.6 * len(panels)), squeeze=False)
    for ax, (run, rows) in zip(axes[:, 0], panels.items()):
        labels = [f"{r['task']} {r['metric']}" + (" *" if r.get("significant") else "") for r in rows]
        deltas = [r["delta"] for r in rows]
        errors = [1.96 * ((r.get("base_stderr") or 0) ** 2 + (r.get("tuned_stderr") or 0) ** 2) ** 0.5 for r in rows]
        colors = ["C2" if r["task"] == "bios_qa" else "C0" for r in rows]
        ax.barh(range(len(rows)), deltas, xerr=errors, color=colors, capsize=2)
        ax.set_yticks(range(len(rows)), labels, fontsize=8)
        ax.invert_yaxis()
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_title(f"{run}: memorized (green) vs general ability (blue)", fontsize=9)
    axes[-1, 0].set_xlabel("fine-tuned − base (± 1.96 × combined stderr; * p < 0.05)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(results_dir: Path, outputs: Path, out: Path) -> Path:
    """Write the report into ``out`` (replacing only a previous report); return report.md."""
    from lm_eval.utils import make_table

    check_output_dir(out, GENERATOR, overwrite=True)  # a folder that is not a report: refused before any reading
    rows = collect(results_dir, outputs)
    if not rows:
        raise DataError(f"no lm-eval results under {results_dir}; run `make eval` (or `make demo`) first")
    histories = {r["run"]: recall_history(outputs, r["run"]) for r in rows}
    with atomic_output(out, GENERATOR, overwrite=True) as tmp:
        (tmp / "report.json").write_text(json.dumps(rows, indent=2) + "\n")
        table(rows).reindex(columns=list(COLUMNS)).to_csv(tmp / "report.csv")
        _plot_accuracy(rows, tmp / "accuracy.png")
        md = [
            "# llm-engram report",
            "",
            "Four-option accuracy (chance 0.25): `bios_qa` per field and overall on train people;",
            "`heldout`: people whose QA was never trained; `reverse`: name from birth date and city;",
            "`gen`: greedy exact match; `untrained`: the same model before training (the plugin's",
            "step-0 recall on train people), the measured floor beside chance. Your documents (`make corpus-train`):",
            "`corpus`: the generator's questions at the trained temperatures, `corpus_heldout`: at the held-out",
            "temperatures (paraphrases), `corpus_gen`: greedy exact match of the trained ones.",
            "",
            markdown_table(rows),
            "![accuracy per field](accuracy.png)",
            "",
        ]
        if any(histories.values()):
            _plot_recall(histories, tmp / "recall_over_training.png")
            md += [
                "Recall during training (the engram plugin's evaluations):",
                "",
                "![recall over training](recall_over_training.png)",
                "",
            ]
        compared = comparisons(results_dir)
        if compared:
            _plot_forgetting(compared, tmp / "forgetting.png")
            md += [
                "## What memorization cost (`make compare`)",
                "",
                "The bios_qa gain beside every general-ability delta of each compared run "
                "(each run's `compare/compare.md` has the table with p-values):",
                "",
                "![forgetting](forgetting.png)",
                "",
            ]
        md += ["## Every metric, as lm-eval reports it", ""]
        for r in rows:
            md += [
                f"### {r['run']}",
                "",
                f"From `{r['results_file']}`:",
                "",
                make_table(read_results(Path(r["results_file"]))),
                "",
            ]
            if r["samples"]:
                md += [
                    f"Every question's scores (lm-eval's `--log_samples`): {len(r['samples'])} files, "
                    f"`{Path(r['samples'][0]).parent}/samples_bios_qa*.jsonl`.",
                    "",
                ]
        (tmp / "report.md").write_text("\n".join(md))
        manifest = {"generator": GENERATOR, "sources": [r["results_file"] for r in rows]}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return out / "report.md"
