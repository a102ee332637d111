#!/usr/bin/env python
"""Benchmark of the bios_qa tasks: questions per second through lm-eval's hf backend.

Usage:
    python benchmarks/bench_eval.py --num-people 2000 --limit 200

Builds a fixed dataset and a fixed tiny random Llama (seeded, local), runs
``bios_qa`` through ``lm_eval.simple_evaluate`` on the first ``--limit`` questions of each
field, and reports questions per second. Later work (the plugin's in-training evaluator)
is compared against this number on the same model and data.
Writes benchmarks/results/eval.json and eval.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-people", type=int, default=2000)
    parser.add_argument("--limit", type=int, default=200, help="questions per field")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    import torch
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from engram_plugin.data import synthesize, write_dataset
    from engram_plugin.tiny import build_tiny_model
    from lm_eval_tasks import TASKS_DIR

    torch.set_num_threads(os.cpu_count() or 1)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "bios"
        write_dataset(synthesize(args.num_people, seed=0), data)
        model = build_tiny_model(data, Path(tmp) / "model", hidden=128, layers=4, seed=0)
        tm = TaskManager(include_path=str(TASKS_DIR), metadata={"data_dir": str(data)})
        start = time.perf_counter()
        out = simple_evaluate(
            model="hf",
            model_args=f"pretrained={model},dtype=float32",
            tasks=["bios_qa"],
            limit=args.limit,
            batch_size=args.batch_size,
            device="cpu",
            task_manager=tm,
        )
        seconds = time.perf_counter() - start
    questions = sum(out["n-samples"][t]["effective"] for t in out["n-samples"])
    result = {
        "benchmark": "bios_qa through lm-eval (hf backend)",
        "model": "tiny random Llama: hidden 128, 4 layers, 4 heads, BPE vocab 4096",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU threads, torch {torch.__version__}",
        "num_people": args.num_people,
        "questions": questions,
        "seconds": round(seconds, 2),
        "questions_per_second": round(questions / seconds, 1),
        "overall_acc": out["results"]["bios_qa"]["acc,none"],
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
    md = [
        "# bios_qa evaluation benchmark",
        "",
        "| evaluator | questions | seconds | questions/s |",
        "| --- | ---: | ---: | ---: |",
        f"| lm-eval `bios_qa` (hf backend, batch {args.batch_size}) | {questions} | {result['seconds']} | {result['questions_per_second']} |",
        "",
        f"Model: {result['model']}; {result['machine']}.",
    ]
    (RESULTS / "eval.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
