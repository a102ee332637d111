#!/usr/bin/env python
"""Peak GPU memory of every recipe, estimated (engram_run.runs.memory), and the settings that follow.

Usage:
    python benchmarks/memory.py           # rewrite the recipes' headers and batch settings, and the table
    python benchmarks/memory.py --check   # exit 1 if any of them is out of date (make lint)

For each recipe, its model's real shape (engram_run.runs.architectures: no download) and its own
settings give weights, gradients, optimizer states, activations and logits per GPU. The plan
(``engram_run.runs.memory.plan``) is the fastest setting that fits: the fewest GPUs, the smallest
common card that holds the run with gradient checkpointing, then the largest micro batch and
no checkpointing wherever that card still holds it. This script writes, from the plan:

- each recipe's header: the command (with the GPU count) and ``# GPU memory: Nx M GB``;
- its ``micro_batch_size``, ``gradient_accumulation_steps`` (for one GPU: micro x accumulation
  = the effective batch) and ``gradient_checkpointing``;
- the tables in ``axolotl_configs/README.md`` and ``benchmarks/results/memory.{json,md}``.

The terms are checked against peaks measured on a CPU for tiny models (tests/test_memory.py);
``make bench-gpu`` measures the real sizes on a GPU.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engram_run.runs.architectures import config_for  # noqa: E402
from engram_run.runs.memory import plan, shape_of  # noqa: E402
from engram_run.runs.recipes import RECIPES_DIR, load_recipe, on_a_bf16_gpu  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
README = RECIPES_DIR / "README.md"
START, END = "<!-- memory:start -->", "<!-- memory:end -->"
EFFECTIVE = 8


def command(name: str, gpus: int) -> str:
    base = f"axolotl train axolotl_configs/{name}.yml"
    return base if gpus == 1 else f"{base} --launcher accelerate -- --num_processes {gpus}"


def rewrite(path: Path, p) -> str:
    """The recipe's text with the plan's header and batch settings."""
    text = path.read_text()
    lines = text.split("\n")
    name = path.stem
    micro, accum = p.micro_batch, EFFECTIVE // p.micro_batch
    make = name.replace("-full", " METHOD=full").replace("-lora", " METHOD=lora").replace("-qlora", " METHOD=qlora")
    how = f"   # or: make train MODEL={make}" + (f" GPUS={p.gpus}" if p.gpus > 1 else "")
    lines[1] = f"#   {command(name, p.gpus)}{how}"
    peak = p.estimate["total"] / 1e9
    lines[2] = (
        f"# GPU memory: {p.gpus}x {p.gpu_gb} GB (estimated peak {peak:.1f} GB per GPU: benchmarks/memory.py, "
        "table in axolotl_configs/README.md)"
    )
    text = "\n".join(lines)
    text = re.sub(r"^micro_batch_size: \d+", f"micro_batch_size: {micro}", text, flags=re.M)
    text = re.sub(r"^gradient_accumulation_steps: \d+", f"gradient_accumulation_steps: {accum}", text, flags=re.M)
    ckpt = "true" if p.checkpointing else "false"
    why = (
        "activations recomputed in the backward pass: the run fits the card with it only"
        if p.checkpointing
        else "the activations fit: no recomputation (a third faster)"
    )
    text = re.sub(r"^gradient_checkpointing: .*$", f"gradient_checkpointing: {ckpt}  # {why}", text, flags=re.M)
    text = re.sub(
        r"^# Effective batch = .*$",
        f"# Effective batch = micro_batch_size {micro} x gradient_accumulation_steps {accum} = {EFFECTIVE} sequences"
        + (f" on 1 GPU ({p.gpus} GPUs: micro {micro} x 1 x {p.gpus})" if p.gpus > 1 else ""),
        text,
        flags=re.M,
    )
    return text


def gb(x: float) -> str:
    return f"{x / 1e9:.1f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file is out of date")
    args = ap.parse_args(argv)

    rows, stale, texts = [], [], {}
    for path in sorted(RECIPES_DIR.glob("*.yml")):
        cfg = on_a_bf16_gpu(load_recipe(path))
        if path.stem == "tiny":
            continue
        shape = shape_of(config_for(cfg["base_model"]))
        p = plan(cfg, shape, EFFECTIVE)
        texts[path] = rewrite(path, p)
        est = p.estimate
        rows.append(
            {
                "recipe": path.name,
                "params_b": round(shape.params / 1e9, 3),
                "gpus": p.gpus,
                "gpu_gb": p.gpu_gb,
                "micro_batch": p.micro_batch,
                "checkpointing": p.checkpointing,
                **{k: round(v / 1e9, 2) for k, v in est.items() if k != "trained_params"},
                "trained_params": int(est["trained_params"]),
            }
        )

    table = [
        "| recipe | params | GPUs | micro | checkpointing | weights | gradients | optimizer | activations | logits "
        "| peak per GPU | card |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        table.append(
            f"| `{r['recipe']}` | {r['params_b']:g}B | {r['gpus']} | {r['micro_batch']} | "
            f"{'on' if r['checkpointing'] else 'off'} | {r['weights']:.1f} | {r['gradients']:.1f} | "
            f"{r['optimizer']:.1f} | {r['activations']:.1f} | {r['logits']:.1f} | **{r['total']:.1f}** | "
            f"{r['gpu_gb']} GB |"
        )
    section = "\n".join([START, *table, END])
    readme = README.read_text()
    for r in rows:  # the recipe table's memory and command columns
        name, plan_of = r["recipe"], f"{r['gpus']}x {r['gpu_gb']} GB"
        readme = re.sub(
            rf"^(\| `{re.escape(name)}` \| [^|]* \| [^|]* \| [^|]* \| )[^|]* \| `[^`]*` \|$",
            lambda m, r=r, plan_of=plan_of: f"{m.group(1)}{plan_of} | `{command(r['recipe'][:-4], r['gpus'])}` |",
            readme,
            flags=re.M,
        )
    new_readme = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: section, readme, flags=re.S)
    outputs = {
        **texts,
        README: new_readme,
        RESULTS / "memory.json": json.dumps(rows, indent=2) + "\n",
        RESULTS / "memory.md": "# Estimated peak GPU memory per recipe (GB)\n\n" + "\n".join(table) + "\n",
    }
    for path, text in outputs.items():
        if not path.exists() or path.read_text() != text:
            stale.append(path)
            if not args.check:
                path.write_text(text)
    if args.check and stale:
        names = ", ".join(str(p.relative_to(ROOT)) for p in stale)
        print(f"benchmarks/memory.py: out of date: {names}; run python benchmarks/memory.py", file=sys.stderr)
        return 1
    if not args.check:
        print(f"wrote {len(stale)} file(s); {len(rows)} recipes planned")
    return 0


if __name__ == "__main__":
    sys.exit(main())
