"""Glue behind the Makefile: derive a run's config from a recipe, train and evaluate
many models, collect results into a report, compare a fine-tuned model with its base.

Usage:
    python -m engram_plugin.pipeline demo
    python -m engram_plugin.pipeline train-all --models "gpt2 llama1b" --method lora
    python -m engram_plugin.pipeline eval-all --models "gpt2 llama1b" --method lora
    python -m engram_plugin.pipeline report --results results --outputs outputs --out results/report
    python -m engram_plugin.pipeline compare --model llama3b

Runs live in ``outputs/<run>/`` (config.yml, model/) and ``results/<run>/`` (lm-eval's
own JSON); a run is named ``<model>-<method>-<bio field>``. Writes report.{md,csv,json}
and PNG plots.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from engram_plugin.data.bios import FIELDS, TEXT_VARIANTS
from engram_plugin.recipes import DEFAULT_DATA_DIR, RECIPES_DIR, load_recipe

BIO_FIELDS = TEXT_VARIANTS
METHODS = ("full", "lora", "qlora")


class PipelineError(Exception):
    """A bad request (unknown model, method, field or path); the message says what to do."""


def recipe_path(model: str, method: str | None = None) -> Path:
    """``axolotl_configs/<model>.yml``, or ``<model>-<method>.yml`` for another method."""
    base = RECIPES_DIR / f"{model}.yml"
    if not base.exists():
        known = sorted(p.stem for p in RECIPES_DIR.glob("*.yml") if p.stem.rsplit("-", 1)[-1] not in METHODS)
        raise PipelineError(f"no recipe for MODEL={model}; choose from {', '.join(known)}")
    if method is None or method == recipe_method(load_recipe(base)):
        return base
    if method not in METHODS:
        raise PipelineError(f"unknown METHOD={method}; choose from {', '.join(METHODS)}")
    variant = RECIPES_DIR / f"{model}-{method}.yml"
    if not variant.exists():
        have = [recipe_method(load_recipe(base))] + [m for m in METHODS if (RECIPES_DIR / f"{model}-{m}.yml").exists()]
        raise PipelineError(f"no {method} recipe for {model}; its recipes use {', '.join(have)}")
    return variant


def recipe_method(cfg: dict) -> str:
    return {None: "full", "lora": "lora", "qlora": "qlora"}[cfg.get("adapter")]


def run_name(model: str, method: str, bio_field: str) -> str:
    return f"{model}-{method}-{bio_field}"


def derive_config(
    recipe: str | Path,
    data_dir: str | Path,
    output_dir: str | Path,
    bio_field: str | None = None,
    overrides: dict | None = None,
) -> dict:
    """The recipe, pointed at ``data_dir`` (and ``bio_field``) and writing to ``output_dir``."""
    cfg = load_recipe(recipe)
    if bio_field is not None and bio_field not in BIO_FIELDS:
        raise PipelineError(f"unknown BIO_FIELD={bio_field}; choose from {', '.join(BIO_FIELDS)}")
    data_dir = str(data_dir)
    for i, ds in enumerate(cfg.get("datasets", [])):
        path = ds["path"].replace(DEFAULT_DATA_DIR, data_dir, 1)
        if i == 0 and bio_field is not None:
            path = str(Path(path).with_name(f"{bio_field}.jsonl"))
        ds["path"] = path
    output_dir = Path(output_dir)
    cfg["output_dir"] = str(output_dir)
    cfg["dataset_prepared_path"] = str(output_dir.parent / "prepared")
    if "engram_data_dir" in cfg or "engram_plugin.EngramPlugin" in cfg.get("plugins", []):
        cfg["engram_data_dir"] = data_dir
    cfg.update(overrides or {})
    return cfg


def write_config(cfg: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


DONE_FILE = ".engram_done"
EVAL_TASKS = ("bios_qa", "bios_qa_heldout", "bios_qa_reverse")
LEADERBOARD_TASKS = ("hellaswag", "arc_easy", "arc_challenge", "winogrande", "mmlu", "truthfulqa_mc2")


def _tool(name: str) -> str:
    """A console script of this environment (axolotl, engram-eval, accelerate)."""
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else name


def _env() -> dict:
    # axolotl launches `accelerate` by name: this environment's bin must be on PATH.
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def is_trained(model_dir: Path) -> bool:
    return (model_dir / DONE_FILE).exists()


def train_run(config: Path, model_dir: Path, log: Path) -> bool:
    """``axolotl train CONFIG``, output in ``log``; True on success (and marks it done)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as f:
        code = subprocess.call([_tool("axolotl"), "train", str(config)], stdout=f, stderr=subprocess.STDOUT, env=_env())
    if code == 0:
        (model_dir / DONE_FILE).write_text(time.strftime("%Y-%m-%dT%H:%M:%S") + "\n")
    return code == 0


