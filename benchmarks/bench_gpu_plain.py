#!/usr/bin/env python
"""`make bench-gpu-plain`: `make bench-gpu`'s figures on a locked-down GPU box, with no Axolotl.

Usage:
    python benchmarks/bench_gpu_plain.py                     # on a GPU: every recipe that fits it
    python benchmarks/bench_gpu_plain.py --recipes "gpt2-full llama3b-lora" --steps 10
    python benchmarks/bench_gpu_plain.py --small             # the same code on a CPU (tests): tiny shapes

A common GPU machine is a preinstalled image with no network: torch, transformers, peft and
accelerate, but not Axolotl, datasets, lm_eval or bitsandbytes (and no orjson), with room for a
few MiB of wheels. Axolotl cannot be brought in there (it pins its own transformers and needs
bitsandbytes), so `make bench-gpu` cannot run. This script measures the same things through
transformers and peft directly, imports nothing else of the training stack, and needs only this
repository's own modules:

- per recipe, the recipe's shape as Axolotl would run it on one bf16 GPU: its base model's real
  architecture (engram_run.runs.architectures) with random weights, its micro batch of full rows
  of ``sequence_len`` tokens (packed rows are full), its gradient checkpointing, its method (full
  fine-tuning with the plugin's fp32 master weights under bf16 autocast where the recipe says
  so, else the weights in bf16; LoRA through peft with the recipe's rank, targets and
  ``modules_to_save``), AdamW (fused on a GPU);
- peak GPU memory (``torch.cuda.max_memory_allocated``) and tokens per second over ``--steps``
  steps after one warm-up step;
- seconds per recall evaluation with the plugin's own evaluator (engram_eval.recall), on
  ``--questions`` questions.

QLoRA recipes are listed as not benchable here (bitsandbytes); recipes whose estimate exceeds the
GPU or that shard over several GPUs are listed as skipped; ``--budget-min`` stops starting new
ones in time. Writes benchmarks/results/gpu_plain.{json,md} (``--small``: gpu_plain_small.*).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_gpu import config_and_tokenizer, known_recipe, table_rows  # noqa: E402

from engram_run.runs.architectures import config_for  # noqa: E402
from engram_run.runs.memory import plan, shape_of  # noqa: E402
from engram_run.runs.recipes import RECIPES_DIR, load_recipe, on_a_bf16_gpu, recipe_path  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
HIDDEN = ("axolotl", "lm_eval", "datasets", "bitsandbytes", "orjson")  # what the image lacks (the suite hides them)


def lora_config(cfg: dict):
    from peft import LoraConfig

    targets = "all-linear" if cfg.get("lora_target_linear") else cfg.get("lora_target_modules")
    return LoraConfig(
        r=cfg["lora_r"],
        lora_alpha=cfg.get("lora_alpha", cfg["lora_r"]),
        lora_dropout=cfg.get("lora_dropout", 0.0),
        target_modules=targets,
        modules_to_save=cfg.get("lora_modules_to_save"),
        ensure_weight_tying=bool(cfg.get("peft_ensure_weight_tying")),
        task_type="CAUSAL_LM",
    )


def run_recipe(cfg: dict, config, tok, data_dir: Path, steps: int, questions: int, device: str) -> dict:
    """The recipe's shape trained for ``steps`` steps; its peak memory, tokens/s and recall time."""
    import torch
    from transformers import AutoModelForCausalLM

    from engram_eval.recall import RecallEvaluator

    cuda = device == "cuda"
    bf16 = cuda and cfg.get("bf16") is True
    masters = cfg.get("engram_fp32_master_weights") and not cfg.get("adapter")
    dtype = torch.bfloat16 if bf16 and not masters else torch.float32
    torch.manual_seed(0)
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    if cfg.get("adapter") == "lora":
        from peft import get_peft_model

        model = get_peft_model(model, lora_config(cfg))
    if cfg.get("gradient_checkpointing"):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if cfg.get("adapter"):
            model.enable_input_require_grads()
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=float(cfg.get("learning_rate", 1e-4)), fused=cuda)
    micro, width = int(cfg.get("micro_batch_size") or 1), int(cfg.get("sequence_len") or 512)
    gen = torch.Generator().manual_seed(0)
    rows = torch.randint(3, config.vocab_size, (steps + 1, micro, width), generator=gen)

    def step(ids):
        ids = ids.to(device)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step(rows[0])  # warm-up: kernels, allocator, optimizer states
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for ids in rows[1:]:
        step(ids)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    evaluator = RecallEvaluator(data_dir, tok, sets=("train",), limit=questions)
    start = time.perf_counter()
    with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
        evaluator.evaluate(model, device=device)
    if cuda:
        torch.cuda.synchronize()
    recall_s = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    return {
        "status": "ok",
        "steps": steps,
        "micro_batch": micro,
        "sequence_len": width,
        "trained_params": sum(p.numel() for p in params),
        "peak_gib": round(peak, 2) if peak is not None else None,
        "tokens_per_s": round(steps * micro * width / seconds, 1),
        "recall_eval_s": round(recall_s, 2),
        "recall_questions": len(evaluator.questions),
    }


