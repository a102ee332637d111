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

from engram_data.contract import FIELDS, MANIFEST, RECALL_HISTORY, DataError, atomic_output, check_output_dir
from engram_run.launch import latest_results, read_results

COLUMNS = (*FIELDS, "overall", "heldout", "reverse", "gen", "untrained")
CHANCE = 0.25
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
        for field in FIELDS:
            row[field] = _metric(res.get(f"bios_qa_{field}", {}), "acc")
        row["overall"] = _metric(res.get("bios_qa", {}), "acc")
        row["heldout"] = _metric(res.get("bios_qa_heldout", {}), "acc")
        row["reverse"] = _metric(res.get("bios_qa_reverse", {}), "acc")
        row["gen"] = _metric(res.get("bios_qa_gen", {}), "exact_match")
        row["untrained"] = untrained_recall(recall_history(outputs, name)) if outputs else None
        row["results_file"] = str(path)
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

    labels = [*FIELDS, "overall"]
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(FIELDS) + 2), 4))
    width = 0.8 / len(rows)
    for i, r in enumerate(rows):
        xs = [j + i * width for j in range(len(labels))]
        ax.bar(xs, [r.get(f) or 0 for f in labels], width, label=r["run"])
        if r.get("untrained") is not None:
            ax.axhline(r["untrained"], color=f"C{i}", linestyle=":", linewidth=1,
                       label=f"{r['run']}: untrained ({r['untrained']:.3f})")  # fmt: skip
    ax.axhline(CHANCE, color="grey", linestyle="--", linewidth=1, label=f"chance ({CHANCE})")
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(labels))], labels, rotation=20)
    ax.set_ylim(0, 1)
    ax.set_ylabel("four-option accuracy (bios_qa, train people)")
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
            "step-0 recall on train people), the measured floor beside chance.",
            "",
            markdown_table(rows),
            "![accuracy per field](accuracy.png)",
            "",
        ]
        if any(histories.values()):
            _plot_recall(histories, tmp / "recall_over_training.png")
            md += ["Recall during training (the engram plugin's evaluations):", "",
                   "![recall over training](recall_over_training.png)", ""]  # fmt: skip
        md += ["## Every metric, as lm-eval reports it", ""]
        for r in rows:
            md += [f"### {r['run']}", "", f"From `{r['results_file']}`:", "",
                   make_table(read_results(Path(r["results_file"]))), ""]  # fmt: skip
        (tmp / "report.md").write_text("\n".join(md))
        manifest = {"generator": GENERATOR, "sources": [r["results_file"] for r in rows]}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return out / "report.md"
