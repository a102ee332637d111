"""Writing a Population: every file of the layout and ``manifest.json``, atomically."""

from __future__ import annotations

import json
import os
from collections import Counter

from tqdm.auto import tqdm

from engram_data.atomic import atomic_output
from engram_data.contract import FIELDS, GENERATOR_VERSION, MANIFEST, NUM_CHOICES, SPLITS, qa_prompt, write_jsonl
from engram_data.derived import dataset_files, num_dataset_files
from engram_data.options import PROTOCOL
from engram_data.population import Population

GENERATOR = "llm-engram/generate_data"  # the identity in manifest.json that marks our own output


def write_dataset(
    pop: Population,
    out: str | os.PathLike,
    overwrite: bool = False,
    progress: bool = False,
    args: dict | None = None,
) -> dict:
    """Write the layout into ``out`` atomically (a temp folder, then a rename); return the manifest."""
    with atomic_output(out, GENERATOR, overwrite) as tmp:
        (tmp / "train").mkdir()
        (tmp / "qa").mkdir()
        file_info = {}
        files = dataset_files(pop)
        bar = tqdm(files, total=num_dataset_files(pop), desc="write", unit="file", disable=not progress)
        for rel, rows, splits, notes in bar:
            count, sha = write_jsonl(tmp / rel, rows)
            info: dict = {"rows": count}
            if all(s is not None for s in splits):
                info["by_split"] = {s: splits.count(s) for s in SPLITS}
            info.update(notes)
            info["sha256"] = sha
            file_info[rel] = info
        people_splits = Counter(p["split"] for p in pop.people)
        manifest = {
            "generator": GENERATOR,
            "generator_version": GENERATOR_VERSION,
            "source": pop.source,
            "seed": pop.seed,
            "args": args or {},
            "fields": list(FIELDS),
            "variants": list(pop.variants),
            "num_people": len(pop.people),
            "splits": {s: people_splits.get(s, 0) for s in SPLITS},
            "pool_sizes": pop.pool_sizes,
            "num_choices": NUM_CHOICES,
            "options": PROTOCOL,
            "qa_prompt": qa_prompt("{question}"),
            **({"import": pop.extra} if pop.extra else {}),
            "files": file_info,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", "utf-8")
    return manifest
