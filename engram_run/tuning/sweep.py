"""``make sweep``: one training run per point of a grid over a recipe's keys, and one table.

Usage:
    python -m engram_run sweep --model tiny --grid "learning_rate=1e-4,3e-4 weight_decay=0,0.1"
    python -m engram_run sweep --model llama1b --grid-file my_sweep.yml --executor slurm --gpus 4

The grid is ``KEY=V1,V2 ...`` (the cartesian product), or a YAML file in the format of
``axolotl train --sweep`` (a list per key; ``_``: a list of settings that go together).
Every point is the recipe (``derive_config``: data, text variant, ``--set``) with the point's
values on top, checked with Axolotl's schema before anything runs. A point is a measurement,
not a model to keep: no checkpoints, and its weights are deleted when it is scored unless
``--keep-models``. Points run through an executor (engram_run.tuning.executors): here in sequence,
or as SLURM jobs through submitit.

    OUTPUTS/sweeps/<name>/<point>/   config.yml, train.log, model/ (logs), point.json
    RESULTS/sweeps/<name>/sweep.{md,csv,json,png}

A point whose ``point.json`` exists for the same config is finished: a rerun skips it. A
failed point is reported and the others go on; a rerun retries it.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from engram_data.contract import read_manifest
from engram_run.runs import launch
from engram_run.runs.recipes import DEFAULT_DATA_DIR, RunError, derive_config, for_gpus, validate
from engram_run.runs.settings import DEFAULT_VARIANT, Run
from engram_run.tuning.executors import execute
from engram_run.tuning.points import PointJob, finished


@dataclass(frozen=True)
class SweepSettings:
    model: str
    grid: dict = field(default_factory=dict)  # {key: [values]} and optionally "_": [{key: value, ...}]
    name: str | None = None  # default: the run's name, <model>-<method>-<variant>
    method: str | None = None
    variant: str = DEFAULT_VARIANT
    data_dir: str = DEFAULT_DATA_DIR
    overrides: dict = field(default_factory=dict)  # --set: on every point, under the grid's values
    keep_models: bool = False
    outputs: Path = Path("outputs")
    results: Path = Path("results")

    @property
    def run(self) -> Run:
        return Run.resolve(self.model, self.method, self.variant, outputs=self.outputs, results=self.results)

    @property
    def sweep_name(self) -> str:
        return self.name or self.run.name


# -- the grid


def parse_value(text: str):
    """``1e-4`` -> 0.0001 (YAML would read a string), ``8`` -> 8, ``true`` -> True, ``cosine``."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return yaml.safe_load(text)


def parse_grid(text: str) -> dict[str, list]:
    """``"learning_rate=1e-4,3e-4 weight_decay=0,0.1"`` -> {key: [values]}."""
    grid: dict[str, list] = {}
    for part in text.split():
        key, sep, values = part.partition("=")
        if not sep or not key or not values:
            raise RunError(f'GRID takes KEY=V1,V2 ... (got {part!r}), e.g. GRID="learning_rate=1e-4,3e-4"')
        if key in grid:
            raise RunError(f"GRID names {key} twice; give all its values once: {key}=V1,V2")
        grid[key] = [parse_value(v) for v in values.split(",") if v != ""]
    if not grid:
        raise RunError('GRID is empty; give KEY=V1,V2 ..., e.g. GRID="learning_rate=1e-4,3e-4"')
    return grid


def load_grid_file(path: Path) -> dict:
    """A sweep file as ``axolotl train --sweep`` reads it: {key: [values], "_": [{...}, ...]}."""
    try:
        grid = yaml.safe_load(Path(path).read_text("utf-8"))
    except OSError as exc:
        raise RunError(
            f"cannot read the grid file {path} ({exc.strerror or exc}); pass an existing YAML file"
        ) from None
    except yaml.YAMLError as exc:
        raise RunError(f"{path} is not valid YAML ({str(exc).splitlines()[0]}); fix the file") from None
    ok = isinstance(grid, dict) and grid and all(isinstance(v, list) and v for v in grid.values())
    if not ok or not all(isinstance(d, dict) for d in grid.get("_", [])):
        raise RunError(f"{path} is not a sweep file: a mapping of KEY: [values] (and optionally _: [{{KEY: value}}])")
    return grid


