#!/usr/bin/env python
"""Useful-token share of every recipe: the share of the token slots in its training batches
that hold real tokens (the rest is padding).

Usage:
    python benchmarks/bench_padding.py --people 2000

Lays each recipe's training rows (its datasets on a generated population, tokenized by a
BPE tokenizer trained on the data: the hub tokenizers cannot be downloaded here, and a
biography's length in tokens varies alike under any BPE) into batches the way Axolotl
does: packed recipes through Axolotl's own ``MultipackBatchSampler`` (bins of
``sequence_len``), the others through HF's ``RandomSampler`` or, with ``group_by_length``,
its ``LengthGroupedSampler``, each batch padded to its longest row rounded up to
``pad_to_multiple_of`` (Axolotl's default 64), or to ``sequence_len`` with
``pad_to_sequence_len``. Beside it, the share of the same rows in Axolotl's default
batches (unpacked, random order, padded to a multiple of 64). Writes benchmarks/results/padding.json and padding.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

RESULTS = Path(__file__).resolve().parent / "results"


def row_lengths(cfg: dict, tokenizer) -> list[int]:
    """Tokens per training row (BOS/EOS included, cut at sequence_len), all datasets."""
    lengths = []
    for ds in cfg["datasets"]:
        texts = [json.loads(line)[ds.get("field", "text")] for line in Path(ds["path"]).read_text().splitlines()]
        for ids in tokenizer(texts, add_special_tokens=True)["input_ids"]:
            lengths.append(min(len(ids) + 1, cfg["sequence_len"]))  # + EOS
    return lengths


def unpacked_share(lengths: list[int], cfg: dict, group_by_length: bool) -> float:
    import torch
    from torch.utils.data import RandomSampler
    from transformers.trainer_pt_utils import LengthGroupedSampler

    batch = cfg["micro_batch_size"]
    generator = torch.Generator().manual_seed(cfg.get("seed") or 42)
    if group_by_length:
        order = list(
            LengthGroupedSampler(
                batch * cfg.get("gradient_accumulation_steps", 1), lengths=lengths, generator=generator
            )
        )
    else:
        order = list(RandomSampler(range(len(lengths)), generator=generator))
    multiple = cfg.get("pad_to_multiple_of") or 64
    used = slots = 0
    for i in range(0, len(order), batch):
        rows = [lengths[j] for j in order[i : i + batch]]
        width = cfg["sequence_len"] if cfg.get("pad_to_sequence_len") else math.ceil(max(rows) / multiple) * multiple
        used, slots = used + sum(rows), slots + width * len(rows)
    return used / slots


def packed_share(lengths: list[int], cfg: dict) -> float:
    import numpy as np
    import torch
    from axolotl.utils.samplers.multipack import MultipackBatchSampler
    from torch.utils.data import RandomSampler

    sampler = MultipackBatchSampler(
        RandomSampler(range(len(lengths)), generator=torch.Generator().manual_seed(42)),
        batch_size=cfg["micro_batch_size"],
        batch_max_len=cfg["sequence_len"],
        lengths=np.array(lengths),
        bin_size=cfg.get("sample_packing_bin_size") or 200,
        group_size=cfg.get("sample_packing_group_size") or 100_000,
        num_processes=1,
    )
    return sampler.efficiency()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=2000)
    args = parser.parse_args()

    from engram_data.contract import QA_TRAIN, train_file
    from engram_run.runs import launch
    from engram_run.runs.recipes import RECIPES_DIR, derive_config
    from engram_run.runs.tiny import corpus, train_tokenizer

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        launch.generate_data(data, args.people, seed=0)
        tokenizer = train_tokenizer(corpus(data), 8192)
        for recipe in sorted(RECIPES_DIR.glob("*.yml")):
            cfg = derive_config(recipe, data, Path(tmp) / "out", None, {})
            qa = str(train_file(data, QA_TRAIN))
            lengths = row_lengths(cfg, tokenizer)
            if cfg.get("sample_packing"):
                share = packed_share(lengths, cfg)
            else:
                share = unpacked_share(lengths, cfg, bool(cfg.get("group_by_length")))
            # The same rows in Axolotl's default batches: unpacked, random, padded to a multiple of 64.
            plain = {**cfg, "pad_to_multiple_of": None, "pad_to_sequence_len": None}
            default = unpacked_share(lengths, plain, False)
            rows.append(
                {
                    "recipe": recipe.stem,
                    "packing": bool(cfg.get("sample_packing")),
                    "group_by_length": bool(cfg.get("group_by_length")),
                    "qa_mixed": any(ds["path"] == qa for ds in cfg["datasets"]),
                    "useful_share": round(share, 3),
                    "axolotl_default_batches": round(default, 3),
                }
            )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "padding.json").write_text(json.dumps({"people": args.people, "recipes": rows}, indent=2) + "\n")
    md = [
        "# Useful-token share per recipe (real tokens / token slots in training batches)",
        "",
        "| recipe | batches | useful share | in Axolotl's default batches |",
        "| --- | --- | ---: | ---: |",
    ]
    for r in rows:
        how = "packed" if r["packing"] else ("grouped by length" if r["group_by_length"] else "random")
        md.append(f"| `{r['recipe']}` | {how} | {r['useful_share']:.2f} | {r['axolotl_default_batches']:.2f} |")
    md += [
        "",
        f"{args.people} people, each recipe's own datasets (default text variant); a BPE tokenizer trained on the",
        "data. Axolotl's default batches: unpacked, in random order, padded to a multiple of 64.",
    ]
    (RESULTS / "padding.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
