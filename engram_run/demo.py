"""The main job end to end on a CPU: data, a local tiny Llama, ``axolotl train`` with the
plugin, lm-eval, report. Prints each step with the elapsed time, then where the report is."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engram_data.contract import CHANCE
from engram_run.reports.report import collect, report
from engram_run.runs import evaluation, launch
from engram_run.runs.recipes import RECIPES_DIR, RunError, derive_config, write_config
from engram_run.studies.common import timer


@dataclass(frozen=True)
class DemoSettings:
    """Sizes chosen so that a 2-core laptop CPU memorizes far above chance in minutes."""

    people: int = 200
    epochs: int = 10
    hidden: int = 128
    layers: int = 4
    vocab_size: int = 2048
    learning_rate: float = 2e-3
    micro_batch: int = 8  # packed rows of 256 tokens
    data_dir: Path = Path("data/demo")
    outputs: Path = Path("outputs")
    results: Path = Path("results")
    eval_limit: int | None = None


def demo_config(s: DemoSettings, data_dir: Path, init: Path, model_dir: Path) -> dict:
    """axolotl_configs/tiny-full.yml pointed at the data, the initial model and the output, with
    the demo's epochs, rate and batch (the benchmark trains this same config)."""
    overrides = {
        "base_model": str(init),
        "num_epochs": s.epochs,
        "learning_rate": s.learning_rate,
        "micro_batch_size": s.micro_batch,
    }
    return derive_config(RECIPES_DIR / "tiny-full.yml", data_dir, model_dir, None, overrides)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def demo(s: DemoSettings) -> Path:
    step = timer("demo")
    run = s.outputs / "demo"

    # Every folder it will replace must be its own, checked before any work.
    for folder in (run, s.results / "demo"):
        if folder.exists() and not (folder / launch.MARKER).exists():
            raise RunError(f"{folder} exists and was not written by the demo; move it away or pass --outputs/--results")
    step(f"generating {s.people} people into {s.data_dir}")
    launch.generate_data(s.data_dir, s.people, seed=0)  # replaces only a previous generate_data output
    launch.remove_own(run)
    launch.claim(run)
    step(f"building a random Llama (hidden {s.hidden}, {s.layers} layers) and its tokenizer from the data")
    launch.build_model(
        s.data_dir, run / "init", run / "build.log", hidden=s.hidden, layers=s.layers, vocab_size=s.vocab_size, seed=0
    )
    config = write_config(demo_config(s, s.data_dir, run / "init", run / "model"), run / "config.yml")
    step(f"axolotl train {config} (log: {run / 'train.log'})")
    if not launch.train(config, run / "model", run / "train.log"):
        raise RunError(f"training failed; see {run / 'train.log'}")
    step("lm-eval: " + ", ".join(evaluation.EVAL_TASKS))
    launch.remove_own(s.results / "demo")
    if not evaluation.evaluate(
        f"pretrained={run / 'model'},dtype=float32", s.data_dir, s.results / "demo", evaluation.EVAL_TASKS, s.eval_limit
    ):
        raise RunError(f"evaluation failed; see {s.results / 'demo' / 'eval.log'}")
    path = report(s.results, s.outputs, s.results / "report")
    row = next(r for r in collect(s.results, s.outputs) if r["run"] == "demo")
    step(
        f"done: recall on trained people {row['overall']:.3f}, heldout {row['heldout']:.3f}, "
        f"reverse {row['reverse']:.3f}; untrained {_fmt(row['untrained'])} (chance {CHANCE})"
    )
    print(f"report: {path}")
    return path
