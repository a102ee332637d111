#!/usr/bin/env python
"""Benchmark of training throughput: the demo's ``axolotl train`` against a plain PyTorch loop.

Usage:
    python benchmarks/bench_train.py            # the demo's people and epochs

Builds the demo's data and model (a random Llama, hidden 128, 4 layers), runs the demo's
own config (axolotl_configs/tiny-full.yml as `make demo` derives it, evaluations and the plugin
included) for ``--epochs`` epochs, then, in the same run, a plain PyTorch loop (AdamW at
the same rate) on the very same tokens (Axolotl's prepared training rows, concatenated and
cut into rows of ``sequence_len``, the batch of ``micro_batch_size`` rows) for the same
epochs. Throughput is non-padding tokens that receive a loss per second of training (for
Axolotl: its ``train_runtime``, evaluations included). Prints both and the ratio.
Writes benchmarks/results/train.json and train.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("AXOLOTL_DO_NOT_TRACK", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

RESULTS = Path(__file__).resolve().parent / "results"


def prepared_dir(cfg: dict) -> Path:
    """The folder of Axolotl's prepared (tokenized) training rows."""
    return next(p for p in Path(cfg["dataset_prepared_path"]).rglob("dataset_info.json")).parent


def axolotl_run(cfg: dict, work: Path) -> tuple[float, int, dict]:
    """(train_runtime, useful tokens per epoch, the final log line) of ``axolotl train``."""
    from datasets import load_from_disk

    from engram_run.runs import launch
    from engram_run.runs.recipes import write_config

    config = write_config(cfg, work / "config.yml")
    if not launch.train(config, Path(cfg["output_dir"]), work / "train.log"):
        raise SystemExit(f"axolotl train failed; see {work / 'train.log'}")
    # The trainer's summary line (checkpoints are saved before it): {'train_runtime': '40.1', ...}
    log = (work / "train.log").read_text()
    final = dict(re.findall(r"'(train_\w+)': '([\d.]+)'", log))
    final["evaluation_seconds"] = sum(float(s) for s in re.findall(r"'eval_runtime': '([\d.]+)'", log))
    tokens = sum(len(ids) for ids in load_from_disk(str(prepared_dir(cfg)))["input_ids"])
    return float(final["train_runtime"]), round(tokens * (1 - cfg.get("val_set_size", 0))), final


def plain_loop(model_dir: Path, prepared: Path, cfg: dict, epochs: int) -> tuple[float, int]:
    """(seconds, useful tokens) of a plain loop on packed rows of the same tokens."""
    import torch
    from datasets import load_from_disk
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    rows = list(load_from_disk(str(prepared))["input_ids"])
    random.Random(0).shuffle(rows)
    rows = rows[: round(len(rows) * (1 - cfg.get("val_set_size", 0)))]
    flat = [t for r in rows for t in r]
    width, batch = cfg["sequence_len"], cfg["micro_batch_size"]
    packed = torch.tensor(flat[: len(flat) // width * width]).view(-1, width)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["learning_rate"], weight_decay=cfg.get("weight_decay", 0.0))
    start = time.perf_counter()
    for _ in range(epochs):
        for i in torch.randperm(len(packed)).split(batch):
            ids = packed[i]
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    return time.perf_counter() - start, packed.numel() * epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=None, help="default: the demo's")
    args = parser.parse_args()

    import torch

    from engram_run.demo import DemoSettings, demo_config
    from engram_run.runs import launch
    from engram_run.runs.tiny import build_tiny_model

    if args.epochs is None:
        args.epochs = DemoSettings.epochs
    s = DemoSettings(people=args.people, epochs=args.epochs)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        launch.generate_data(work / "data", s.people, seed=0)
        init = build_tiny_model(
            work / "data", work / "init", hidden=s.hidden, layers=s.layers, vocab_size=s.vocab_size, seed=0
        )
        cfg = demo_config(s, work / "data", init, work / "model")
        axolotl_s, per_epoch, final = axolotl_run(cfg, work)
        axolotl_tokens = per_epoch * args.epochs
        plain_s, plain_tokens = plain_loop(init, prepared_dir(cfg), cfg, args.epochs)
    a, p = axolotl_tokens / axolotl_s, plain_tokens / plain_s
    result = {
        "people": args.people,
        "epochs": args.epochs,
        "config": {
            k: cfg.get(k)
            for k in (
                "sequence_len",
                "sample_packing",
                "micro_batch_size",
                "num_epochs",
                "val_set_size",
                "evals_per_epoch",
                "engram_eval_samples",
            )
        },
        "axolotl": {"seconds": round(axolotl_s, 2), "useful_tokens": axolotl_tokens, "tokens_per_s": round(a)},
        "plain_loop": {"seconds": round(plain_s, 2), "useful_tokens": plain_tokens, "tokens_per_s": round(p)},
        "ratio": round(a / p, 3),
        "axolotl_evaluation_seconds": round(final["evaluation_seconds"], 2),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU threads, torch {torch.__version__}",
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "train.json").write_text(json.dumps(result, indent=2) + "\n")
    md = [
        "# Training throughput: the demo's axolotl train vs a plain PyTorch loop",
        "",
        "| path | seconds | useful tokens | tokens/s |",
        "| --- | ---: | ---: | ---: |",
        f"| `axolotl train` (the demo's config, evaluations and plugin included) | {axolotl_s:.1f} | "
        f"{axolotl_tokens:,} | {a:,.0f} |",
        f"| plain PyTorch loop, packed rows of {cfg['sequence_len']} tokens | {plain_s:.1f} | {plain_tokens:,} | {p:,.0f} |",
        "",
        f"Ratio: {a / p:.2f} (target: at least 0.7). {args.people} people, {args.epochs} epochs; {result['machine']}.",
        f"Of Axolotl's time, its {args.epochs + 1} evaluations (validation loss and the plugin's recall) took "
        f"{final['evaluation_seconds']:.1f} s ({final['evaluation_seconds'] / axolotl_s:.0%}).",
    ]
    (RESULTS / "train.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
