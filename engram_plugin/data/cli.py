"""Command line of ``generate_data.py``: a thin argparse layer over :mod:`engram_plugin.data.bios`."""

from __future__ import annotations

import argparse
import gc
import sys
import time

from engram_plugin.data.bios import TEXT_VARIANTS, DataError, from_records, load_bios_v1, synthesize, write_dataset


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="generate_data.py",
        description="Synthesize a bioS population (default) or import bioS_v1, and write the "
        "train/QA layout that the recipes, lm-eval tasks and plugin read.",
    )
    parser.add_argument("--num-people", type=int, default=10_000, help="people to synthesize (default: 10000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice (default: 0)")
    parser.add_argument("--out", default="data/bios", help="output directory (default: data/bios)")
    parser.add_argument(
        "--heldout-fraction",
        type=float,
        default=0.5,
        help="fraction of people in the 'heldout' split, whose QA is never trained (default: 0.5)",
    )
    parser.add_argument(
        "--variants",
        default=",".join(TEXT_VARIANTS),
        help=f"comma-separated text variants to write (default: {','.join(TEXT_VARIANTS)})",
    )
    parser.add_argument(
        "--source",
        default=None,
        help="import instead of synthesizing: a hub id (minsungkim/bioS_v1), a save_to_disk folder, "
        "or a .jsonl/.parquet/.csv file in the bioS_v1 schema",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a previous output in --out")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    progress = not args.no_progress
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    recorded = {k: v for k, v in vars(args).items() if k not in ("out", "overwrite", "no_progress")}
    start = time.perf_counter()
    # Hundreds of thousands of small acyclic dicts: the cyclic GC would rescan them over
    # and over (a third of the run time at 100k people) and can free nothing.
    gc.disable()
    try:
        if args.source:
            records = load_bios_v1(args.source)
            pop = from_records(
                records,
                seed=args.seed,
                heldout_fraction=args.heldout_fraction,
                variants=variants,
                source=args.source,
                progress=progress,
            )
            recorded.pop("num_people")
        else:
            pop = synthesize(
                num_people=args.num_people,
                seed=args.seed,
                heldout_fraction=args.heldout_fraction,
                variants=variants,
                progress=progress,
            )
        manifest = write_dataset(pop, args.out, overwrite=args.overwrite, progress=progress, args=recorded)
    except DataError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - start
    splits = manifest["splits"]
    print(
        f"wrote {manifest['num_people']} people ({splits['train']} train, {splits['heldout']} heldout) "
        f"to {args.out} in {elapsed:.1f} s"
    )
    return 0
