"""``make reversal``: what makes "who was born on X in Y?" answerable.

One population (train and heldout people), one initial model and one budget: every arm
trains ``bioS_multi5_permutes`` mixed with the QA of train people for the same epochs, plus
its remedy (generator 2.2, ``engram_data/reversal.py``):

- ``baseline``: nothing more;
- ``reverse_qa``: the reverse questions of train people (``train/qa_reverse_train.jsonl``);
- ``reverse_qa+value_first``: those, and five biographies per person that state each value
  *before* the name (``bioS_multi5_permutes_value_first``);
- ``reverse_qa+entity_reversed``: those, and each biography with its word order reversed,
  names and values kept whole (Golovneva et al. 2024, ``..._entity_reversed``).

The remedy texts are extra text on top of the same forward budget (their size, as a share of
the forward biographies' characters, is in the table). Each final model is scored by lm-eval on reverse recall of **heldout** people
(whose reverse QA never trained) and of train people, four-option and as generated names
(exact match), beside forward extraction (heldout people, exact match) and trained forward
QA, which a remedy must not break; the untrained model is scored on the same tasks (the floor).

    RESULTS/reversal.json   {arm: {extra, tokens, scores, stderr, questions}, "untrained": {...}}
    RESULTS/reversal.md     the table; RESULTS/reversal.png: grouped bars, chance line
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engram_data.contract import MANIFEST, QA_REVERSE_TRAIN, REVERSAL_VARIANTS, train_file
from engram_run.runs import launch
from engram_run.runs.recipes import RunError, write_config
from engram_run.studies.common import REFERENCE, lm_eval_row, text_size, timer, variant_config
from engram_run.studies.reversal_report import SCORES, write_results

VALUE_FIRST, ENTITY_REVERSED = REVERSAL_VARIANTS
ARMS = {
    "baseline": (),
    "reverse_qa": (QA_REVERSE_TRAIN,),
    "reverse_qa+value_first": (QA_REVERSE_TRAIN, VALUE_FIRST),
    "reverse_qa+entity_reversed": (QA_REVERSE_TRAIN, ENTITY_REVERSED),
}


@dataclass(frozen=True)
class ReversalSettings:
    people: int = 100
    multi5_epochs: int = 12  # every arm: these passes over bioS_multi5_permutes + the QA of train people
    hidden: int = 128
    layers: int = 4
    vocab_size: int = 2048
    learning_rate: float = 2e-3
    micro_batch: int = 8
    arms: tuple[str, ...] = tuple(ARMS)
    model: str = "tiny"  # the CPU study; the recipes of reproduce are not wired in here
    data_dir: Path = Path("data/reversal")
    outputs: Path = Path("outputs/reversal")
    results: Path = Path("results/reversal")


def arm_config(s: ReversalSettings, arm: str, init: Path, model_dir: Path) -> dict:
    cfg = variant_config(s, REFERENCE, s.multi5_epochs, init, model_dir, "bio+qa")
    bio = cfg["datasets"][0]
    cfg["datasets"] += [{**bio, "path": str(train_file(s.data_dir, name))} for name in ARMS[arm]]
    return cfg


def reversal(s: ReversalSettings) -> Path:
    step = timer("reversal")

    unknown = [a for a in s.arms if a not in ARMS]
    if unknown or not s.arms:
        raise RunError(f"unknown arm {', '.join(unknown) or '(none)'}; choose from {', '.join(ARMS)}")
    if s.outputs.exists() and not (s.outputs / launch.MARKER).exists():
        raise RunError(f"{s.outputs} exists and was not written by reversal; move it away or pass --outputs")
    step(f"generating {s.people} people into {s.data_dir}")
    launch.generate_data(s.data_dir, s.people, seed=0, variants=(REFERENCE, *REVERSAL_VARIANTS))
    if not (s.data_dir / MANIFEST).exists():
        raise RunError(f"{s.data_dir} has no dataset")
    launch.remove_own(s.outputs)
    launch.claim(s.outputs)
    step(f"building one random Llama (hidden {s.hidden}, {s.layers} layers) for every arm")
    init = launch.build_model(
        s.data_dir,
        s.outputs / "init",
        s.outputs / "build.log",
        hidden=s.hidden,
        layers=s.layers,
        vocab_size=s.vocab_size,
        seed=0,
    )
    rows: dict[str, dict] = {"untrained": score(s, init, s.outputs / "untrained", step, "untrained")}
    forward = text_size(train_file(s.data_dir, REFERENCE))
    for arm in s.arms:
        folder = launch.claim(s.outputs / arm.replace("+", "_"))
        config = write_config(arm_config(s, arm, init, folder / "model"), folder / "config.yml")
        step(f"{arm}: axolotl train, {s.multi5_epochs} epochs (log: {folder / 'train.log'})")
        if not launch.train(config, folder / "model", folder / "train.log"):
            raise RunError(f"training {arm} failed; see {folder / 'train.log'}")
        rows[arm] = score(s, folder / "model", folder / "lm_eval", step, arm)
        extra = sum(text_size(train_file(s.data_dir, name)) for name in ARMS[arm])
        rows[arm] |= {"extra": list(ARMS[arm]), "extra_text_share": round(extra / forward, 3)}
    path = write_results(rows, s)
    step(f"done: {path}")
    return path


def score(s: ReversalSettings, model_dir: Path, out: Path, step, label: str) -> dict:
    step(f"{label}: lm-eval")
    row = lm_eval_row(model_dir, str(model_dir), s.data_dir, out, SCORES, label)
    sc = row["scores"]
    step(
        f"{label}: reverse heldout {sc['reverse_heldout']:.3f} (four-option), {sc['reverse_gen_heldout']:.3f} "
        f"(exact); reverse train {sc['reverse_train']:.3f}; forward extraction {sc['heldout_exact']:.3f}"
    )
    return row