def main(argv: list[str] | None = None) -> int:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipes", default="", help="space-separated recipe names (default: every recipe)")
    ap.add_argument("--steps", type=int, default=8, help="timed training steps per recipe, after one warm-up")
    ap.add_argument("--questions", type=int, default=20, help="recall questions per field for the timed evaluation")
    ap.add_argument("--small", action="store_true", help="tiny shapes on whatever device is here (the suite)")
    ap.add_argument("--budget-min", type=float, default=8.0, help="start no recipe after this many minutes")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    cuda = torch.cuda.is_available()
    gpu_gb = torch.cuda.get_device_properties(0).total_memory / 1e9 if cuda else None
    if not args.small and not cuda:
        print(
            "bench_gpu_plain.py: no CUDA GPU here; run it on a GPU box, or --small for the CPU check", file=sys.stderr
        )
        return 2
    names = args.recipes.split() or sorted(p.stem for p in RECIPES_DIR.glob("*.yml") if p.stem != "tiny-full")
    unknown = [n for n in names if not known_recipe(n)]
    if unknown:
        print(f"bench_gpu_plain.py: no recipe {', '.join(unknown)} in axolotl_configs/", file=sys.stderr)
        return 2
    device = "cuda" if cuda and not args.small else "cpu"
    rows, started = [], time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-gpu-plain-") as tmp:
        data = Path(tmp) / "data"
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "generate_data.py"),
                "--num-people",
                "200",
                "--out",
                str(data),
                "--no-progress",
            ],
            check=True,
            capture_output=True,
        )
        built: dict[str, tuple] = {}
        for name in names:
            recipe = recipe_path(name)
            cfg = on_a_bf16_gpu(load_recipe(recipe))
            base = cfg["base_model"]
            p = plan(cfg, shape_of(config_for(base)))
            row = {"recipe": recipe.name, "estimate_gb": round(p.estimate["total"] / 1e9, 1), "gpus": p.gpus}
            if cfg.get("adapter") == "qlora" or cfg.get("load_in_4bit") or cfg.get("load_in_8bit"):
                row["status"] = "not benchable here: QLoRA needs bitsandbytes"
            elif not args.small and (p.gpus > 1 or p.estimate["total"] / 1e9 > gpu_gb):
                row["status"] = f"skipped: needs {p.gpus}x {p.gpu_gb} GB"
            elif (time.perf_counter() - started) / 60 > args.budget_min:
                row["status"] = f"skipped: past the {args.budget_min:g}-minute budget"
            else:
                if base not in built:
                    built = {base: config_and_tokenizer(base, data, args.small)}  # one model family in memory at a time
                try:
                    row |= run_recipe(cfg, *built[base], data, args.steps, args.questions, device)
                except torch.OutOfMemoryError:
                    row["status"] = "failed: out of memory"
            print(f"{row['recipe']}: {row['status']}", flush=True)
            rows.append(row)
    name = f"{torch.cuda.get_device_name(0)}" if device == "cuda" else "CPU"
    write(rows, args.out, "gpu_plain_small" if args.small else "gpu_plain", name, args.steps, args.small)
    return 0 if all(not r["status"].startswith("failed") for r in rows) else 1


def write(rows: list[dict], out: Path, stem: str, device: str, steps: int, small: bool) -> None:
    import torch
    import transformers

    out.mkdir(parents=True, exist_ok=True)
    versions = f"torch {torch.__version__}, transformers {transformers.__version__}"
    (out / f"{stem}.json").write_text(
        json.dumps({"device": device, "steps": steps, "versions": versions, "rows": rows}, indent=2) + "\n"
    )
    shapes = "tiny shapes of each architecture (--small); the estimate is the real size's" if small else "real shapes"
    md = [
        f"# make bench-gpu-plain on {device}",
        "",
        f"transformers + peft, no Axolotl ({versions}); {steps} timed steps per recipe after one warm-up, random "
        f"weights, {shapes}, full rows of the recipe's sequence_len.",
        "",
        "| recipe | estimate (GB) | peak measured (GiB) | tokens/s | recall eval (s) | status |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    md += table_rows(rows)
    (out / f"{stem}.md").write_text("\n".join(md) + "\n")
    print(f"wrote {out / stem}.md")


if __name__ == "__main__":
    sys.exit(main())
