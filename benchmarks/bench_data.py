#!/usr/bin/env python
"""Benchmark of generate_data: people per second for a full bioS layout.

Usage:
    python benchmarks/bench_data.py --num-people 100000

Runs the generator as `generate_data.py` does (GC off, orjson, block writes) and, on the
same run and machine, the obvious alternative (stdlib json, a write per row, GC on), and
reports both and their ratio. Writes benchmarks/results/data.json and data.md.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

from engram_data import write
from engram_data.population import synthesize

RESULTS = Path(__file__).resolve().parent / "results"


def naive_write_jsonl(path, rows, chunk=0):
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        for row in rows:
            line = (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8")
            digest.update(line)
            f.write(line)
    return len(rows), digest.hexdigest()


def run(num_people: int, naive: bool, workdir: Path) -> dict:
    out = workdir / ("naive" if naive else "fast")
    real_write = write.write_jsonl
    if naive:
        gc.enable()
        write.write_jsonl = naive_write_jsonl
    else:
        gc.disable()
    try:
        start = time.perf_counter()
        pop = synthesize(num_people, seed=0)
        synth = time.perf_counter() - start
        write.write_dataset(pop, out)
        total = time.perf_counter() - start
    finally:
        write.write_jsonl = real_write
        gc.enable()
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    shutil.rmtree(out)
    del pop
    gc.collect()
    return {
        "seconds": round(total, 2),
        "synthesize_seconds": round(synth, 2),
        "write_seconds": round(total - synth, 2),
        "people_per_second": round(num_people / total),
        "bytes_written": size,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-people", type=int, default=100_000)
    parser.add_argument("--skip-naive", action="store_true", help="only time the real path")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fast = run(args.num_people, naive=False, workdir=Path(tmp))
        naive = None if args.skip_naive else run(args.num_people, naive=True, workdir=Path(tmp))
    result = {
        "benchmark": "generate_data",
        "num_people": args.num_people,
        "machine": f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}",
        "generate_data": fast,
        "stdlib_json_gc_on": naive,
        "speedup": round(naive["seconds"] / fast["seconds"], 2) if naive else None,
        "target_seconds": 20,
        "meets_target": fast["seconds"] < 20,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "data.json").write_text(json.dumps(result, indent=2) + "\n")
    rows = [("generate_data (orjson, block writes, GC off)", fast)]
    if naive:
        rows.append(("alternative: stdlib json, write per row, GC on", naive))
    md = [
        f"# generate_data benchmark: {args.num_people} people, every file",
        "",
        "| path | seconds | synthesize s | write s | people/s | MB written |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, r in rows:
        md.append(
            f"| {label} | {r['seconds']} | {r['synthesize_seconds']} | {r['write_seconds']} "
            f"| {r['people_per_second']} | {r['bytes_written'] / 1e6:.0f} |"
        )
    if naive:
        md += ["", f"Speed-up over the alternative: {result['speedup']}x. Target: under 20 s."]
    (RESULTS / "data.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
