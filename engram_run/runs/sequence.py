"""Many runs in sequence: a failure is reported and the rest go on; finished runs are skipped."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

from engram_data.contract import read_manifest
from engram_eval.lm_eval_args import model_args, qlora_quantization
from engram_run.runs import evaluation, launch
from engram_run.runs.recipes import RunError, derive_config, for_gpus, load_recipe, validate, write_config
from engram_run.runs.settings import Run


def resolve_runs(models: list[str], method: str | None, variant: str, status: dict[str, str], **paths) -> Iterator[Run]:
    """The run of each model; an unknown model or method is recorded as failed."""
    for model in models:
        try:
            yield Run.resolve(model, method, variant, **paths)
        except RunError as exc:
            status[model] = f"failed: {exc}"
            print(f"[engram] {model}: FAILED ({exc})", flush=True)


def train_all(
    runs: Iterator[Run],
    data_dir: str | Path,
    force: bool = False,
    overrides: dict | None = None,
    status: dict[str, str] | None = None,
    gpus: int = 1,
) -> dict[str, str]:
    """Train in sequence, each run on ``gpus`` processes (``accelerate launch --num_processes``)
    at its recipe's effective batch. Returns {run: "trained" | "skipped" | "failed: why"}."""
    status = {} if status is None else status
    read_manifest(data_dir)  # a missing or foreign --data-dir fails here, before any training
    for run in runs:
        if launch.is_trained(run.model_dir) and not force:
            status[run.name] = "skipped"
            print(f"[engram] {run.name}: already trained (FORCE=1 retrains)", flush=True)
            continue
        try:
            cfg = for_gpus(derive_config(run.recipe, data_dir, run.model_dir, run.variant, overrides), gpus)
            validate(cfg)  # --set keys and values through Axolotl's schema, before anything is written
            launch.claim(run.dir)  # outputs/<run>/ is ours (new or marked), and so is what is inside it
        except RunError as exc:
            status[run.name] = f"failed: {exc}"
            print(f"[engram] {run.name}: FAILED ({exc})", flush=True)
            continue
        write_config(cfg, run.config)
        launch.start_over_unless_resumable(run.config, run.model_dir, force)
        print(f"[engram] {run.name}: training (log: {run.train_log})", flush=True)
        ok = launch.train(run.config, run.model_dir, run.train_log, launch.gpu_args(gpus))
        status[run.name] = "trained" if ok else f"failed: see {run.train_log}"
        print(f"[engram] {run.name}: {'done' if ok else 'FAILED'}", flush=True)
    return status


def eval_all(
    runs: Iterator[Run],
    data_dir: str | Path,
    tasks=evaluation.EVAL_TASKS,
    limit: int | None = None,
    status: dict[str, str] | None = None,
    backend: str = "hf",
    extra_model_args: str = "",
    merge: bool = False,
) -> dict[str, str]:
    """Score every trained run with lm-eval (``backend``: hf or vllm) into results/<run>/;
    ``merge``: an adapter is merged into its base first (``axolotl merge-lora``)."""
    status = {} if status is None else status
    read_manifest(data_dir)  # a missing or foreign --data-dir fails here, before any evaluation
    for run in runs:
        if not launch.is_trained(run.model_dir):
            status[run.name] = "failed: not trained (make train MODEL=...)"
            print(f"[engram] {run.name}: not trained, skipped", flush=True)
            continue
        cfg = load_recipe(run.config)
        base = cfg["base_model"]
        model_dir = run.model_dir
        if evaluation.saves_modules(model_dir) and not merge:  # lm-eval cannot load it as an adapter
            model_dir = evaluation.merge_adapter(model_dir, base, run.dir / "merged-for-eval")
        elif merge and (model_dir / "adapter_config.json").exists():
            try:
                model_dir = evaluation.merge_lora(run.config, run.model_dir, run.dir / "merge.log")
            except RunError as exc:
                status[run.name] = f"failed: {exc}"
                continue
        # A QLoRA adapter on the 4-bit base it trained on (a merged adapter: on its bf16 merge).
        quant = None if model_dir != run.model_dir else qlora_quantization(cfg, None if launch.cuda() else "float32")
        margs = model_args(model_dir, base, backend, extra_model_args, quant)
        ok = evaluation.evaluate(margs, data_dir, run.results_dir, tasks, limit, backend)
        status[run.name] = "evaluated" if ok else f"failed: see {run.results_dir / 'eval.log'}"
        print(f"[engram] {run.name}: {status[run.name]}", flush=True)
    return status


def summary(status: dict[str, str]) -> int:
    """Print one line per run; the exit status is 1 if any failed."""
    failed = {k: v for k, v in status.items() if v.startswith("failed")}
    for run, st in status.items():
        print(f"  {run}: {st}")
    if failed:
        print(f"{len(failed)} of {len(status)} failed", file=sys.stderr)
    return 1 if failed else 0