def model_args(model_dir: Path, base_model: str) -> str:
    """lm-eval's ``--model_args`` for a trained run: base + ``peft`` for an adapter."""
    if (model_dir / "adapter_config.json").exists():
        return f"pretrained={base_model},peft={model_dir},dtype=auto"
    return f"pretrained={model_dir},dtype=auto"


def eval_run(
    model_args_str: str,
    data_dir: str | Path,
    out: Path,
    tasks=EVAL_TASKS,
    limit: int | None = None,
    batch_size: int = 32,
    log: Path | None = None,
) -> bool:
    """``engram-eval`` (lm_eval with our tasks) into ``out`` in lm-eval's own JSON format."""
    import torch

    cmd = [
        _tool("engram-eval"), "--model", "hf", "--model_args", model_args_str,
        "--tasks", ",".join(tasks), "--metadata", json.dumps({"data_dir": str(data_dir)}),
        "--output_path", str(out), "--batch_size", str(batch_size),
        "--device", "cuda" if torch.cuda.is_available() else "cpu",
    ]  # fmt: skip
    if limit:
        cmd += ["--limit", str(limit)]
    out.mkdir(parents=True, exist_ok=True)
    with (log or out / "eval.log").open("w") as f:
        return subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, env=_env()) == 0


def latest_results(run_dir: Path) -> Path | None:
    found = sorted(run_dir.rglob("results_*.json"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def resolve_runs(models: list[str], method: str | None, bio_field: str, status: dict[str, str]):
    """(recipe, run name) of each model; an unknown model or method is recorded as failed."""
    for model in models:
        try:
            recipe = recipe_path(model, method)
        except PipelineError as exc:
            status[model] = f"failed: {exc}"
            print(f"[engram] {model}: FAILED ({exc})", flush=True)
            continue
        yield recipe, run_name(model, recipe_method(load_recipe(recipe)), bio_field)


def train_all(
    models: list[str],
    method: str | None,
    bio_field: str,
    data_dir: str,
    outputs: Path,
    force: bool = False,
    overrides: dict | None = None,
) -> dict[str, str]:
    """Train models in sequence: a failure is reported and the rest go on; finished runs
    are skipped unless ``force``. Returns {run: "trained" | "skipped" | "failed: why"}."""
    status: dict[str, str] = {}
    for recipe, run in resolve_runs(models, method, bio_field, status):
        model_dir = outputs / run / "model"
        if is_trained(model_dir) and not force:
            status[run] = "skipped"
            print(f"[engram] {run}: already trained (FORCE=1 retrains)", flush=True)
            continue
        if force and model_dir.exists():
            shutil.rmtree(model_dir)
        config = write_config(
            derive_config(recipe, data_dir, model_dir, bio_field, overrides), outputs / run / "config.yml"
        )
        print(f"[engram] {run}: training (log: {outputs / run / 'train.log'})", flush=True)
        ok = train_run(config, model_dir, outputs / run / "train.log")
        status[run] = "trained" if ok else f"failed: see {outputs / run / 'train.log'}"
        print(f"[engram] {run}: {'done' if ok else 'FAILED'}", flush=True)
    return status


def eval_all(models: list[str], method: str | None, bio_field: str, data_dir: str, outputs: Path, results: Path,
             tasks=EVAL_TASKS, limit: int | None = None) -> dict[str, str]:  # fmt: skip
    status: dict[str, str] = {}
    for _recipe, run in resolve_runs(models, method, bio_field, status):
        model_dir = outputs / run / "model"
        if not is_trained(model_dir):
            status[run] = "failed: not trained (make train MODEL=...)"
            print(f"[engram] {run}: not trained, skipped", flush=True)
            continue
        cfg = load_recipe(outputs / run / "config.yml")
        ok = eval_run(model_args(model_dir, cfg["base_model"]), data_dir, results / run, tasks, limit)
        status[run] = "evaluated" if ok else f"failed: see {results / run / 'eval.log'}"
        print(f"[engram] {run}: {status[run]}", flush=True)
    return status


# --------------------------------------------------------------------------- report


def _metric(task_results: dict, name: str) -> float | None:
    value = task_results.get(f"{name},none")
    return None if value is None or isinstance(value, str) else float(value)


def collect(results_dir: Path, outputs: Path | None = None) -> list[dict]:
    """One row per run: per-field bios_qa accuracy, overall, heldout, reverse (and gen), and
    the measured floor: the plugin's step-0 recall of the untrained model, where logged."""
    rows = []
    for run_dir in sorted(p for p in results_dir.iterdir() if p.is_dir()) if results_dir.is_dir() else []:
        path = latest_results(run_dir)
        if path is None or run_dir.name == "report":
            continue
        res = json.loads(path.read_text())["results"]
        row: dict = {"run": run_dir.name}
        for field in FIELDS:
            row[field] = _metric(res.get(f"bios_qa_{field}", {}), "acc")
        row["overall"] = _metric(res.get("bios_qa", {}), "acc")
        row["heldout"] = _metric(res.get("bios_qa_heldout", {}), "acc")
        row["reverse"] = _metric(res.get("bios_qa_reverse", {}), "acc")
        row["gen"] = _metric(res.get("bios_qa_gen", {}), "exact_match")
        row["untrained"] = untrained_recall(recall_history(outputs, run_dir.name)) if outputs else None
        row["results_file"] = str(path)
        rows.append(row)
    return rows


COLUMNS = (*FIELDS, "overall", "heldout", "reverse", "gen", "untrained")
CHANCE = 0.25


def _fmt(v) -> str:
    return "" if v is None else f"{v:.3f}"


def markdown_table(rows: list[dict]) -> str:
    cols = [c for c in COLUMNS if any(r.get(c) is not None for r in rows)]
    lines = ["| run | " + " | ".join(cols) + " |", "| --- |" + " ---: |" * len(cols)]
    for r in rows:
        lines.append(f"| {r['run']} | " + " | ".join(_fmt(r.get(c)) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def recall_history(outputs: Path, run: str) -> list[dict]:
    path = outputs / run / "model" / "engram_recall.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def untrained_recall(history: list[dict]) -> float | None:
    """Recall on train people before any update (the plugin scores step 0): the floor the
    trained number is to be read against, measured rather than assumed to be chance."""
    return next((h["engram/qa_acc/overall"] for h in history if h["step"] == 0 and "engram/qa_acc/overall" in h), None)


def report(results_dir: Path, outputs: Path, out: Path) -> Path:
    """report.md / report.csv / report.json, accuracy.png and recall_over_training.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = collect(results_dir, outputs)
    if not rows:
        raise PipelineError(f"no lm-eval results under {results_dir}; run `make eval` (or `make demo`) first")
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (tmp / "report.json").write_text(json.dumps(rows, indent=2) + "\n")
    with (tmp / "report.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["run", *COLUMNS])
        writer.writeheader()
        for r in rows:
            writer.writerow({k: r.get(k) for k in ["run", *COLUMNS]})

    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(FIELDS) + 2), 4))
    width = 0.8 / len(rows)
    for i, r in enumerate(rows):
        xs = [j + i * width for j in range(len(FIELDS) + 1)]
        ax.bar(xs, [r.get(f) or 0 for f in (*FIELDS, "overall")], width, label=r["run"])
    ax.axhline(CHANCE, color="grey", linestyle="--", linewidth=1, label=f"chance ({CHANCE})")
    for i, r in enumerate(rows):
        if r.get("untrained") is not None:
            ax.axhline(r["untrained"], color=f"C{i}", linestyle=":", linewidth=1,
                       label=f"{r['run']}: untrained ({r['untrained']:.3f})")  # fmt: skip
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(FIELDS) + 1)], [*FIELDS, "overall"], rotation=20)
    ax.set_ylim(0, 1)
    ax.set_ylabel("four-option accuracy (bios_qa, train people)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(tmp / "accuracy.png", dpi=120)
    plt.close(fig)

    histories = {r["run"]: recall_history(outputs, r["run"]) for r in rows}
    plots = []
    if any(histories.values()):
        fig, ax = plt.subplots(figsize=(7, 4))
        for i, (run, hist) in enumerate(histories.items()):
            floor = untrained_recall(hist)
            if floor is not None:
                ax.axhline(
                    floor, color=f"C{i}", linestyle=":", linewidth=1, label=f"{run}: untrained, step 0 ({floor:.3f})"
                )
            for key, style in (
                ("engram/qa_acc/overall", "-"),
                ("engram/heldout_acc/overall", "--"),
                ("engram/reverse_acc", ":"),
            ):
                pts = [(h["step"], h[key]) for h in hist if key in h]
                if pts:
                    ax.plot(*zip(*pts), style, marker="o", markersize=3, label=f"{run}: {key.split('/')[1]}")
        ax.axhline(CHANCE, color="grey", linestyle="--", linewidth=1, label=f"chance ({CHANCE})")
        ax.set_xlabel("training step")
        ax.set_ylabel("four-option accuracy")
        ax.set_ylim(0, 1)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(tmp / "recall_over_training.png", dpi=120)
        plt.close(fig)
        plots.append("recall_over_training.png")

    md = ["# llm-engram report", "", "Four-option accuracy (chance 0.25): `bios_qa` per field and overall on",
          "train people; `heldout`: people whose QA was never trained; `reverse`: name from",
          "birth date and city; `gen`: greedy exact match; `untrained`: the same model before",
          "training (the plugin's step-0 recall on train people), the measured floor beside chance.",
          "", markdown_table(rows),
          "![accuracy per field](accuracy.png)", ""]  # fmt: skip
    if plots:
        md += [
            "Recall during training (the engram plugin's evaluations):",
            "",
            "![recall over training](recall_over_training.png)",
            "",
        ]
    md += ["Sources: " + ", ".join(f"`{r['results_file']}`" for r in rows), ""]
    (tmp / "report.md").write_text("\n".join(md))
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out / "report.md"


# --------------------------------------------------------------------------- compare


def compare_results(base: dict, tuned: dict) -> list[dict]:
    """Rows (task, metric, base, tuned, delta) for every metric both lm-eval results share."""
    rows = []
    for task in sorted(set(base["results"]) & set(tuned["results"])):
        b, t = base["results"][task], tuned["results"][task]
        for key in sorted(b):
            if not key.endswith(",none") or "_stderr" in key or key not in t:
                continue
            if isinstance(b[key], (int, float)) and isinstance(t[key], (int, float)):
                rows.append(
                    {
                        "task": task,
                        "metric": key.split(",")[0],
                        "base": b[key],
                        "tuned": t[key],
                        "delta": t[key] - b[key],
                    }
                )
    return rows


def write_comparison(rows: list[dict], out: Path, base_name: str, tuned_name: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps(rows, indent=2) + "\n")
    with (out / "compare.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["task", "metric", "base", "tuned", "delta"])
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        f"# {tuned_name} vs {base_name}",
        "",
        "| task | metric | base | fine-tuned | delta |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    lines += [f"| {r['task']} | {r['metric']} | {r['base']:.4f} | {r['tuned']:.4f} | {r['delta']:+.4f} |" for r in rows]
    (out / "compare.md").write_text("\n".join(lines) + "\n")
    return out / "compare.md"


def _parse_overrides(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise PipelineError(f"--set takes KEY=VALUE (got {pair!r})")
        out[key] = yaml.safe_load(value)
    return out


def demo(people: int, epochs: int, hidden: int, layers: int, vocab: int, data_dir: Path, outputs: Path,
         results: Path, learning_rate: float, micro_batch: int, eval_limit: int | None = None) -> Path:  # fmt: skip
    """The main job end to end on a CPU: data, a local tiny Llama, training with the
    plugin, lm-eval, report. Prints where the report is."""
    from engram_plugin.data import synthesize, write_dataset
    from engram_plugin.tiny import build_tiny_model

    start = time.perf_counter()
    run = outputs / "demo"
    step = lambda msg: print(f"[demo {time.perf_counter() - start:6.0f}s] {msg}", flush=True)  # noqa: E731
    step(f"generating {people} people into {data_dir}")
    if data_dir.exists() and not (data_dir / "manifest.json").exists():
        raise PipelineError(f"{data_dir} exists and is not a generated dataset; remove it or set DEMO_DATA")
    shutil.rmtree(data_dir, ignore_errors=True)
    write_dataset(synthesize(people, seed=0), data_dir)
    if run.exists():
        shutil.rmtree(run)
    step(f"building a random Llama (hidden {hidden}, {layers} layers) and its tokenizer from the data")
    build_tiny_model(data_dir, run / "init", hidden=hidden, layers=layers, vocab_size=vocab, seed=0)
    overrides = {"base_model": str(run / "init"), "num_epochs": epochs, "learning_rate": learning_rate,
                 "micro_batch_size": micro_batch}  # fmt: skip
    config = write_config(
        derive_config(RECIPES_DIR / "tiny.yml", data_dir, run / "model", None, overrides), run / "config.yml"
    )
    step(f"axolotl train {config} (log: {run / 'train.log'})")
    if not train_run(config, run / "model", run / "train.log"):
        raise PipelineError(f"training failed; see {run / 'train.log'}")
    step("lm-eval: bios_qa, bios_qa_heldout, bios_qa_reverse")
    if results.joinpath("demo").exists():
        shutil.rmtree(results / "demo")
    if not eval_run(f"pretrained={run / 'model'},dtype=float32", data_dir, results / "demo", EVAL_TASKS, eval_limit):
        raise PipelineError(f"evaluation failed; see {results / 'demo' / 'eval.log'}")
    path = report(results, outputs, results / "report")
    row = next(r for r in collect(results, outputs) if r["run"] == "demo")
    step(
        f"done: recall on trained people {row['overall']:.3f}, heldout {row['heldout']:.3f}, "
        f"reverse {row['reverse']:.3f}; untrained {_fmt(row['untrained'])} (chance {CHANCE})"
    )
    print(f"report: {path}")
    return path


def _summary(status: dict[str, str]) -> int:
    failed = {k: v for k, v in status.items() if v.startswith("failed")}
    for run, st in status.items():
        print(f"  {run}: {st}")
    if failed:
        print(f"{len(failed)} of {len(status)} failed", file=sys.stderr)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engram_plugin.pipeline", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("config", help="write a run's Axolotl config derived from a recipe")
    c.add_argument("--recipe", help="recipe file (default: from --model and --method)")
    c.add_argument("--model")
    c.add_argument("--method")
    c.add_argument("--bio-field", default=None)
    c.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    c.add_argument("--output-dir", required=True)
    c.add_argument("--out", required=True, help="where to write the config")
    c.add_argument("--set", nargs="*", default=[], help="KEY=VALUE overrides (YAML values)")

    for name, helptext in (("train-all", "train models in sequence"), ("eval-all", "evaluate trained models")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--models", required=True, help='space- or comma-separated, e.g. "gpt2 llama1b"')
        p.add_argument("--method", default=None, help="full, lora or qlora (default: each recipe's own)")
        p.add_argument("--bio-field", default="bioS_multi5_permutes", choices=BIO_FIELDS)
        p.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
        p.add_argument("--outputs", default="outputs")
        p.add_argument("--results", default="results")
        p.add_argument("--force", action="store_true", help="retrain finished runs")
        p.add_argument("--tasks", default=",".join(EVAL_TASKS))
        p.add_argument("--limit", type=int, default=None)
        p.add_argument("--set", nargs="*", default=[], help="KEY=VALUE config overrides for every model")

    r = sub.add_parser("report", help="collect every run into report.{md,csv,json} and PNG plots")
    r.add_argument("--results", default="results")
    r.add_argument("--outputs", default="outputs")
    r.add_argument("--out", default="results/report")

    k = sub.add_parser("compare", help="base vs fine-tuned on bios_qa and leaderboard tasks")
    k.add_argument("--model", required=True)
    k.add_argument("--method", default=None)
    k.add_argument("--bio-field", default="bioS_multi5_permutes", choices=BIO_FIELDS)
    k.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    k.add_argument("--outputs", default="outputs")
    k.add_argument("--results", default="results")
    k.add_argument("--tasks", default=",".join(("bios_qa", *LEADERBOARD_TASKS)))
    k.add_argument("--limit", type=int, default=None)
    k.add_argument("--base-results", help="compare two existing lm-eval result files instead of running")
    k.add_argument("--tuned-results")

    d = sub.add_parser("demo", help="the main job end to end on a CPU")
    d.add_argument("--people", type=int, default=200)
    d.add_argument("--epochs", type=int, default=12)
    d.add_argument("--hidden", type=int, default=128)
    d.add_argument("--layers", type=int, default=4)
    d.add_argument("--vocab-size", type=int, default=2048)
    d.add_argument("--learning-rate", type=float, default=2e-3)
    d.add_argument("--micro-batch", type=int, default=32)
    d.add_argument("--data-dir", default="data/demo")
    d.add_argument("--outputs", default="outputs")
    d.add_argument("--results", default="results")
    d.add_argument("--eval-limit", type=int, default=None)

    args = parser.parse_args(argv)
    try:
        if args.command == "config":
            recipe = args.recipe or recipe_path(args.model, args.method)
            cfg = derive_config(recipe, args.data_dir, args.output_dir, args.bio_field, _parse_overrides(args.set))
            print(write_config(cfg, args.out))
        elif args.command in ("train-all", "eval-all"):
            models = args.models.replace(",", " ").split()
            if args.command == "train-all":
                status = train_all(models, args.method, args.bio_field, args.data_dir, Path(args.outputs), args.force,
                                   _parse_overrides(args.set))  # fmt: skip
            else:
                status = eval_all(models, args.method, args.bio_field, args.data_dir, Path(args.outputs),
                                  Path(args.results), args.tasks.split(","), args.limit)  # fmt: skip
            return _summary(status)
        elif args.command == "report":
            print(f"report: {report(Path(args.results), Path(args.outputs), Path(args.out))}")
        elif args.command == "compare":
            return compare_command(args)
        elif args.command == "demo":
            demo(args.people, args.epochs, args.hidden, args.layers, args.vocab_size, Path(args.data_dir),
                 Path(args.outputs), Path(args.results), args.learning_rate, args.micro_batch, args.eval_limit)  # fmt: skip
    except PipelineError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    return 0


def compare_command(args) -> int:
    if args.base_results and args.tuned_results:
        base_file, tuned_file = Path(args.base_results), Path(args.tuned_results)
        out = tuned_file.parent
        names = (base_file.stem, tuned_file.stem)
    else:
        recipe = recipe_path(args.model, args.method)
        cfg = load_recipe(recipe)
        run = run_name(args.model, recipe_method(cfg), args.bio_field)
        model_dir = Path(args.outputs) / run / "model"
        if not is_trained(model_dir):
            raise PipelineError(f"{run} is not trained; run `make train MODEL={args.model}` first")
        out = Path(args.results) / run / "compare"
        tasks = args.tasks.split(",")
        for side, margs in (
            ("base", f"pretrained={cfg['base_model']},dtype=auto"),
            ("tuned", model_args(model_dir, cfg["base_model"])),
        ):
            if not eval_run(margs, args.data_dir, out / side, tasks, args.limit):
                raise PipelineError(f"lm-eval failed for the {side} model; see {out / side / 'eval.log'}")
        base_file, tuned_file = latest_results(out / "base"), latest_results(out / "tuned")
        names = (cfg["base_model"], run)
    rows = compare_results(json.loads(base_file.read_text()), json.loads(tuned_file.read_text()))
    if not rows:
        raise PipelineError(f"{base_file} and {tuned_file} share no task metrics")
    print(f"comparison: {write_comparison(rows, out, *names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
