#!/usr/bin/env python
"""Benchmark of recall evaluation: lm-eval's bios_qa against the plugin's evaluator.

Usage:
    python benchmarks/bench_eval.py --num-people 2000 --limit 200

Builds a fixed dataset and a fixed tiny random Llama (seeded, local), then scores the
first ``--limit`` questions of each field twice on the same model and data:
``lm_eval.simple_evaluate(tasks=["bios_qa"])`` (hf backend) and the engram plugin's
``RecallEvaluator`` (shared question prefix, batched). Reports questions per second,
the ratio, and whether the accuracies are identical.
Writes benchmarks/results/eval.json and eval.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
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
    parser.add_argument("--repeats", type=int, default=3, help="runs of each; the median is reported")
    args = parser.parse_args()

    import torch
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engram_data.contract import FIELDS
    from engram_data.population import synthesize
    from engram_data.write import write_dataset
    from engram_eval.recall import RecallEvaluator
    from engram_run.runs.tiny import build_tiny_model
    from lm_eval_tasks import TASKS_DIR

    torch.set_num_threads(os.cpu_count() or 1)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "bios"
        write_dataset(synthesize(args.num_people, seed=0), data)
        model = build_tiny_model(data, Path(tmp) / "model", hidden=128, layers=4, seed=0)
        tm = TaskManager(include_path=str(TASKS_DIR), metadata={"data_dir": str(data)})
        lm_eval_times, engram_times = [], []
        for _ in range(args.repeats):
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
            lm_eval_times.append(time.perf_counter() - start)

        tokenizer = AutoTokenizer.from_pretrained(model)
        lm = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
        # In training the questions are tokenized once; each evaluation is evaluate().
        start = time.perf_counter()
        evaluator = RecallEvaluator(data, tokenizer, limit=args.limit, batch_size=args.batch_size)
        setup_seconds = time.perf_counter() - start
        for _ in range(args.repeats):
            start = time.perf_counter()
            ours = evaluator.evaluate(lm)["train"]
            engram_times.append(time.perf_counter() - start)
    seconds, engram_seconds = statistics.median(lm_eval_times), statistics.median(engram_times)
    questions = sum(out["n-samples"][t]["effective"] for t in out["n-samples"])
    identical = all(ours[f] == out["results"][f"bios_qa_{f}"]["acc,none"] for f in FIELDS)
    result = {
        "benchmark": "bios_qa through lm-eval (hf backend)",
        "model": "tiny random Llama: hidden 128, 4 layers, 4 heads, BPE vocab 4096",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU threads, torch {torch.__version__}",
        "num_people": args.num_people,
        "questions": questions,
        "seconds": round(seconds, 2),
        "questions_per_second": round(questions / seconds, 1),
        "overall_acc": out["results"]["bios_qa"]["acc,none"],
        "engram_seconds": round(engram_seconds, 2),
        "engram_setup_seconds": round(setup_seconds, 2),
        "repeats": args.repeats,
        "engram_questions_per_second": round(questions / engram_seconds, 1),
        "engram_overall_acc": ours["overall"],
        "speedup": round(seconds / engram_seconds, 2),
        "identical_accuracy": identical,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
    md = [
        "# bios_qa evaluation benchmark",
        "",
        "| evaluator | questions | seconds | questions/s |",
        "| --- | ---: | ---: | ---: |",
        f"| lm-eval `bios_qa` (hf backend, batch {args.batch_size}) | {questions} | {result['seconds']} | {result['questions_per_second']} |",
        f"| engram plugin `RecallEvaluator` (batch {args.batch_size}) | {questions} | {result['engram_seconds']} | {result['engram_questions_per_second']} |",
        "",
        f"Median of {args.repeats} runs each. The plugin tokenizes its questions once per training run "
        f"({result['engram_setup_seconds']} s, not counted); lm-eval rebuilds its tasks on every call.",
        "",
        f"Speed-up: {result['speedup']}x; per-field accuracies identical: {identical} "
        f"(overall {result['overall_acc']:.4f} vs {result['engram_overall_acc']:.4f}).",
        "",
        f"Model: {result['model']}; {result['machine']}.",
    ]
    (RESULTS / "eval.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
