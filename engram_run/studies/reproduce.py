"""``make reproduce``: Physics of Language Models 3.1 at miniature scale, under both of the
paper's training protocols and with its extraction metric.

One population (train and heldout people) and one initial model, trained on each text
variant (``engram_data.contract.VARIANTS``: bioS_v1's three and the ablation of
multiplicity, permutation and full names) on the same budget of biography passes (a
single-biography variant gets as many more epochs as its text is shorter):

- ``mixed``: biographies of everyone mixed with the QA of train people, in one run.
- ``bio_then_qa``: biographies of everyone alone (the same epochs), then a second Axolotl run
  from those weights on the QA of train people only (the paper's BIO pretrain + QA finetune).

Each final model is scored by lm-eval on the trained QA (train people; four-option and
exact match), on extraction (heldout people, whose QA never trained: exact match of a greedy
generation, the paper's metric, and four-option) and on reversal (the name from birth date
and city), beside its untrained score (the plugin's step 0).

    RESULTS/reproduce.json   {protocol: {variant: {epochs, scores, stderr, questions, untrained}}}
    RESULTS/reproduce.md     one table per protocol, the paper's figure for the same cell beside
    RESULTS/reproduce.png    grouped bars per protocol, chance lines
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from engram_data.contract import MANIFEST, QA_TRAIN, RECALL_HISTORY, VARIANTS, read_manifest, train_file
from engram_run.reports.report import untrained_recall
from engram_run.runs import launch
from engram_run.runs.recipes import RECIPES_DIR, RunError, derive_config, recipe_path, write_config
from engram_run.studies.reproduce_report import SCORES, write_results
from lm_eval_tasks import model_args

PROTOCOLS = ("mixed", "bio_then_qa")
REFERENCE = "bioS_multi5_permutes"  # the budget: multi5_epochs passes over this variant's text


@dataclass(frozen=True)
class ReproduceSettings:
    model: str = "tiny"  # tiny: a local model from scratch on a CPU; else a recipe (llama1b, ...)
    people: int = 60
    multi5_epochs: int = 12  # the others get the same budget
    qa_epochs: int = 40  # bio_then_qa: the QA fine-tune's epochs (at 60 people, 10 memorized a third of it)
    hidden: int = 128
    layers: int = 4
    vocab_size: int = 2048
    learning_rate: float = 2e-3
    micro_batch: int = 8  # packed rows of 256 tokens
    variants: tuple[str, ...] = VARIANTS
    protocols: tuple[str, ...] = PROTOCOLS
    data_dir: Path = Path("data/reproduce")
    outputs: Path = Path("outputs/reproduce")
    results: Path = Path("results/reproduce")


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


def variant_config(s: ReproduceSettings, variant: str | None, epochs: int, init: Path | None, model_dir: Path,
                   texts: str = "bio+qa") -> dict:  # fmt: skip
    """The recipe for ``epochs`` epochs on ``texts``: ``bio+qa`` (the variant mixed with the QA
    of train people), ``bio`` (the variant alone) or ``qa`` (the QA of train people alone, from
    ``init``). The same evaluations, at the same shares of the run, for every variant."""
    recipe = RECIPES_DIR / "tiny.yml" if s.model == "tiny" else recipe_path(s.model)
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


def check_data(s: ReproduceSettings) -> None:
    if not (s.data_dir / MANIFEST).exists():
        raise RunError(f"{s.data_dir} has no dataset; run `make data DATA_DIR={s.data_dir}` first")
    missing = [v for v in {*s.variants, REFERENCE} if not train_file(s.data_dir, v).exists()]
    if missing:
        have = read_manifest(s.data_dir).get("variants", [])
        raise RunError(f"{s.data_dir} has no {', '.join(sorted(missing))} (it has {', '.join(have)}); regenerate it "
                       f"with `python generate_data.py --variants {','.join(VARIANTS)} --out {s.data_dir} --overwrite`")  # fmt: skip


def reproduce(s: ReproduceSettings) -> Path:
    start = time.perf_counter()

    def step(msg: str) -> None:
        print(f"[reproduce {time.perf_counter() - start:6.0f}s] {msg}", flush=True)

    unknown = [p for p in s.protocols if p not in PROTOCOLS]
    if unknown or not s.protocols:
        raise RunError(f"unknown protocol {', '.join(unknown) or '(none)'}; choose from {', '.join(PROTOCOLS)}")
    if s.model != "tiny":  # an unknown model, or an adapter for a second run, fails before anything is written
        if "bio_then_qa" in s.protocols and variant_config(s, None, 1, None, s.outputs).get("adapter"):
            raise RunError(f"bio_then_qa fine-tunes the first run's weights: {s.model} trains an adapter; "
                           "use a full recipe (e.g. llama1b) or --protocols mixed")  # fmt: skip
    if s.outputs.exists() and not (s.outputs / launch.MARKER).exists():
        raise RunError(f"{s.outputs} exists and was not written by reproduce; move it away or pass --outputs")
    if s.model == "tiny":
        step(f"generating {s.people} people into {s.data_dir}")
        launch.generate_data(s.data_dir, s.people, seed=0, variants=tuple(dict.fromkeys([*s.variants, REFERENCE])))
    check_data(s)
    launch.remove_own(s.outputs)
    launch.claim(s.outputs)
    init = None
    if s.model == "tiny":
        step(f"building one random Llama (hidden {s.hidden}, {s.layers} layers) for every variant")
        init = launch.build_model(s.data_dir, s.outputs / "init", s.outputs / "build.log", hidden=s.hidden,
                                  layers=s.layers, vocab_size=s.vocab_size, seed=0)  # fmt: skip
    epochs = budget_epochs(s.data_dir, s.multi5_epochs, s.variants)
    rows: dict[str, dict] = {}
    for protocol in s.protocols:
        rows[protocol] = {}
        for variant in s.variants:
            where = launch.claim(launch.claim(s.outputs / protocol) / variant)
            texts = "bio+qa" if protocol == "mixed" else "bio"
            first = train_run(s, where if protocol == "mixed" else where / "bio", variant, epochs[variant], init,
                              texts, step, f"{protocol}/{variant}")  # fmt: skip
            final = first
            if protocol == "bio_then_qa":
                final = train_run(s, where / "qa", None, s.qa_epochs, first, "qa", step, f"{protocol}/{variant}")
            base = str(init or variant_config(s, variant, 1, None, final)["base_model"])  # for adapters
            rows[protocol][variant] = score(s, final, base, where / "lm_eval", step, f"{protocol}/{variant}")
            rows[protocol][variant] |= {"epochs": epochs[variant], "untrained": untrained_recall(history(first))}
            if protocol == "bio_then_qa":
                rows[protocol][variant]["qa_epochs"] = s.qa_epochs
    path = write_results(rows, s)
    step(f"done: {path}")
    return path


def train_run(s, folder: Path, variant, epochs: int, init, texts: str, step, label: str) -> Path:
    """One ``axolotl train`` in ``folder`` (config.yml, train.log, model/); the model folder."""
    cfg = variant_config(s, variant, epochs, init, folder / "model", texts)
    config = write_config(cfg, launch.claim(folder) / "config.yml")
    what = {"bio+qa": "biographies + QA of train people", "bio": "biographies", "qa": "QA of train people"}[texts]
    step(f"{label}: axolotl train on {what}, {epochs} epochs (log: {folder / 'train.log'})")
    if not launch.train(config, folder / "model", folder / "train.log"):
        raise RunError(f"training {label} failed; see {folder / 'train.log'}")
    return folder / "model"


def history(model_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (model_dir / RECALL_HISTORY).read_text().splitlines()]


def lm_eval_row(model_dir: Path, base_model: str, data_dir: Path, out: Path, scores: dict, label: str) -> dict:
    """lm-eval's scores, standard errors and question counts for every entry of ``scores``
    ({name: (task, metric)}), scored into ``out``; RunError naming the log if it fails."""
    tasks = tuple(dict.fromkeys(task for task, _ in scores.values()))
    if not launch.evaluate(model_args(model_dir, base_model), data_dir, out, tasks):
        raise RunError(f"evaluation of {label} failed; see {out / 'eval.log'}")
    data = launch.read_results(launch.latest_results(out))
    res = data["results"]
    return {
        "scores": {k: res[t][f"{m},none"] for k, (t, m) in scores.items()},
        "stderr": {k: res[t][f"{m}_stderr,none"] for k, (t, m) in scores.items()},
        "questions": {k: res_n(data, t) for k, (t, _) in scores.items()},
    }


def score(s, model_dir: Path, base_model: str, out: Path, step, label: str) -> dict:
    """lm-eval's scores, standard errors and question counts for every entry of SCORES."""
    step(f"{label}: lm-eval")
    row = lm_eval_row(model_dir, base_model, s.data_dir, out, SCORES, label)
    sc = row["scores"]
    step(f"{label}: trained QA {sc['trained_qa']:.3f}, heldout exact match {sc['heldout_exact']:.3f}, "
         f"heldout four-option {sc['heldout']:.3f}, reverse {sc['reverse']:.3f}")  # fmt: skip
    return row


def res_n(data: dict, task: str) -> int:
    """Questions lm-eval scored for ``task`` (its ``n-samples``; a group sums its members)."""
    n = data.get("n-samples", {})
    members = data.get("group_subtasks", {}).get(task) or [task]
    return sum(n[m]["effective"] for m in members if m in n)
