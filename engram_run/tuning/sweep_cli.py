"""The command line of ``make sweep``, ``make lr-find`` and ``make epoch-find`` (engram_run.tuning.sweep,
engram_run.tuning.finders), for ``python -m engram_run``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from engram_data.errors import OneLineParser, number
from engram_run.runs.recipes import RunError
from engram_run.tuning.executors import EXECUTORS, ExecutorSettings
from engram_run.tuning.finders import LRS, epoch_find, lr_find
from engram_run.tuning.sweep import SweepSettings, expand, load_grid_file, parse_grid, parse_value, sweep
from engram_run.tuning.sweep_report import write_sweep


def parse_pairs(pairs: list[str], what: str) -> dict:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise RunError(f"{what} takes KEY=VALUE (got {pair!r})")
        out[key] = parse_value(value)
    return out


# make sweep PRESET=batch: the small-batch advice on the demo's model and data (after make demo):
# the same epochs and rate, batches of 2, 8 and 32 packed rows of 256 tokens.
PRESETS = {
    "batch": {
        "model": "tiny",
        "grid": "micro_batch_size=2,8,32",
        "data_dir": "data/demo",
        "set": ["base_model=outputs/demo/init", "num_epochs=10", "learning_rate=2e-3"],
    },
}


def _add_sweep_options(p: OneLineParser, add_run_options) -> None:
    """What every sweep-like command takes: the run, the name, and where the points run."""
    p.add_argument("--model", required=p.prog.split()[-1] != "sweep", help="a recipe: tiny, llama1b, ...")
    add_run_options(p)
    p.add_argument("--name", default=None, help="results/sweeps/<name>/ (default: the run's name + the command)")
    p.add_argument("--set", nargs="*", default=[], help="KEY=VALUE config overrides on every point")
    p.add_argument("--keep-models", action="store_true", help="keep each point's final weights (default: deleted)")
    p.add_argument("--executor", default="local", choices=EXECUTORS)
    p.add_argument("--partition", default=None, help="SLURM partition")
    p.add_argument(
        "--gpus",
        type=number(int, 0),
        default=None,
        help="GPUs per job (default: 1 on SLURM, none here); >1 launches accelerate with as many processes, "
        "at the recipe's effective batch",
    )
    p.add_argument("--cpus", type=number(int, 1), default=None, help="CPUs per job")
    p.add_argument("--mem-gb", type=number(int, 1), default=None, help="memory per job")
    p.add_argument("--time-min", type=number(int, 1), default=240, help="time limit per job, minutes")
    p.add_argument("--parallel", type=number(int, 1), default=None, help="at most this many jobs at once")
    p.add_argument("--slurm-args", default="", help='more sbatch options, e.g. "account=lab qos=normal"')


def add_sweep_parsers(sub, add_run_options) -> None:
    sw = sub.add_parser("sweep", help="one run per grid point from a recipe; a table of recall, loss and time")
    _add_sweep_options(sw, add_run_options)
    sw.add_argument("--grid", default=None, help='KEY=V1,V2 ..., e.g. "learning_rate=1e-4,3e-4 weight_decay=0,0.1"')
    sw.add_argument("--grid-file", type=Path, default=None, help="a sweep YAML as axolotl train --sweep reads it")
    sw.add_argument(
        "--preset", default=None, choices=sorted(PRESETS), help="batch: the small-batch advice (after make demo)"
    )
    lr = sub.add_parser("lr-find", help="short constant-rate runs; the highest rate whose validation loss is smooth")
    _add_sweep_options(lr, add_run_options)
    lr.add_argument("--lrs", default=" ".join(f"{x:g}" for x in LRS), help='rates, e.g. "1e-4 2e-4 5e-4 1e-3"')
    lr.add_argument("--epochs", type=number(float, 0, low_open=True), default=1.0, help="epochs of each run")
    lr.add_argument("--evals", type=number(int, 3), default=10, help="evaluations of each run")
    lr.add_argument(
        "--max-rise-share",
        type=number(float, 0),
        default=0.2,
        help="smooth: validation loss rises in at most this share of evaluations",
    )
    ep = sub.add_parser("epoch-find", help="one constant-rate run; the epoch where validation loss turns up")
    _add_sweep_options(ep, add_run_options)
    ep.add_argument("--lr", type=number(float, 0, low_open=True), required=True, help="the rate (make lr-find)")
    ep.add_argument("--epochs", type=number(float, 0, low_open=True), default=None, help="default: the recipe's")
    ep.add_argument("--evals-per-epoch", type=number(int, 1), default=2)
    ep.add_argument("--patience", type=number(int, 1), default=3, help="evaluations without a new low")


def sweep_settings(args) -> tuple[SweepSettings, ExecutorSettings]:
    slurm_args = parse_pairs(args.slurm_args.split(), "SLURM_ARGS")
    gpus = args.gpus if args.gpus is not None else (1 if args.executor == "slurm" else 0)
    executor = ExecutorSettings(
        args.executor, args.partition, gpus, args.cpus, args.mem_gb, args.time_min, args.parallel, slurm_args
    )
    overrides = parse_pairs(args.set, "--set")
    s = SweepSettings(
        args.model,
        {},
        args.name,
        args.method,
        args.variant,
        str(args.data_dir),
        overrides,
        args.keep_models,
        args.outputs,
        args.results,
    )
    return s, executor


def quiet_imports() -> None:
    """Import Axolotl's schema (it validates every point) without its libraries' import-time
    notices (torchao's CUDA kernels, bitsandbytes' hub kernels, torch's pytree): on a CPU
    they are noise, and every training run keeps its own in its train.log."""
    import contextlib
    import io
    import logging
    import warnings

    logging.disable(logging.WARNING)
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stderr(io.StringIO()),
            contextlib.redirect_stdout(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            import axolotl.utils.config  # noqa: F401
            import axolotl.utils.schemas.config  # noqa: F401

            with contextlib.suppress(Exception):  # imported by Axolotl's validation, when installed
                import bitsandbytes  # noqa: F401
    finally:
        logging.disable(logging.NOTSET)


def sweep_command(args) -> int:
    """Run the command; prints where its table is. Exit status 1 if a point failed."""
    quiet_imports()
    path, failed = _run(args)
    print(f"{args.command}: {path}")
    return 1 if failed else 0


def _run(args) -> tuple[Path, int]:
    if args.command == "sweep" and args.preset:
        preset = PRESETS[args.preset]
        args.model, args.data_dir = args.model or preset["model"], preset["data_dir"]
        args.grid, args.set = args.grid or preset["grid"], [*preset["set"], *args.set]
        args.name = args.name or f"preset-{args.preset}"
        if not Path(parse_pairs(preset["set"], "PRESET")["base_model"]).is_dir():
            raise RunError(f"PRESET={args.preset} trains the demo's model on the demo's data: run `make demo` first")
    if args.command == "sweep" and not args.model:
        raise RunError("sweep needs --model (MODEL=...)")
    s, executor = sweep_settings(args)
    if args.command == "lr-find":
        lrs = [parse_value(x) for x in args.lrs.replace(",", " ").split()]
        if not lrs or not all(isinstance(x, float | int) and x > 0 for x in lrs):
            raise RunError(f'LRS takes positive numbers, e.g. LRS="1e-4 2e-4 5e-4" (got {args.lrs!r})')
        return lr_find(s, executor, [float(x) for x in lrs], args.epochs, args.evals, args.max_rise_share), 0
    if args.command == "epoch-find":
        return epoch_find(s, executor, args.lr, args.epochs, args.evals_per_epoch, args.patience), 0
    if bool(args.grid) == bool(args.grid_file):
        raise RunError('sweep takes one of GRID="KEY=V1,V2 ..." or GRID_FILE=sweep.yml (or PRESET=batch)')
    grid = parse_grid(args.grid) if args.grid else load_grid_file(args.grid_file)
    s = dataclasses.replace(s, grid=grid)
    rows = sweep(s, executor)
    keys = list(dict.fromkeys(k for point in expand(grid) for k in point))
    settings = {"model": s.model, "run": s.run.name, "grid": grid, "set": s.overrides, "executor": args.executor}
    path = write_sweep(rows, keys, s.results / "sweeps" / s.sweep_name, f"Sweep {s.sweep_name}", settings)
    failed = sum(r["status"] != "done" for r in rows)
    if failed:
        print(f"{failed} of {len(rows)} points failed; the table has the rest", flush=True)
    return path, failed
