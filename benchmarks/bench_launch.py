#!/usr/bin/env python
"""Benchmark of a short run's fixed costs: how `axolotl train` is launched on a CPU, the
plugin's early gc.freeze, and a batch of runs in engram_run's shared worker.

Usage:
    python benchmarks/bench_launch.py            # 600 people, 2 steps, 3 repeats
    python benchmarks/bench_launch.py --part batch

A short run (the demo's config on a 600-person population, 2 steps: what a sweep point,
a test or a smoke run pays before its first real step) timed end to end, as a process, three
ways on the same data and model:

- ``axolotl train CONFIG``: Axolotl's default, `accelerate launch` of a second Python
  process (the obvious way, and engram_run's on a GPU);
- ``axolotl train --launcher python CONFIG``: training in Axolotl's own process
  (engram_run's choice for one process without CUDA);
- the same with ``engram_gc_freeze: false``: every gc.collect() that Axolotl's packing
  sampler calls while it counts the steps walks all the libraries' objects again.

Median of ``--repeats`` runs each (interleaved).

A batch (what a study, ``make train-all`` or a sweep does): ``--batch`` such runs, each
trained and then scored by lm-eval (``bios_qa``, 20 questions a field), through
``launch.train`` and ``evaluation.evaluate`` two ways: a process per command (``ENGRAM_WORKER=0``,
the obvious way) and all of them in one worker process (engram_run's default on a CPU, the
worker's start included). Median of ``--batch-repeats`` batches each (interleaved).

Writes benchmarks/results/launch.json and launch.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("AXOLOTL_DO_NOT_TRACK", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

RESULTS = Path(__file__).resolve().parent / "results"
WAYS = {
    "accelerate": ("`axolotl train CONFIG` (accelerate launch)", ["train"], {}),
    "python": ("`axolotl train --launcher python CONFIG`", ["train", "--launcher", "python"], {}),
    "python_no_freeze": (
        "the same, `engram_gc_freeze: false`",
        ["train", "--launcher", "python"],
        {"engram_gc_freeze": False},
    ),
}


def timed_run(base: dict, extra: dict, argv: list[str], work: Path) -> float:
    from engram_run.runs import launch
    from engram_run.runs.recipes import write_config

    work.mkdir(parents=True)
    cfg = {**base, **extra, "output_dir": str(work / "model"), "dataset_prepared_path": str(work / "prepared")}
    config = write_config(cfg, work / "config.yml")
    start = time.perf_counter()
    with (work / "train.log").open("w") as log:
        code = subprocess.call(
            [launch.tool("axolotl"), *argv, str(config)], stdout=log, stderr=subprocess.STDOUT, env=launch.tool_env()
        )
    if code != 0:
        raise SystemExit(f"axolotl train failed; see {work / 'train.log'}")
    return time.perf_counter() - start


BATCH_WAYS = {
    "processes": "a process per `axolotl train` and per `engram-eval` (`ENGRAM_WORKER=0`)",
    "worker": "every run in engram_run's shared worker (the default on a CPU)",
}


def timed_batch(base: dict, data: Path, runs: int, use_worker: bool, work: Path) -> float:
    """``runs`` short runs, each trained and scored, as ``engram_run`` does them; seconds."""
    from engram_run.runs import evaluation, launch, worker
    from engram_run.runs.recipes import write_config

    os.environ[worker.WORKER_ENV] = "1" if use_worker else "0"
    start = time.perf_counter()
    for j in range(runs):
        run = work / f"run{j}"
        run.mkdir(parents=True)
        cfg = {**base, "output_dir": str(run / "model"), "dataset_prepared_path": str(run / "prepared")}
        config = write_config(cfg, run / "config.yml")
        if not launch.train(config, run / "model", run / "train.log"):
            raise SystemExit(f"axolotl train failed; see {run / 'train.log'}")
        if not evaluation.evaluate(
            f"pretrained={run / 'model'},dtype=float32", data, run / "lm_eval", ("bios_qa",), 20
        ):
            raise SystemExit(f"lm-eval failed; see {run / 'lm_eval' / 'eval.log'}")
    worker.SHARED.close()  # its end is part of the batch
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=600)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=3, help="runs in a batch")
    parser.add_argument("--batch-repeats", type=int, default=2)
    parser.add_argument("--part", choices=("all", "launch", "batch"), default="all")
    args = parser.parse_args()

    import torch
    from tqdm.auto import tqdm

    from engram_run.demo import DemoSettings, demo_config
    from engram_run.runs import launch
    from engram_run.runs.tiny import build_tiny_model

    s = DemoSettings(people=args.people)
    ways = WAYS if args.part != "batch" else {}
    batch_ways = BATCH_WAYS if args.part != "launch" else {}
    seconds: dict[str, list[float]] = {way: [] for way in [*ways, *batch_ways]}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        launch.generate_data(work / "data", s.people, seed=0)
        init = build_tiny_model(
            work / "data", work / "init", hidden=s.hidden, layers=s.layers, vocab_size=s.vocab_size, seed=0
        )
        base = demo_config(s, work / "data", init, work / "model")
        base.update(max_steps=args.steps, warmup_steps=0)
        runs = [(i, way) for i in range(args.repeats) for way in ways]
        for i, way in tqdm(runs, desc="runs", unit="run"):
            _, argv, extra = WAYS[way]
            seconds[way].append(timed_run(base, extra, argv, work / f"{way}-{i}"))
        batches = [(i, way) for i in range(args.batch_repeats) for way in batch_ways]
        for i, way in tqdm(batches, desc="batches", unit="batch"):
            seconds[way].append(timed_batch(base, work / "data", args.batch, way == "worker", work / f"{way}-b{i}"))
    median = {way: statistics.median(v) for way, v in seconds.items()}
    result = {
        "people": args.people,
        "steps": args.steps,
        "repeats": args.repeats,
        "batch": args.batch,
        "batch_repeats": args.batch_repeats,
        "seconds": {way: [round(x, 2) for x in v] for way, v in seconds.items()},
        "median_seconds": {way: round(m, 2) for way, m in median.items()},
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU threads, torch {torch.__version__}",
    }
    md = ["# A short run's fixed costs: launcher, early gc.freeze, a batch in one worker", ""]
    if ways:
        result["python_over_accelerate"] = round(median["python"] / median["accelerate"], 3)
        result["freeze_over_no_freeze"] = round(median["python"] / median["python_no_freeze"], 3)
        md += [
            f"The demo's config, {args.people} people, {args.steps} steps; median of {args.repeats} runs, wall "
            "seconds of the whole `axolotl train` process.",
            "",
            "| way | seconds |",
            "| --- | ---: |",
            *(f"| {WAYS[way][0]} | {median[way]:.1f} |" for way in WAYS),
            "",
            f"In-process over accelerate launch: {result['python_over_accelerate']:.2f}; with the plugin's "
            f"gc.freeze over without: {result['freeze_over_no_freeze']:.2f}.",
            "",
        ]
    if batch_ways:
        result["worker_over_processes"] = round(median["worker"] / median["processes"], 3)
        md += [
            f"A batch of {args.batch} such runs, each trained and scored by lm-eval (`bios_qa`, 20 questions a "
            f"field); median of {args.batch_repeats} batches, wall seconds.",
            "",
            "| way | seconds |",
            "| --- | ---: |",
            *(f"| {BATCH_WAYS[way]} | {median[way]:.1f} |" for way in BATCH_WAYS),
            "",
            f"Worker over a process per command: {result['worker_over_processes']:.2f}.",
            "",
        ]
    md.append(f"{result['machine']}.")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / ("launch.json" if args.part == "all" else f"launch_{args.part}.json")).write_text(
        json.dumps(result, indent=2) + "\n"
    )
    (RESULTS / ("launch.md" if args.part == "all" else f"launch_{args.part}.md")).write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
