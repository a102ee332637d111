"""``make reproduce``: the two findings of Physics of Language Models 3.1 at miniature scale.

The same population (train and heldout people) and the same initial model, trained on
each text variant (``bioS``: one biography per person; ``bioS_fullname``; and
``bioS_multi5_permutes``: five reworded, sentence-shuffled biographies), each mixed with
the QA of train people, on the same token budget (a single-biography variant gets as
many more epochs as its text is shorter, as the paper trained them for 5x the epochs).
Each is scored on memorization (train people), extraction (heldout people) and reversal
(the name from birth date and city), beside its untrained score (the plugin's step 0).

    RESULTS/reproduce.json   {variant: {epochs, train, heldout, reverse, untrained}}
    RESULTS/reproduce.md     the table, beside the paper's findings
    RESULTS/reproduce.png    grouped bars, chance line
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from engram_data.contract import MANIFEST, QA_TRAIN, RECALL_HISTORY, VARIANTS, atomic_output, train_file
from engram_run.reports.report import CHANCE, untrained_recall
from engram_run.runs import launch
from engram_run.runs.recipes import RECIPES_DIR, RunError, derive_config, recipe_path, write_config
from lm_eval_tasks import model_args

GENERATOR = "llm-engram/reproduce"
# Each score and the lm-eval task behind it.
SCORES = dict(zip(("train", "heldout", "reverse"), launch.EVAL_TASKS, strict=True))
PAPER = {  # Physics of LM 3.1 (Allen-Zhu and Li, 2023), as the paper reports them
    "bioS": "extraction near 10% with one biography per person",
    "bioS_multi5_permutes": "extraction above 90% with multi5 + permutation (+ full names)",
    "reverse": "reversal at chance for every variant",
}


@dataclass(frozen=True)
class ReproduceSettings:
    model: str = "tiny"  # tiny: a local model from scratch on a CPU; else a recipe (llama1b, ...)
    people: int = 200
    multi5_epochs: int = 12  # the others get the same token budget
    hidden: int = 128
    layers: int = 4
    vocab_size: int = 2048
    learning_rate: float = 2e-3
    micro_batch: int = 8  # packed rows of 256 tokens
    variants: tuple[str, ...] = VARIANTS
    data_dir: Path = Path("data/reproduce")
    outputs: Path = Path("outputs/reproduce")
    results: Path = Path("results/reproduce")


def text_size(path: Path) -> int:
    """Characters of training text in a train/*.jsonl file (tokens are about proportional)."""
    return sum(len(json.loads(line)["text"]) for line in path.read_text("utf-8").splitlines())


def budget_epochs(data_dir: Path, multi5_epochs: int) -> dict[str, int]:
    """Epochs per variant for the same number of training characters as multi5's."""
    qa = text_size(train_file(data_dir, QA_TRAIN))
    sizes = {v: text_size(train_file(data_dir, v)) + qa for v in VARIANTS}
    budget = multi5_epochs * sizes["bioS_multi5_permutes"]
    return {v: max(1, round(budget / size)) for v, size in sizes.items()}


def variant_config(s: ReproduceSettings, variant: str, epochs: int, init: Path | None, model_dir: Path) -> dict:
    """The recipe on ``variant`` mixed with the QA of train people, for ``epochs`` epochs."""
    recipe = RECIPES_DIR / "tiny.yml" if s.model == "tiny" else recipe_path(s.model)
    overrides: dict = {"num_epochs": epochs}
    if s.model == "tiny":
        overrides |= {"base_model": str(init), "learning_rate": s.learning_rate, "micro_batch_size": s.micro_batch}
    cfg = derive_config(recipe, s.data_dir, model_dir, variant, overrides)
    # The same evaluations (and checkpoints) for every variant, at the same shares of the
    # budget: a single-biography variant's 5x epochs would otherwise evaluate 5x as often.
    per_epoch = {k: cfg.pop(k, None) for k in ("evals_per_epoch", "saves_per_epoch")}
    for key, n in zip(("eval_steps", "save_steps"), per_epoch.values(), strict=True):
        if n:
            cfg[key] = 1 / (n * s.multi5_epochs)
    qa = str(train_file(s.data_dir, QA_TRAIN))
    if not any(ds["path"] == qa for ds in cfg["datasets"]):  # GPU recipes leave mixed training commented out
        cfg["datasets"].append({**cfg["datasets"][0], "path": qa})
    return cfg


def reproduce(s: ReproduceSettings) -> Path:
    start = time.perf_counter()

    def step(msg: str) -> None:
        print(f"[reproduce {time.perf_counter() - start:6.0f}s] {msg}", flush=True)

    if s.model != "tiny":
        recipe_path(s.model)  # an unknown model fails here, before anything is written
    if s.outputs.exists() and not (s.outputs / launch.MARKER).exists():
        raise RunError(f"{s.outputs} exists and was not written by reproduce; move it away or pass --outputs")
    if s.model == "tiny":
        step(f"generating {s.people} people into {s.data_dir}")
        launch.generate_data(s.data_dir, s.people, seed=0)
    elif not (s.data_dir / MANIFEST).exists():
        raise RunError(f"{s.data_dir} has no dataset; run `make data DATA_DIR={s.data_dir}` first")
    launch.remove_own(s.outputs)
    launch.claim(s.outputs)
    init = None
    if s.model == "tiny":
        step(f"building one random Llama (hidden {s.hidden}, {s.layers} layers) for every variant")
        init = launch.build_model(s.data_dir, s.outputs / "init", s.outputs / "build.log", hidden=s.hidden,
                                  layers=s.layers, vocab_size=s.vocab_size, seed=0)  # fmt: skip
    epochs = budget_epochs(s.data_dir, s.multi5_epochs)
    rows = {}
    for variant in s.variants:
        run = s.outputs / variant
        cfg = variant_config(s, variant, epochs[variant], init, run / "model")
        config = write_config(cfg, run / "config.yml")
        step(f"{variant}: axolotl train, {epochs[variant]} epochs (log: {run / 'train.log'})")
        if not launch.train(config, run / "model", run / "train.log"):
            raise RunError(f"training on {variant} failed; see {run / 'train.log'}")
        margs = model_args(run / "model", cfg["base_model"])
        step(f"{variant}: lm-eval")
        if not launch.evaluate(margs, s.data_dir, run / "lm_eval", launch.EVAL_TASKS):
            raise RunError(f"evaluation of {variant} failed; see {run / 'lm_eval' / 'eval.log'}")
        data = launch.read_results(launch.latest_results(run / "lm_eval"))
        res = data["results"]
        history = [json.loads(line) for line in (run / "model" / RECALL_HISTORY).read_text().splitlines()]
        rows[variant] = {
            "epochs": epochs[variant],
            **{k: res[t]["acc,none"] for k, t in SCORES.items()},
            "untrained": untrained_recall(history),
            # lm-eval's standard errors: 200 reverse questions at 200 people are +-0.03
            "stderr": {k: res[t]["acc_stderr,none"] for k, t in SCORES.items()},
            "questions": {k: res_n(data, t) for k, t in SCORES.items()},
        }
        step(f"{variant}: train {rows[variant]['train']:.3f}, heldout {rows[variant]['heldout']:.3f}, "
             f"reverse {rows[variant]['reverse']:.3f}")  # fmt: skip
    path = write_results(rows, s)
    step(f"done: {path}")
    return path


def res_n(data: dict, task: str) -> int:
    """Questions lm-eval scored for ``task`` (its ``n-samples``; a group sums its members)."""
    n = data.get("n-samples", {})
    members = data.get("group_subtasks", {}).get(task) or [task]
    return sum(n[m]["effective"] for m in members if m in n)


def markdown(rows: dict, s: ReproduceSettings) -> str:
    lines = [
        "# Physics of LM 3.1 at miniature scale",
        "",
        f"{s.people} people (half of them heldout), model `{s.model}`, each variant mixed with the QA of train",
        "people on the same token budget. Four-option accuracy, chance 0.25; `untrained`: the same model",
        "before training (train people).",
        "",
        "| variant | epochs | train (memorization) | heldout (extraction) | reverse | untrained |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for v, r in rows.items():
        untrained = "" if r["untrained"] is None else f"{r['untrained']:.3f}"
        cells = [f"{r[k]:.3f} ± {r['stderr'][k]:.3f}" for k in ("train", "heldout", "reverse")]
        lines.append(f"| `{v}` | {r['epochs']} | {' | '.join(cells)} | {untrained} |")
    n = next(iter(rows.values()))["questions"]
    lines += ["", f"± lm-eval's standard error; questions per variant: {n['train']} train, {n['heldout']} heldout, "
              f"{n['reverse']} reverse."]  # fmt: skip
    if {"bioS", "bioS_multi5_permutes"} <= set(rows):
        gap = rows["bioS_multi5_permutes"]["heldout"] - rows["bioS"]["heldout"]
        lines += ["", f"Extraction gained by knowledge augmentation: heldout(multi5) - heldout(bioS) = {gap:+.3f}."]
    lines += [
        "",
        "The paper: " + "; ".join(PAPER.values()) + ".",
        "",
        "![reproduce](reproduce.png)",
    ]
    return "\n".join(lines) + "\n"


def _plot(rows: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = ("untrained", "train", "heldout", "reverse")
    width = 0.2
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for i, metric in enumerate(metrics):
        xs = [j + (i - 1.5) * width for j in range(len(rows))]
        values = [r[metric] or 0.0 for r in rows.values()]
        errors = [r.get("stderr", {}).get(metric, 0.0) for r in rows.values()]
        ax.bar(xs, values, width, yerr=errors, capsize=2, label=metric, color="lightgrey" if i == 0 else None)
    ax.axhline(CHANCE, color="grey", linestyle="--", linewidth=1, label=f"chance ({CHANCE})")
    ax.set_xticks(range(len(rows)), list(rows))
    ax.set_ylim(0, 1)
    ax.set_ylabel("four-option accuracy")
    ax.legend(fontsize=8, ncol=5, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_results(rows: dict, s: ReproduceSettings) -> Path:
    with atomic_output(s.results, GENERATOR, overwrite=True) as tmp:
        (tmp / "reproduce.json").write_text(json.dumps(rows, indent=2) + "\n")
        (tmp / "reproduce.md").write_text(markdown(rows, s))
        _plot(rows, tmp / "reproduce.png")
        (tmp / MANIFEST).write_text(json.dumps({"generator": GENERATOR, "settings": str(s)}, indent=2) + "\n")
    return s.results / "reproduce.md"
