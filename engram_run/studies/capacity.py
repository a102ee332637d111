"""``make capacity``: knowledge capacity (Physics of LM 3.3) on a CPU, in the paper's regime
as far as a CPU reaches: tiny Llamas with fewer parameters than the population's bits,
trained with ``axolotl train`` (the demo's recipe, on the five permuted biographies of every
person alone) for 20 epochs, i.e. 100 exposures of each fact, then measured with
``engram-capacity``'s bound (every person) and the same models untrained. Writes
``results/capacity/capacity.{json,csv,md,png}``: bits stored and bits per parameter, beside
the population's bits and the paper's figures (about 1 bit per parameter at 100 exposures,
2 at 1,000).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from engram_run.runs import launch, worker
from engram_run.runs.recipes import RECIPES_DIR, RunError, derive_config, write_config
from engram_run.runs.tiny import build_tiny_model

# Physics of LM 3.3's text: 2 bits per parameter once each fact was seen 1,000 times; about
# 1 bit per parameter (GPT-2) at 100 exposures (its scaling laws at 100 exposures).
PAPER_BITS_PER_PARAM = {1000: 2.0, 100: 1.0}
BIOGRAPHIES_A_PERSON = 5  # bioS_multi5_permutes: an epoch shows each fact five times


@dataclass(frozen=True)
class CapacitySettings:
    people: tuple[int, ...] = (1000,)
    hidden: tuple[int, ...] = (16, 32, 64)
    layers: int = 2
    epochs: int = 20  # x 5 biographies a person: 100 exposures of each fact
    learning_rate: float = 3e-3
    micro_batch: int = 16
    vocab_size: int = 1024
    qa_people: int = 50  # the QA measure (a softmax over every pool value) on the first people only
    data_dir: Path = Path("data/capacity")
    outputs: Path = Path("outputs/capacity")
    results: Path = Path("results/capacity")


def measure(model: Path, data: Path, out: Path, qa_people: int) -> dict:
    """``engram-capacity`` on ``model`` in this process (one import of transformers for the whole
    study): Physics of LM 3.3's bound on every person's first bioS_multi5_permutes biography
    (what the model trained on), and beside it the bits extractable through QA (``qa_*``) of the
    first ``qa_people`` people. Its noise goes to ``out``.log, its files to ``out``."""
    with worker.output_to(out.parent / f"{out.name}.log"):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from engram_eval.capacity_bound import BoundEvaluator, bound_markdown
        from engram_eval.capacity_qa import CapacityEvaluator

        tok, lm = AutoTokenizer.from_pretrained(model), AutoModelForCausalLM.from_pretrained(model)
        result = BoundEvaluator(data, tok, "bioS_multi5_permutes").evaluate(lm)
        qa = CapacityEvaluator(data, tok, "all", qa_people, batch_size=8, names=False).evaluate(lm)
    result |= {"qa_bits": qa["bits"], "qa_max_bits": qa["max_bits"]}
    out.mkdir(parents=True, exist_ok=True)
    (out / "capacity.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "capacity.md").write_text(bound_markdown(result, str(model), "bioS_multi5_permutes"))
    return result


def study(s: CapacitySettings) -> Path:
    start = time.perf_counter()
    rows = []
    for folder in (s.outputs, s.results):
        if folder.exists() and not (folder / launch.MARKER).exists():
            raise RunError(f"{folder} exists and was not written by engram_run; move it away or pass another folder")
    launch.remove_own(s.outputs)
    launch.claim(s.outputs)
    for n in s.people:
        data = s.data_dir / f"people-{n}"
        launch.generate_data(data, n, seed=0)
        for h in s.hidden:
            run = launch.claim(s.outputs / f"people{n}-hidden{h}")
            print(
                f"[capacity {time.perf_counter() - start:5.0f}s] {n} people, hidden {h}: build, train, measure",
                flush=True,
            )
            with worker.output_to(run / "build.log"):  # in this process: one import for the study
                build_tiny_model(data, run / "init", hidden=h, layers=s.layers, vocab_size=s.vocab_size, seed=0)
            overrides = {
                "base_model": str(run / "init"),
                "num_epochs": s.epochs,
                "learning_rate": s.learning_rate,
                "micro_batch_size": s.micro_batch,
            }
            cfg = derive_config(RECIPES_DIR / "tiny-full.yml", data, run / "model", None, overrides)
            cfg["datasets"] = cfg["datasets"][:1]  # the biographies alone: the bound reads them, not QA
            config = write_config(cfg, run / "config.yml")
            if not launch.train(config, run / "model", run / "train.log"):
                raise RunError(f"training failed; see {run / 'train.log'}")
            trained = measure(run / "model", data, run / "capacity", s.qa_people)
            untrained = measure(run / "init", data, run / "capacity-init", s.qa_people)
            rows.append(
                {
                    "people": n,
                    "hidden": h,
                    "layers": s.layers,
                    "exposures": s.epochs * BIOGRAPHIES_A_PERSON,
                    "params": trained["params"],
                    "data_bits_per_param": trained["max_bits"] / trained["params"],
                    "non_embedding_params": trained["non_embedding_params"],
                    "bits": trained["bits"],
                    "max_bits": trained["max_bits"],
                    "share": trained["share"],
                    "bits_per_param": trained["bits_per_param"],
                    "bits_per_non_embedding_param": trained["bits_per_non_embedding_param"],
                    "untrained_bits": untrained["bits"],
                    "qa_bits": trained["qa_bits"],
                    "qa_max_bits": trained["qa_max_bits"],
                    "untrained_qa_bits": untrained["qa_bits"],
                    # Where the bound starts counting: a model that knows the pools and no person.
                    "name_loss_nats": trained["name_loss_nats"],
                    "value_loss_nats": trained["value_loss_nats"],
                    "name_zero_nats": math.log(trained["N0"] - n),
                    "value_zero_nats": math.log(trained["S0"]),
                }
            )
    return write(rows, s, time.perf_counter() - start)


def write(rows: list[dict], s: CapacitySettings, seconds: float) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    launch.remove_own(s.results)
    out = launch.claim(s.results)
    (out / "capacity.json").write_text(
        json.dumps({"settings": {k: str(v) for k, v in vars(s).items()}, "seconds": seconds, "runs": rows}, indent=2)
        + "\n"
    )
    frame = pd.DataFrame(rows)
    frame.to_csv(out / "capacity.csv", index=False)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for i, (n, group) in enumerate(frame.groupby("people")):
        left.plot(group["params"], group["bits"], "o-", color=f"C{i}", label=f"{n} people: trained")
        left.plot(group["params"], group["untrained_bits"], "x:", color=f"C{i}", label=f"{n} people: untrained")
        left.axhline(group["max_bits"].iloc[0], color=f"C{i}", lw=0.8, ls="--", label=f"{n} people: every fact")
        right.plot(group["params"], group["bits_per_param"], "o-", color=f"C{i}", label=f"{n} people")
    for (exposures, ratio), style in zip(sorted(PAPER_BITS_PER_PARAM.items()), (":", "--")):
        right.axhline(
            ratio, color="red", lw=0.8, ls=style, label=f"Physics of LM 3.3, {exposures} exposures: {ratio:g} bit/param"
        )
    for ax, label in ((left, "bits of knowledge stored"), (right, "bits per parameter")):
        ax.set_xscale("log")
        ax.set_xlabel("parameters")
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    right.set_yscale("log")
    fig.tight_layout()
    fig.savefig(out / "capacity.png", dpi=120)
    plt.close(fig)
    shown = frame[
        [
            "people",
            "hidden",
            "params",
            "max_bits",
            "data_bits_per_param",
            "exposures",
            "bits",
            "share",
            "bits_per_param",
            "bits_per_non_embedding_param",
            "untrained_bits",
            "value_loss_nats",
            "value_zero_nats",
            "name_loss_nats",
            "name_zero_nats",
            "qa_bits",
            "qa_max_bits",
        ]
    ]
    exposures = sorted(set(frame["exposures"]))
    paper = [f"{PAPER_BITS_PER_PARAM[e]:g} bit/param at {e} exposures" for e in exposures if e in PAPER_BITS_PER_PARAM]
    md = [
        "# Knowledge capacity (Physics of LM 3.3) on a CPU",
        "",
        f"Tiny Llamas ({s.layers} layers) trained {s.epochs} epochs with `axolotl train` on the five permuted "
        f"biographies of every person (bioS_multi5_permutes: {', '.join(map(str, exposures))} exposures of each "
        f"fact), measured on every person ({seconds:.0f} s). `bits`: Physics of LM 3.3's bit-complexity lower bound "
        "from the losses of the name and value tokens in each person's first biography (`engram-capacity`'s "
        "default); `max_bits`: the population's bits (N0, S0 from the generator's pools); `data_bits_per_param` "
        "above 1 is the paper's regime (more bits than parameters). `value_loss_nats` / `name_loss_nats`: the "
        "model's loss (nats a person) on the attribute values and on the name in the biographies; the bound "
        "counts bits only below `value_zero_nats` = ln S0 and `name_zero_nats` = ln(N0 - N), what a model that "
        "knows the pools and no one person pays. `qa_bits` / `qa_max_bits`: bits extractable "
        f"through QA prompts (`--measure qa`) of the first {s.qa_people} people. The paper's figure for the same "
        f"measure and exposures: {'; '.join(paper) or 'none at this exposure count'} (its text).",
        "",
        shown.to_markdown(index=False, floatfmt=".4g"),
        "",
        "![capacity](capacity.png)",
        "",
    ]
    (out / "capacity.md").write_text("\n".join(md))
    return out / "capacity.md"
