#!/usr/bin/env python
"""`make bench-gpu`: every recipe that fits one GPU, at its real size, with no download.

Usage:
    python benchmarks/bench_gpu.py                      # on a GPU: every recipe that fits it
    python benchmarks/bench_gpu.py --recipes "gpt2 llama3b" --steps 10
    python benchmarks/bench_gpu.py --small              # the same code on a CPU (tests): tiny shapes

For each base model: its real architecture (engram_run.runs.architectures) with random weights in
bf16 and a local byte-level BPE tokenizer padded to the real vocabulary size, saved once. Each
recipe then runs through `axolotl train` as a user runs it (its own settings; the model swapped
in, `max_steps` set, no checkpoints), with the plugin's recall scored at step 0. From the run's
own logs (the plugin's engram_log.jsonl and engram_timing.jsonl) it reads Axolotl's peak GPU
memory (``memory/max_allocated``), tokens per second per GPU, and seconds per recall evaluation,
beside the estimate of axolotl_configs/_generate_settings.py. Recipes whose estimate exceeds the GPU, or that
need several GPUs, are listed as skipped; ``--budget-min`` stops starting new ones in time.

Writes benchmarks/results/gpu.{json,md} (``--small``: gpu_small.*).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("AXOLOTL_DO_NOT_TRACK", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

from engram_data.contract import read_jsonl  # noqa: E402
from engram_data.run_files import LOG_HISTORY, TIMING_FILE  # noqa: E402
from engram_run.runs.architectures import config_for  # noqa: E402
from engram_run.runs.launch import train_command  # noqa: E402
from engram_run.runs.memory import plan, shape_of  # noqa: E402
from engram_run.runs.recipes import (  # noqa: E402
    RECIPES_DIR,
    RunError,
    cpu_variant,
    derive_config,
    load_recipe,
    on_a_bf16_gpu,
    recipe_path,
    write_config,
)  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SMALL = {
    "hidden_size": 64,
    "n_embd": 64,
    "num_hidden_layers": 2,
    "n_layer": 2,
    "num_attention_heads": 4,
    "n_head": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 256,
    "head_dim": 16,
    "rotary_dim": 8,
}
SMALL_VOCAB = 2048


def tokenizer_of_size(data_dir: Path, vocab: int):
    """A BPE tokenizer trained on the data (engram_run.runs.tiny's), its vocabulary padded with
    unused entries to exactly ``vocab`` ids, as the real tokenizer's embedding size needs."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    from engram_run.runs.tiny import SPECIAL_TOKENS, corpus, train_tokenizer

    tok = train_tokenizer(corpus(data_dir), min(vocab, 4096))
    spec = json.loads(tok.backend_tokenizer.to_str())
    table = spec["model"]["vocab"]
    for i in range(len(table), vocab):
        table[f"<unused_{i}>"] = i
    fast = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(spec)), **SPECIAL_TOKENS)
    fast.padding_side = "right"
    assert len(fast) == vocab, (len(fast), vocab)
    return fast


def config_and_tokenizer(base_model: str, data_dir: Path, small: bool):
    """(config, tokenizer) of ``base_model``'s architecture (tiny with ``small``), its special
    tokens those of a BPE tokenizer trained on the data and padded to the vocabulary size."""
    config = config_for(base_model)
    if small:
        for key, value in SMALL.items():
            if hasattr(config, key):
                setattr(config, key, value)
        config.vocab_size = SMALL_VOCAB
    tok = tokenizer_of_size(data_dir, config.vocab_size)
    config.bos_token_id, config.eos_token_id, config.pad_token_id = tok.bos_token_id, tok.eos_token_id, tok.pad_token_id
    return config, tok


