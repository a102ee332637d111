"""``make floors``: what a model scores on the bioS tasks before it has seen the population, per
field, beside chance, so that every later figure has its floor.

A model trained from scratch sits at chance. A pretrained one has priors over real places,
universities and firms: a field where it beats chance un-tuned is a field where a fine-tuned
score is partly inference, not recall. ``company_city`` is the known case: the employers are
real firms with real headquarters, so a model that knows the firm can name the city without
recalling anything. It is reported apart.

Each task runs through lm-eval (``engram-eval``) on the same population, on ``--limit``
questions per field (the first N, as ``lm_eval --limit``; the reverse task, one task, gets as
many questions in all as the others have over their six fields):

    bios_qa          four options, the log-likelihood of each option's text (chance 0.25)
    bios_qa_letters  the options listed A-D, the answer letter scored (chance 0.25)
    bios_qa_gen      greedy generation until a newline, exact match (chance ~0)
    bios_qa_reverse  the name from birth date and city, four options (chance 0.25)

A field is *at chance* when its accuracy is within 2 of lm-eval's standard errors of chance,
else *above* or *below*; the table says which.

    RESULTS/floors.json   {task: {field: {acc, stderr, n, chance, z, verdict}}}
    RESULTS/floors.md     one table: field x task, the verdict beside each number
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from engram_data.atomic import atomic_output
from engram_data.contract import CHANCE, FIELDS, MANIFEST
from engram_eval.lm_eval_args import model_args
from engram_run.runs import evaluation, launch
from engram_run.runs.recipes import RunError
from engram_run.studies.common import timer

# task: (lm-eval task, metric, its subtask per field or None for one task, chance)
TASKS = {
    "four-option": ("bios_qa", "acc", "bios_qa_{field}", CHANCE),
    "letters": ("bios_qa_letters", "acc", "bios_qa_letters_{field}", CHANCE),
    "generative": ("bios_qa_gen", "exact_match", "bios_qa_gen_{field}", 0.0),
    "reverse": ("bios_qa_reverse", "acc", None, CHANCE),
}
APART = "company_city"  # follows from the employer, a real firm: a prior can answer it
GENERATOR = "engram_run floors"


@dataclass(frozen=True)
class FloorsSettings:
    model: Path = Path("models/smollm2-135m")
    people: int = 1200  # half train: 600 questions per field on train people
    limit: int | None = None  # questions per field (default: all)
    tasks: tuple[str, ...] = tuple(TASKS)
    data_dir: Path = Path("data/floors")
    results: Path = Path("results/floors")


def verdict(acc: float, stderr: float, chance: float) -> tuple[float | None, str]:
    """(z, 'at chance' | 'above chance' | 'below chance'): within 2 standard errors of chance."""
    if stderr == 0:
        return None, "at chance" if acc == chance else ("above chance" if acc > chance else "below chance")
    z = (acc - chance) / stderr
    return z, "at chance" if abs(z) <= 2 else ("above chance" if z > 0 else "below chance")


def rows_of(results: dict, task: str) -> dict[str, dict]:
    """Per field (or ``all``): accuracy, stderr, questions, chance, z and verdict, from lm-eval's file."""
    name, metric, sub, chance = TASKS[task]
    res, counts = results["results"], results.get("n-samples", {})
    fields = {f: sub.format(field=f) for f in FIELDS} if sub else {"all": name}
    rows = {}
    for field, t in fields.items():
        acc, stderr = res[t][f"{metric},none"], res[t][f"{metric}_stderr,none"]
        stderr = 0.0 if stderr in (None, "N/A") else float(stderr)
        z, said = verdict(acc, stderr, chance)
        n = counts.get(t, {}).get("effective")
        rows[field] = {"acc": acc, "stderr": stderr, "n": n, "chance": chance, "z": z, "verdict": said}
    return rows


def markdown(table: dict, model: str, people: int) -> str:
    tasks = list(table)
    lines = [
        f"# Floors of `{model}`: the bioS tasks before fine-tuning",
        "",
        f"{people} people; lm-eval's accuracy ± its standard error, and whether it is within 2 standard "
        "errors of chance (four-option and reverse: 0.25; generative exact match: 0). "
        f"`{APART}` follows from the employer, a real firm with a real headquarters, so a pretrained "
        "model can infer it without recalling anything: it is reported apart.",
        "",
        "| field | " + " | ".join(tasks) + " |",
        "| --- | " + " | ".join("---:" for _ in tasks) + " |",
    ]
    fields = [f for f in FIELDS if f != APART] + [APART, "all"]
    for field in fields:
        cells = []
        for task in tasks:
            row = table[task].get(field)
            cells.append("" if row is None else f"{row['acc']:.3f} ± {row['stderr']:.3f} ({row['verdict']})")
        if any(cells):
            label = f"{field} (apart: inferable)" if field == APART else field
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def floors(s: FloorsSettings) -> Path:
    step = timer("floors")
    unknown = [t for t in s.tasks if t not in TASKS]
    if unknown or not s.tasks:
        raise RunError(f"unknown task {', '.join(unknown) or '(none)'}; choose from {', '.join(TASKS)}")
    if not (Path(s.model) / "config.json").exists():
        raise RunError(f"{s.model} is not a model folder; run `make pretrained` or pass --model FOLDER")
    if not (s.data_dir / MANIFEST).exists():
        step(f"generating {s.people} people into {s.data_dir}")
        launch.generate_data(s.data_dir, s.people, seed=0)
    out = s.results.parent / f".{s.results.name}-lm_eval"
    table = {}
    for task in s.tasks:
        name, _, per_field, _ = TASKS[task]
        # The same questions per task: --limit per field, and as many in all for one-task reverse.
        limit = s.limit if per_field or s.limit is None else s.limit * len(FIELDS)
        step(f"lm-eval {name} on {s.model} (log: {out / task / 'eval.log'})")
        launch.remove_own(out / task)
        if not evaluation.evaluate(model_args(s.model, str(s.model)), s.data_dir, out / task, (name,), limit):
            raise RunError(f"lm-eval {name} failed; see {out / task / 'eval.log'}")
        table[task] = rows_of(evaluation.read_results(evaluation.latest_results(out / task)), task)
        step(", ".join(f"{f} {r['acc']:.3f}" for f, r in table[task].items()))
    with atomic_output(s.results, GENERATOR, overwrite=True) as tmp:
        (tmp / "floors.json").write_text(json.dumps({"model": str(s.model), "people": s.people, **table}, indent=2))
        (tmp / "floors.md").write_text(markdown(table, str(s.model), s.people))
        (tmp / MANIFEST).write_text(json.dumps({"generator": GENERATOR, "model": str(s.model)}) + "\n")
    step(f"done: {s.results / 'floors.md'}")
    return s.results / "floors.md"
