"""What the studies share: a step timer, the training budget in characters of text, the recipe
of one arm, and lm-eval's scores with their standard errors and question counts. A study
imports this module and its own ``*_report`` module, never another study."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from engram_data.contract import QA_TRAIN, VARIANTS, train_file
from engram_eval.lm_eval_args import model_args
from engram_run.runs import evaluation
from engram_run.runs.recipes import RECIPES_DIR, RunError, derive_config, recipe_path

REFERENCE = "bioS_multi5_permutes"  # the budget: multi5_epochs passes over this variant's text


def timer(name: str) -> Callable[[str], None]:
    """``step(msg)`` prints ``[name  SECONDSs] msg`` with the seconds since the timer started."""
    start = time.perf_counter()

    def step(msg: str) -> None:
        print(f"[{name} {time.perf_counter() - start:6.0f}s] {msg}", flush=True)

    return step


def text_size(path: Path) -> int:
    """Characters of training text in a train/*.jsonl file (tokens are about proportional)."""
    return sum(len(json.loads(line)["text"]) for line in path.read_text("utf-8").splitlines())


def budget_epochs(data_dir: Path, multi5_epochs: int, variants=VARIANTS) -> dict[str, int]:
    """Epochs per variant for the same training characters as ``multi5_epochs`` over
    bioS_multi5_permutes (each mixed with the QA of train people, as in ``mixed``)."""
    qa = text_size(train_file(data_dir, QA_TRAIN))
    sizes = {v: text_size(train_file(data_dir, v)) + qa for v in {*variants, REFERENCE}}
    budget = multi5_epochs * sizes[REFERENCE]
    return {v: max(1, round(budget / sizes[v])) for v in variants}


def variant_config(
    s, variant: str | None, epochs: int, init: Path | None, model_dir: Path, texts: str = "bio+qa"
) -> dict:
    """The recipe for ``epochs`` epochs on ``texts`` (``s``: a study's settings, with ``model``,
    ``data_dir``, ``learning_rate``, ``micro_batch`` and ``multi5_epochs``): ``bio+qa`` (the variant mixed with the QA
    of train people), ``bio`` (the variant alone) or ``qa`` (the QA of train people alone, from
    ``init``). The same evaluations, at the same shares of the run, for every variant."""
    recipe = RECIPES_DIR / "tiny-full.yml" if s.model == "tiny" else recipe_path(s.model)
    overrides: dict = {"num_epochs": epochs}
    if s.model == "tiny":
        overrides |= {"learning_rate": s.learning_rate, "micro_batch_size": s.micro_batch}
    if init is not None:
        overrides["base_model"] = str(init)
    cfg = derive_config(recipe, s.data_dir, model_dir, variant or REFERENCE, overrides)
    # A single-biography variant's more epochs would otherwise evaluate (and save) more often.
    per_epoch = {k: cfg.pop(k, None) for k in ("evals_per_epoch", "saves_per_epoch")}
    for key, n in zip(("eval_steps", "save_steps"), per_epoch.values(), strict=True):
        if n:
            cfg[key] = 1 / (n * s.multi5_epochs)
    qa = {**cfg["datasets"][0], "path": str(train_file(s.data_dir, QA_TRAIN))}
    bio = cfg["datasets"][0]
    cfg["datasets"] = {"bio+qa": [bio, qa], "bio": [bio], "qa": [qa]}[texts]
    return cfg


def lm_eval_row(
    model_dir: Path, base_model: str, data_dir: Path, out: Path, scores: dict, label: str, limit: int | None = None
) -> dict:
    """lm-eval's scores, standard errors and question counts for every entry of ``scores``
    ({name: (task, metric)}), scored into ``out`` (``limit``: lm-eval's --limit, per subtask);
    RunError naming the log if it fails."""
    tasks = tuple(dict.fromkeys(task for task, _ in scores.values()))
    if evaluation.saves_modules(model_dir):  # an adapter with the embeddings trained: scored merged
        model_dir = base_model = evaluation.merge_adapter(model_dir, base_model, out.with_name(out.name + "-merged"))
    if not evaluation.evaluate(model_args(model_dir, base_model), data_dir, out, tasks, limit):
        raise RunError(f"evaluation of {label} failed; see {out / 'eval.log'}")
    data = evaluation.read_results(evaluation.latest_results(out))
    res = data["results"]
    return {
        "scores": {k: res[t][f"{m},none"] for k, (t, m) in scores.items()},
        "stderr": {k: res[t][f"{m}_stderr,none"] for k, (t, m) in scores.items()},
        "questions": {k: res_n(data, t) for k, (t, _) in scores.items()},
    }


def res_n(data: dict, task: str) -> int:
    """Questions lm-eval scored for ``task`` (its ``n-samples``; a group sums its members)."""
    n = data.get("n-samples", {})
    members = data.get("group_subtasks", {}).get(task) or [task]
    return sum(n[m]["effective"] for m in members if m in n)