def build_model(base_model: str, data_dir: Path, out: Path, small: bool) -> Path:
    """Random weights of ``base_model``'s architecture (or a tiny one of it) and a tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM

    config, tok = config_and_tokenizer(base_model, data_dir, small)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16 if device == "cuda" else torch.float32)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    del model
    return out


def run_recipe(recipe: Path, model_dir: Path, data_dir: Path, work: Path, steps: int, small: bool) -> dict:
    """`axolotl train` on the recipe with the model swapped in; the figures from its logs."""
    out = work / recipe.stem
    cfg = derive_config(recipe, data_dir, out)
    if small:
        cfg = cpu_variant(cfg, model_dir, out, data_dir=data_dir)
    cfg.update(
        base_model=str(model_dir),
        special_tokens={"pad_token": "<pad>"},
        max_steps=steps,
        save_strategy="no",
        val_set_size=0.0,
        logging_steps=1,
        engram_eval_samples=20,
        engram_post_eval=False,
        engram_save_best=False,
        dataset_prepared_path=str(out / "prepared"),
    )
    for key in ("metric_for_best_model", "greater_is_better", "evals_per_epoch", "saves_per_epoch", "warmup_steps"):
        cfg.pop(key, None)
    config = write_config(cfg, work / f"{recipe.stem}.yml")
    start = time.perf_counter()
    log = work / f"{recipe.stem}.log"
    with log.open("w") as f:
        # engram_run's own command: accelerate launch on a GPU, Axolotl's process on a CPU (--small).
        code = subprocess.call(train_command(config), stdout=f, stderr=subprocess.STDOUT, cwd=work)
    seconds = time.perf_counter() - start
    if code != 0:
        tail = log.read_text().strip().splitlines()[-1:] or [f"exit {code}"]
        return {"status": f"failed: {tail[0][:200]}"}
    lines = read_jsonl(out / LOG_HISTORY)
    rates = [x["tokens/train_per_sec_per_gpu"] for x in lines if x.get("tokens/train_per_sec_per_gpu")]
    rates = rates[1:] or rates  # the first step includes warm-up
    peaks = [x.get("memory/max_allocated (GiB)", 0.0) for x in lines]
    timing = read_jsonl(out / TIMING_FILE) if (out / TIMING_FILE).exists() else []  # none without recall
    shutil.rmtree(out, ignore_errors=True)
    return {
        "status": "ok",
        "steps": steps,
        "seconds": round(seconds, 1),
        "peak_gib": max(peaks, default=0.0) or None,
        "tokens_per_s": round(sum(rates) / len(rates), 1) if rates else None,
        "recall_eval_s": timing[0]["seconds"] if timing else None,
    }


def known_recipe(name: str) -> bool:
    try:
        recipe_path(name)
    except RunError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    import torch
    from tqdm import tqdm

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipes", default="", help="space-separated recipe names (default: all that fit one GPU)")
    ap.add_argument("--steps", type=int, default=8, help="training steps per recipe (default 8)")
    ap.add_argument("--small", action="store_true", help="tiny shapes on whatever device is here (the suite)")
    ap.add_argument("--budget-min", type=float, default=7.5, help="start no recipe after this many minutes")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    gpu_gb = torch.cuda.get_device_properties(0).total_memory / 1e9 if torch.cuda.is_available() else None
    if not args.small and gpu_gb is None:
        print("bench_gpu.py: no CUDA GPU here; run it on a GPU box, or --small for the CPU check", file=sys.stderr)
        return 2
    names = args.recipes.split() or sorted(p.stem for p in RECIPES_DIR.glob("*.yml") if p.stem != "tiny-full")
    unknown = [n for n in names if not known_recipe(n)]
    if unknown:
        print(f"bench_gpu.py: no recipe {', '.join(unknown)} in axolotl_configs/", file=sys.stderr)
        return 2
    rows, started = [], time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        work = Path(tmp)
        data = work / "data"
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
        by_base: dict[str, list[Path]] = {}
        for name in names:
            recipe = recipe_path(name)
            by_base.setdefault(load_recipe(recipe)["base_model"], []).append(recipe)
        bar = tqdm(total=len(names), desc="bench-gpu", unit="recipe")
        for base, recipes in by_base.items():
            model_dir = None
            for recipe in recipes:
                cfg = load_recipe(recipe)
                p = plan(on_a_bf16_gpu(cfg), shape_of(config_for(base)))
                row = {"recipe": recipe.name, "estimate_gb": round(p.estimate["total"] / 1e9, 1), "gpus": p.gpus}
                if not args.small and (p.gpus > 1 or p.estimate["total"] / 1e9 > gpu_gb):
                    row["status"] = f"skipped: needs {p.gpus}x {p.gpu_gb} GB"
                elif (time.perf_counter() - started) / 60 > args.budget_min:
                    row["status"] = f"skipped: past the {args.budget_min:g}-minute budget"
                else:
                    model_dir = model_dir or build_model(base, data, work / "model", args.small)
                    row |= run_recipe(recipe, model_dir, data, work, args.steps, args.small)
                rows.append(row)
                bar.update(1)
            if model_dir:
                shutil.rmtree(model_dir)
        bar.close()
    device = torch.cuda.get_device_name(0) if gpu_gb else "CPU"
    write(rows, args.out, "gpu_small" if args.small else "gpu", device, args.steps, args.small)
    return 0 if all(not r["status"].startswith("failed") for r in rows) else 1


def table_rows(rows: list[dict]) -> list[str]:
    """One Markdown row per recipe: estimate, peak memory, tokens/s, recall seconds, status."""
    out = []
    for r in rows:
        cells = [r.get(k) for k in ("peak_gib", "tokens_per_s", "recall_eval_s")]
        figures = " | ".join("" if c is None else f"{c:g}" for c in cells)
        out.append(f"| `{r['recipe']}` | {r['estimate_gb']} | {figures} | {r['status']} |")
    return out


def write(rows: list[dict], out: Path, stem: str, device: str, steps: int, small: bool = False) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps({"device": device, "steps": steps, "rows": rows}, indent=2) + "\n")
    shapes = "tiny shapes of each architecture (--small); the estimate is the real size's" if small else "real shapes"
    md = [
        f"# make bench-gpu on {device}",
        "",
        f"{steps} training steps per recipe, random weights, {shapes}.",
        "",
        "| recipe | estimate (GB) | peak measured (GiB) | tokens/s per GPU | recall eval (s) | status |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    md += table_rows(rows)
    (out / f"{stem}.md").write_text("\n".join(md) + "\n")
    print(f"wrote {out / stem}.md")


if __name__ == "__main__":
    sys.exit(main())
