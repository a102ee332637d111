"""Base vs fine-tuned: every metric both lm-eval result files share, side by side with its
delta (what memorization cost in general ability). Writes compare.{md,csv,json}."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from engram_run import launch
from engram_run.recipes import RunError, load_recipe
from engram_run.settings import Run
from lm_eval_tasks import model_args

LEADERBOARD_TASKS = ("hellaswag", "arc_easy", "arc_challenge", "winogrande", "mmlu", "truthfulqa_mc2")


def compare_results(base: dict, tuned: dict) -> list[dict]:
    """Rows (task, metric, base, tuned, delta) for every metric both lm-eval results share."""
    rows = []
    for task in sorted(set(base["results"]) & set(tuned["results"])):
        b, t = base["results"][task], tuned["results"][task]
        for key in sorted(b):
            if not key.endswith(",none") or "_stderr" in key or key not in t:
                continue
            if isinstance(b[key], (int, float)) and isinstance(t[key], (int, float)):
                metric = key.split(",")[0]
                rows.append({"task": task, "metric": metric, "base": b[key], "tuned": t[key], "delta": t[key] - b[key]})
    return rows


def write_comparison(rows: list[dict], out: Path, base_name: str, tuned_name: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps(rows, indent=2) + "\n")
    frame = pd.DataFrame(rows, columns=["task", "metric", "base", "tuned", "delta"])
    frame.to_csv(out / "compare.csv", index=False)
    shown = frame.rename(columns={"tuned": "fine-tuned"}).astype(object)
    for col, fmt in (("base", "{:.4f}"), ("fine-tuned", "{:.4f}"), ("delta", "{:+.4f}")):
        shown[col] = shown[col].map(fmt.format)
    table = shown.to_markdown(index=False, disable_numparse=True, colalign=("left", "left", "right", "right", "right"))
    (out / "compare.md").write_text(f"# {tuned_name} vs {base_name}\n\n{table}\n")
    return out / "compare.md"


def compare(run: Run | None, data_dir: str | Path, tasks: list[str], limit: int | None = None,
            base_results: Path | None = None, tuned_results: Path | None = None) -> Path:  # fmt: skip
    """Score the base and the fine-tuned model of ``run`` (or read two result files) and
    write the comparison beside the tuned results."""
    if base_results and tuned_results:
        out, names = tuned_results.parent, (base_results.stem, tuned_results.stem)
    else:
        if not launch.is_trained(run.model_dir):
            raise RunError(f"{run.name} is not trained; run `make train MODEL={run.model}` first")
        base = load_recipe(run.recipe)["base_model"]
        out = run.results_dir / "compare"
        for side, margs in (("base", f"pretrained={base},dtype=auto"), ("tuned", model_args(run.model_dir, base))):
            if not launch.evaluate(margs, data_dir, out / side, tasks, limit):
                raise RunError(f"lm-eval failed for the {side} model; see {out / side / 'eval.log'}")
        base_results, tuned_results = launch.latest_results(out / "base"), launch.latest_results(out / "tuned")
        names = (base, run.name)
    rows = compare_results(launch.read_results(base_results), launch.read_results(tuned_results))
    if not rows:
        raise RunError(f"{base_results} and {tuned_results} share no task metrics")
    return write_comparison(rows, out, *names)
