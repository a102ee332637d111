#!/usr/bin/env python
"""Benchmark of training the real pretrained model: the recipe's ``axolotl train`` against a plain
PyTorch loop on the same model and tokens, and the FLOP/s both reach against this machine's
measured matmul peak in the dtype used.

Usage:
    python benchmarks/bench_pretrained.py                  # fp32 and bf16 autocast, 6 steps each
    python benchmarks/bench_pretrained.py --dtypes bf16 --steps 10

Needs ``make pretrained`` (models/smollm2-135m). For each dtype: ``axolotl_configs/smollm2-135m-full.yml``
as written (packed rows of 512 tokens, micro batch 8, AdamW) with ``max_steps`` set and no
evaluation or checkpoint (its gradient checkpointing kept, in both paths) (``bf16``: ``bf16: true`` with the plugin's fp32 master weights, on a
CPU through transformers' ``use_cpu``), then a plain loop (the same AdamW, the same autocast) on
Axolotl's own prepared rows, concatenated and cut into rows of 512, for the same steps. Both
times include the first step. FLOPs per token: PaLM's 6N + 12·L·d·T (N the parameters in
matmuls, here all of them, the tied embedding counted once as the LM head; L layers, d width,
T the sequence length); the peak: the best of 2048³ matmuls in that dtype.

Writes benchmarks/results/pretrained.json and pretrained.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("AXOLOTL_DO_NOT_TRACK", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
RECIPE = ROOT / "axolotl_configs" / "smollm2-135m-full.yml"


def matmul_peak(dtype, n: int = 2048, repeats: int = 10) -> float:
    """FLOP/s of the best of ``repeats`` n x n matmuls in ``dtype``."""
    import torch

    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def flops_per_token(model_dir: Path, seq: int) -> float:
    from transformers import AutoConfig

    from engram_run.runs.memory import shape_of

    config = AutoConfig.from_pretrained(model_dir)
    params = shape_of(config).params
    return 6 * params + 12 * config.num_hidden_layers * config.hidden_size * seq


def axolotl_steps(cfg: dict, work: Path) -> tuple[float, dict]:
    """(train_runtime, the final log line) of ``axolotl train``."""
    from engram_run.runs import launch
    from engram_run.runs.recipes import write_config

    config = write_config(cfg, work / "config.yml")
    if not launch.train(config, Path(cfg["output_dir"]), work / "train.log"):
        raise SystemExit(f"axolotl train failed; see {work / 'train.log'}")
    log = (work / "train.log").read_text()
    final = dict(re.findall(r"'(train_\w+)': '([\d.]+)'", log))
    return float(final["train_runtime"]), final


def plain_loop(model_dir: Path, prepared: Path, cfg: dict, steps: int, bf16: bool) -> float:
    """Seconds of a plain loop of ``steps`` steps on packed rows of Axolotl's prepared tokens."""
    import torch
    from datasets import load_from_disk
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    flat = [t for r in load_from_disk(str(prepared))["input_ids"] for t in r]
    width, batch = cfg["sequence_len"], cfg["micro_batch_size"]
    packed = torch.tensor(flat[: len(flat) // width * width]).view(-1, width)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if cfg.get("gradient_checkpointing"):  # as the recipe trains
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})  # Axolotl's default
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["learning_rate"], weight_decay=cfg.get("weight_decay", 0.0))
    order = torch.randperm(len(packed)).repeat(steps * batch // len(packed) + 1)
    start = time.perf_counter()
    for s in range(steps):
        ids = packed[order[s * batch : (s + 1) * batch]]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "smollm2-135m")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--people", type=int, default=200)
    parser.add_argument("--dtypes", default="fp32,bf16")
    args = parser.parse_args()
    if not (args.model / "config.json").exists():
        raise SystemExit(f"bench_pretrained.py: {args.model} is not a model folder; run `make pretrained` first")

    import torch

    from engram_run.runs import launch
    from engram_run.runs.recipes import derive_config

    per_token = None
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        launch.generate_data(work / "data", args.people, seed=0)
        for name in args.dtypes.split(","):
            bf16 = name == "bf16"
            out = work / name
            cfg = derive_config(
                RECIPE,
                work / "data",
                out / "model",
                None,
                {
                    "base_model": str(args.model),
                    "max_steps": args.steps,
                    "val_set_size": 0,
                    "save_strategy": "no",
                    "engram_recall_eval": False,
                    "engram_save_best": False,
                    "bf16": bf16,
                    "engram_fp32_master_weights": bf16,
                    "logging_steps": 1,
                    "warmup_steps": 0,
                },
            )
            for key in ("evals_per_epoch", "saves_per_epoch", "metric_for_best_model", "greater_is_better"):
                cfg.pop(key, None)
            out.mkdir(parents=True)
            axolotl_s, final = axolotl_steps(cfg, out)
            prepared = next(Path(cfg["dataset_prepared_path"]).rglob("dataset_info.json")).parent
            plain_s = plain_loop(args.model, prepared, cfg, args.steps, bf16)
            tokens = args.steps * cfg["micro_batch_size"] * cfg["sequence_len"]
            per_token = per_token or flops_per_token(args.model, cfg["sequence_len"])
            peak = matmul_peak(torch.bfloat16 if bf16 else torch.float32)
            a, p = tokens / axolotl_s, tokens / plain_s
            rows[name] = {
                "steps": args.steps,
                "tokens": tokens,
                "axolotl": {"seconds": round(axolotl_s, 2), "tokens_per_s": round(a, 1)},
                "plain_loop": {"seconds": round(plain_s, 2), "tokens_per_s": round(p, 1)},
                "ratio": round(a / p, 3),
                "matmul_peak_gflops": round(peak / 1e9, 1),
                "axolotl_gflops": round(a * per_token / 1e9, 1),
                "plain_gflops": round(p * per_token / 1e9, 1),
                "axolotl_share_of_peak": round(a * per_token / peak, 3),
            }
            print(f"{name}: axolotl {a:.0f} tok/s, plain {p:.0f} tok/s, ratio {a / p:.2f}", flush=True)
    machine = f"{platform.machine()}, {os.cpu_count()} CPU threads, torch {torch.__version__}"
    result = {"model": str(args.model), "flops_per_token": per_token, "machine": machine, "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "pretrained.json").write_text(json.dumps(result, indent=2) + "\n")
    md = [
        "# Training SmolLM2-135M: the recipe's axolotl train vs a plain PyTorch loop",
        "",
        f"`smollm2-135m-full.yml` as written (packed rows of 512 tokens, micro batch 8), {args.steps} steps, no "
        f"evaluation; the plain loop on the same prepared tokens, the same AdamW and autocast. FLOPs per token "
        f"{per_token / 1e9:.2f} G (6N + 12·L·d·T). {machine}.",
        "",
        "| dtype | axolotl tokens/s | plain loop tokens/s | ratio | axolotl GFLOP/s | matmul peak GFLOP/s | share of peak |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in rows.items():
        md.append(
            f"| {name} | {r['axolotl']['tokens_per_s']:,.0f} | {r['plain_loop']['tokens_per_s']:,.0f} | "
            f"{r['ratio']:.2f} | {r['axolotl_gflops']:,.0f} | {r['matmul_peak_gflops']:,.0f} | "
            f"{r['axolotl_share_of_peak']:.0%} |"
        )
    md += ["", "Target: a ratio of at least 0.9 (Axolotl adds no more than a tenth to a plain loop)."]
    (RESULTS / "pretrained.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
