"""``make capacity``: knowledge capacity (Physics of LM 3.3) on a CPU. Tiny Llamas of a few
widths, each trained with ``axolotl train`` (the demo's recipe) on populations of a few
sizes, then measured with ``engram-capacity`` (every person, attributes only), and the same
models untrained. Writes ``results/capacity/capacity.{json,md,png}``: bits stored against
parameters, per population, beside the population's maximum and the paper's 2 bits per
parameter.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from engram_run.runs import launch
from engram_run.runs.recipes import RECIPES_DIR, RunError, derive_config, write_config
from engram_run.runs.tiny import build_tiny_model

PAPER_BITS_PER_PARAM = 2.0


@dataclass(frozen=True)
class CapacitySettings:
    people: tuple[int, ...] = (50, 200)
    hidden: tuple[int, ...] = (32, 64, 128)
    layers: int = 2
    epochs: int = 20
    learning_rate: float = 3e-3
    micro_batch: int = 8
    vocab_size: int = 1024
    data_dir: Path = Path("data/capacity")
    outputs: Path = Path("outputs/capacity")
    results: Path = Path("results/capacity")


def measure(model: Path, data: Path, out: Path) -> dict:
    """``engram-capacity`` on ``model`` in this process (one import of transformers for the whole
    study): Physics of LM 3.3's bound on every person's first bioS_multi5_permutes biography
    (what the model trained on), and beside it the bits extractable through QA (``qa_*``). Its
    noise goes to ``out``.log, its files to ``out``."""
    with launch.output_to(out.parent / f"{out.name}.log"):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from engram_plugin.capacity import CapacityEvaluator
        from engram_plugin.capacity_bound import BoundEvaluator, bound_markdown

        tok, lm = AutoTokenizer.from_pretrained(model), AutoModelForCausalLM.from_pretrained(model)
        result = BoundEvaluator(data, tok, "bioS_multi5_permutes").evaluate(lm)
        qa = CapacityEvaluator(data, tok, "all", batch_size=8, names=False).evaluate(lm)
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
            print(f"[capacity {time.perf_counter() - start:5.0f}s] {n} people, hidden {h}: build, train, measure",
                  flush=True)  # fmt: skip
            with launch.output_to(run / "build.log"):  # in this process: one import for the study
                build_tiny_model(data, run / "init", hidden=h, layers=s.layers, vocab_size=s.vocab_size, seed=0)
            overrides = {"base_model": str(run / "init"), "num_epochs": s.epochs, "learning_rate": s.learning_rate,
                         "micro_batch_size": s.micro_batch}  # fmt: skip
            config = write_config(derive_config(RECIPES_DIR / "tiny.yml", data, run / "model", None, overrides),
                                  run / "config.yml")  # fmt: skip
            if not launch.train(config, run / "model", run / "train.log"):
                raise RunError(f"training failed; see {run / 'train.log'}")
            trained, untrained = measure(run / "model", data, run / "capacity"), measure(run / "init", data,
                                                                                          run / "capacity-init")  # fmt: skip
            rows.append({"people": n, "hidden": h, "layers": s.layers, "params": trained["params"],
                         "non_embedding_params": trained["non_embedding_params"], "bits": trained["bits"],
                         "max_bits": trained["max_bits"], "share": trained["share"],
                         "bits_per_param": trained["bits_per_param"],
                         "bits_per_non_embedding_param": trained["bits_per_non_embedding_param"],
                         "untrained_bits": untrained["bits"], "qa_bits": trained["qa_bits"],
                         "qa_max_bits": trained["qa_max_bits"], "untrained_qa_bits": untrained["qa_bits"]})  # fmt: skip
    return write(rows, s, time.perf_counter() - start)


def write(rows: list[dict], s: CapacitySettings, seconds: float) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    launch.remove_own(s.results)
    out = launch.claim(s.results)
    (out / "capacity.json").write_text(json.dumps({"settings": {k: str(v) for k, v in vars(s).items()},
                                                   "seconds": seconds, "runs": rows}, indent=2) + "\n")  # fmt: skip
    frame = pd.DataFrame(rows)
    frame.to_csv(out / "capacity.csv", index=False)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for i, (n, group) in enumerate(frame.groupby("people")):
        left.plot(group["params"], group["bits"], "o-", color=f"C{i}", label=f"{n} people: trained")
        left.plot(group["params"], group["untrained_bits"], "x:", color=f"C{i}", label=f"{n} people: untrained")
        left.axhline(group["max_bits"].iloc[0], color=f"C{i}", lw=0.8, ls="--", label=f"{n} people: every fact")
        right.plot(group["params"], group["bits_per_param"], "o-", color=f"C{i}", label=f"{n} people")
    right.axhline(PAPER_BITS_PER_PARAM, color="red", lw=0.8, ls=":", label="Physics of LM 3.3: 2 bits/param")
    for ax, label in ((left, "bits of knowledge stored"), (right, "bits per parameter")):
        ax.set_xscale("log")
        ax.set_xlabel("parameters")
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    right.set_yscale("log")
    fig.tight_layout()
    fig.savefig(out / "capacity.png", dpi=120)
    plt.close(fig)
    shown = frame[["people", "hidden", "params", "bits", "max_bits", "share", "bits_per_param",
                   "bits_per_non_embedding_param", "untrained_bits", "qa_bits", "qa_max_bits"]]  # fmt: skip
    md = ["# Knowledge capacity (Physics of LM 3.3) on a CPU", "",
          f"Tiny Llamas ({s.layers} layers) trained {s.epochs} epochs with `axolotl train` on each population "
          f"(bioS_multi5_permutes + train QA), measured on every person ({seconds:.0f} s): `bits` is Physics of LM 3.3's "
          "bit-complexity lower bound from the losses of the name and value tokens in each person's first biography "
          "(`engram-capacity`'s default); `qa_bits`, the bits extractable through QA prompts (`--measure qa`). The "
          "paper's 2 bits per parameter holds when the data holds more bits than the model has parameters and each "
          "fact was seen ~1,000 times; these runs are far from both.", "",
          shown.to_markdown(index=False, floatfmt=".4g"), "", "![capacity](capacity.png)", ""]  # fmt: skip
    (out / "capacity.md").write_text("\n".join(md))
    return out / "capacity.md"
