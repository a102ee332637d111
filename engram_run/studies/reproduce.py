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
from dataclasses import dataclass
from pathlib import Path

from engram_data.contract import MANIFEST, VARIANTS, read_manifest, train_file
from engram_data.run_files import RECALL_HISTORY
from engram_run.reports.report import untrained_recall
from engram_run.runs import launch
from engram_run.runs.recipes import RunError, write_config
from engram_run.studies.common import REFERENCE, budget_epochs, lm_eval_row, timer, variant_config
from engram_run.studies.reproduce_report import SCORES, write_results

PROTOCOLS = ("mixed", "bio_then_qa")


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


def check_data(s: ReproduceSettings) -> None:
    if not (s.data_dir / MANIFEST).exists():
        raise RunError(f"{s.data_dir} has no dataset; run `make data DATA_DIR={s.data_dir}` first")
    missing = [v for v in {*s.variants, REFERENCE} if not train_file(s.data_dir, v).exists()]
    if missing:
        have = read_manifest(s.data_dir).get("variants", [])
        raise RunError(
            f"{s.data_dir} has no {', '.join(sorted(missing))} (it has {', '.join(have)}); regenerate it "
            f"with `python generate_data.py --variants {','.join(VARIANTS)} --out {s.data_dir} --overwrite`"
        )


def reproduce(s: ReproduceSettings) -> Path:
    step = timer("reproduce")

    unknown = [p for p in s.protocols if p not in PROTOCOLS]
    if unknown or not s.protocols:
        raise RunError(f"unknown protocol {', '.join(unknown) or '(none)'}; choose from {', '.join(PROTOCOLS)}")
    if s.model != "tiny":  # an unknown model, or an adapter for a second run, fails before anything is written
        if "bio_then_qa" in s.protocols and variant_config(s, None, 1, None, s.outputs).get("adapter"):
            raise RunError(
                f"bio_then_qa fine-tunes the first run's weights: {s.model} trains an adapter; "
                "use a full recipe (e.g. llama1b) or --protocols mixed"
            )
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
        init = launch.build_model(
            s.data_dir,
            s.outputs / "init",
            s.outputs / "build.log",
            hidden=s.hidden,
            layers=s.layers,
            vocab_size=s.vocab_size,
            seed=0,
        )
    epochs = budget_epochs(s.data_dir, s.multi5_epochs, s.variants)
    rows: dict[str, dict] = {}
    for protocol in s.protocols:
        rows[protocol] = {}
        for variant in s.variants:
            where = launch.claim(launch.claim(s.outputs / protocol) / variant)
            texts = "bio+qa" if protocol == "mixed" else "bio"
            first = train_run(
                s,
                where if protocol == "mixed" else where / "bio",
                variant,
                epochs[variant],
                init,
                texts,
                step,
                f"{protocol}/{variant}",
            )
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


def score(s, model_dir: Path, base_model: str, out: Path, step, label: str) -> dict:
    """lm-eval's scores, standard errors and question counts for every entry of SCORES."""
    step(f"{label}: lm-eval")
    row = lm_eval_row(model_dir, base_model, s.data_dir, out, SCORES, label)
    sc = row["scores"]
    step(
        f"{label}: trained QA {sc['trained_qa']:.3f}, heldout exact match {sc['heldout_exact']:.3f}, "
        f"heldout four-option {sc['heldout']:.3f}, reverse {sc['reverse']:.3f}"
    )
    return row
