"""``make probe``: why five reworded, shuffled biographies make knowledge extractable, by the
paper's linear probes (Physics of LM 3.1, section 5) at miniature scale.

One population in the probes' regime (``--values-per-field``: every value held by many
people, as the paper's 100k people over a few hundred values), one initial model, trained
on ``bioS`` and on ``bioS_multi5_permutes`` (each mixed with the QA of train people, on
one budget of biography passes, `common.budget_epochs`). Each model gets lm-eval's heldout extraction
(exact match, and four-option) and ``engram-localize probe``: P-probes on the biography it
trained on and Q-probes on the name alone, per layer x attribute, with their floors.

    RESULTS/<variant>/probe/    probe.csv, probe.json, probe.png (heatmaps), probe.md
    RESULTS/probes.md, probes.json   per variant: extraction beside the attributes decodable at the name
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from engram_data.atomic import atomic_output
from engram_data.contract import FIELDS, MANIFEST
from engram_run.runs import launch
from engram_run.runs.recipes import RunError, write_config
from engram_run.studies.common import budget_epochs, lm_eval_row, timer, variant_config

GENERATOR = "llm-engram/probes"
EXTRACTION = {"heldout_exact": ("bios_qa_gen_heldout", "exact_match"), "heldout": ("bios_qa_heldout", "acc")}


@dataclass(frozen=True)
class ProbeSettings:
    people: int = 240
    values_per_field: int = 8  # ~15 train people per value
    multi5_epochs: int = 12
    hidden: int = 128
    layers: int = 4
    vocab_size: int = 2048
    learning_rate: float = 2e-3
    micro_batch: int = 8
    variants: tuple[str, ...] = ("bioS", "bioS_multi5_permutes")
    model: str = "tiny"
    data_dir: Path = Path("data/probe")
    outputs: Path = Path("outputs/probe")
    results: Path = Path("results/probe")


def probes(s: ProbeSettings) -> Path:
    step = timer("probe")

    if s.outputs.exists() and not (s.outputs / launch.MARKER).exists():
        raise RunError(f"{s.outputs} exists and was not written by probe; move it away or pass --outputs")
    step(f"generating {s.people} people, {s.values_per_field} values per attribute, into {s.data_dir}")
    launch.generate_data(
        s.data_dir, s.people, seed=0, variants=s.variants, extra=("--values-per-field", str(s.values_per_field))
    )
    launch.remove_own(s.outputs)
    launch.claim(s.outputs)
    step(f"building one random Llama (hidden {s.hidden}, {s.layers} layers) for every variant")
    init = launch.build_model(
        s.data_dir,
        s.outputs / "init",
        s.outputs / "build.log",
        hidden=s.hidden,
        layers=s.layers,
        vocab_size=s.vocab_size,
        seed=0,
    )
    epochs = budget_epochs(s.data_dir, s.multi5_epochs, s.variants)
    rows, probe_dirs = {}, {}
    for variant in s.variants:
        folder = launch.claim(s.outputs / variant)
        config = write_config(
            variant_config(s, variant, epochs[variant], init, folder / "model"), folder / "config.yml"
        )
        step(f"{variant}: axolotl train, {epochs[variant]} epochs (log: {folder / 'train.log'})")
        if not launch.train(config, folder / "model", folder / "train.log"):
            raise RunError(f"training {variant} failed; see {folder / 'train.log'}")
        step(f"{variant}: lm-eval (heldout extraction)")
        row = lm_eval_row(folder / "model", str(init), s.data_dir, folder / "lm_eval", EXTRACTION, variant)
        rows[variant] = {"epochs": epochs[variant], **row}
        step(f"{variant}: engram-localize probe")
        probe_dirs[variant] = folder / "localize"
        cmd = [
            launch.tool("engram-localize"),
            "probe",
            "--model",
            str(folder / "model"),
            "--data",
            str(s.data_dir),
            "--variant",
            variant,
            "--out",
            str(probe_dirs[variant]),
            "--overwrite",
            "--no-progress",
        ]
        if subprocess.run(cmd, env=launch.tool_env()).returncode != 0:
            raise RunError(f"engram-localize probe failed for {variant} (its error is above)")
        summary = json.loads((probe_dirs[variant] / "probe" / "decodable.json").read_text())
        rows[variant] |= {k: summary[k] for k in ("decodable_at_name", "q_probe_best")}
    path = write_results(rows, probe_dirs, s)
    step(f"done: {path}")
    return path


def write_results(rows: dict, probe_dirs: dict[str, Path], s: ProbeSettings) -> Path:
    import shutil

    with atomic_output(s.results, GENERATOR, overwrite=True) as tmp:
        for variant, folder in probe_dirs.items():
            shutil.copytree(folder / "probe", tmp / variant / "probe")
        (tmp / "probes.json").write_text(json.dumps(rows, indent=2) + "\n")
        lines = [
            "# Probes: why multi5 + permutation makes knowledge extractable",
            "",
            f"{s.people} people (half heldout), {s.values_per_field} values per attribute, a random "
            f"{s.hidden}-wide {s.layers}-layer Llama per variant, mixed training on one budget of biography passes. "
            "*Q-probe*: a linear probe on the hidden state of the name alone, trained on train people, "
            "scored on heldout people; best layer. *Decodable*: at least 0.2 above the shuffled-label, "
            "untrained-model and majority floors.",
            "",
            "| variant | epochs | heldout extraction (exact match) | heldout (four-option) | "
            + " | ".join(f"Q-probe {f}" for f in FIELDS)
            + " | decodable at the name |",
            "| --- | ---: | ---: | ---: | " + " | ".join("---:" for _ in FIELDS) + " | --- |",
        ]
        for v, r in rows.items():
            q = " | ".join(f"{r['q_probe_best'][f]:.2f}" for f in FIELDS)
            lines.append(
                f"| `{v}` | {r['epochs']} | {r['scores']['heldout_exact']:.3f} | {r['scores']['heldout']:.3f} "
                f"| {q} | {', '.join(r['decodable_at_name']) or 'none'} |"
            )
        lines += ["", *(f"![{v}]({v}/probe/probe.png)" for v in rows)]
        (tmp / "probes.md").write_text("\n".join(lines) + "\n")
        (tmp / MANIFEST).write_text(json.dumps({"generator": GENERATOR, "settings": str(s)}, indent=2) + "\n")
    return s.results / "probes.md"