def expand(grid: dict) -> list[dict]:
    """The points, in the grid's order: the product of every key's values, times each set
    under ``_`` (axolotl's sweep format; unlike ``axolotl train --sweep``, not shuffled)."""
    keys = [k for k in grid if k != "_"]
    paired = grid.get("_") or [{}]
    return [
        {**dict(zip(keys, combo, strict=True)), **extra}
        for combo in itertools.product(*(grid[k] for k in keys))
        for extra in paired
    ]


def point_id(values: dict) -> str:
    """A folder name: ``learning_rate-0.0001__weight_decay-0`` (no ``=`` or ``,``, which lm-eval's
    --model_args would split)."""

    def fmt(v) -> str:
        text = f"{v:g}" if isinstance(v, float) else str(v)
        return re.sub(r"[^A-Za-z0-9._+-]", "_", text)

    return "__".join(f"{k}-{fmt(v)}" for k, v in values.items()) or "recipe"


# -- planning: every point checked before anything is written


def measurement(cfg: dict) -> dict:
    """A point measures, it does not keep: no checkpoints, no best-model copies, no lm-eval
    after training (the plugin's recall at every evaluation is the score)."""
    for key in ("saves_per_epoch", "save_steps", "save_total_limit", "load_best_model_at_end"):
        cfg.pop(key, None)
    cfg["save_strategy"] = "no"
    if "engram_data_dir" in cfg:
        cfg |= {"engram_save_best": False, "engram_post_eval": False}
    return cfg


def check_keys(keys, validated) -> None:
    """Axolotl drops a key it does not know: a misspelled grid key would make every point the same."""
    import difflib

    from axolotl.utils.schemas.config import AxolotlInputConfig

    for key in keys:
        if key not in validated:
            close = difflib.get_close_matches(key, sorted(AxolotlInputConfig.model_fields), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise RunError(f"'{key}' is not an Axolotl config key, so Axolotl would ignore it{hint}")


def plan(s: SweepSettings, points: list[dict], adjust=None, launcher_args: tuple[str, ...] = ()) -> list[PointJob]:
    """One job per point: the recipe's config with the point on top (``adjust``: what the
    caller sets on every point after it, e.g. lr-find's constant rate), each validated."""
    run = s.run
    read_manifest(s.data_dir)  # a missing or foreign data dir fails here, before any training
    root = (s.outputs / "sweeps" / s.sweep_name).resolve()
    jobs, seen = [], {}
    for values in points:
        pid = point_id(values)
        if pid in seen:
            raise RunError(f"points {seen[pid]} and {values} share the folder name {pid}; make their values differ")
        seen[pid] = values
        given = {**s.overrides, **values}
        cfg = derive_config(run.recipe, s.data_dir, root / pid / "model", s.variant, given)
        for a, b in (("eval_steps", "evals_per_epoch"), ("evals_per_epoch", "eval_steps")):
            if a in given and b not in given:
                cfg.pop(b, None)  # Axolotl takes one of the two: the one given wins over the recipe's
        cfg = measurement(adjust(cfg) if adjust else cfg)
        gpus = int(launcher_args[1]) if launcher_args else 1
        if gpus > 1:
            cfg = for_gpus(cfg, gpus)  # the recipe's effective batch on every GPU count
        check_keys([*values, *s.overrides], validate(cfg))
        jobs.append(PointJob(pid, values, cfg, str(root / pid), str(Path.cwd()), launcher_args, s.keep_models))
    return jobs


def sweep(s: SweepSettings, executor, points: list[dict] | None = None, adjust=None) -> list[dict]:
    """Plan, skip what is finished, run the rest through ``executor``; the rows in grid order."""
    executor.check()
    jobs = plan(s, expand(s.grid) if points is None else points, adjust, executor.launcher_args)
    root = launch.claim(s.outputs / "sweeps" / s.sweep_name)  # new, or engram_run's own
    rows: dict[str, dict] = {}
    todo = []
    for job in jobs:
        done = finished(job)
        if done is not None:
            print(f"[sweep] {job.id}: finished before, skipped (delete {job.dir} to rerun it)", flush=True)
            rows[job.id] = done
        else:
            launch.claim(Path(job.dir))
            todo.append(job)
    rows.update(execute(todo, executor, root))
    return [rows[j.id] for j in jobs]
