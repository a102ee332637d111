"""Launching the tools as their own processes: ``engram-data`` (generate_data.py), ``axolotl
train`` and ``engram-eval`` (lm-eval with llm-engram's tasks); finding lm-eval's result files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from lm_eval.utils import get_latest_filename, get_results_filenames

from engram_run.recipes import RunError

DONE_FILE = ".engram_done"
EVAL_TASKS = ("bios_qa", "bios_qa_heldout", "bios_qa_reverse")


def tool(name: str) -> str:
    """A console script of this environment (axolotl, engram-eval, accelerate)."""
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else name


def tool_env() -> dict:
    # axolotl launches `accelerate` by name: this environment's bin must be on PATH.
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def generate_data(out: Path, people: int, seed: int = 0) -> None:
    """``engram-data`` (generate_data.py): a bioS population in ``out``, replacing only a
    previous output of it. Raises RunError with the tool's own error line."""
    cmd = [tool("engram-data"), "--num-people", str(people), "--seed", str(seed), "--out", str(out),
           "--overwrite", "--no-progress"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=tool_env())
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"]
        raise RunError(lines[-1])


def is_trained(model_dir: Path) -> bool:
    return (model_dir / DONE_FILE).exists()


def train(config: Path, model_dir: Path, log: Path) -> bool:
    """``axolotl train CONFIG``, output in ``log``; True on success (and marks it done)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as f:
        code = subprocess.call(
            [tool("axolotl"), "train", str(config)], stdout=f, stderr=subprocess.STDOUT, env=tool_env()
        )
    if code == 0:
        (model_dir / DONE_FILE).write_text(time.strftime("%Y-%m-%dT%H:%M:%S") + "\n")
    return code == 0


def evaluate(
    model_args: str,
    data_dir: str | Path,
    out: Path,
    tasks=EVAL_TASKS,
    limit: int | None = None,
    batch_size: int = 32,
    log: Path | None = None,
) -> bool:
    """``engram-eval`` (lm_eval with our tasks) into ``out`` in lm-eval's own JSON format."""
    import torch

    cmd = [
        tool("engram-eval"), "--model", "hf", "--model_args", model_args,
        "--tasks", ",".join(tasks), "--metadata", json.dumps({"data_dir": str(data_dir)}),
        "--output_path", str(out), "--batch_size", str(batch_size),
        "--device", "cuda" if torch.cuda.is_available() else "cpu",
    ]  # fmt: skip
    if limit:
        cmd += ["--limit", str(limit)]
    out.mkdir(parents=True, exist_ok=True)
    with (log or out / "eval.log").open("w") as f:
        return subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, env=tool_env()) == 0


def latest_results(run_dir: Path) -> Path | None:
    """The newest ``results_<datetime>.json`` lm-eval wrote under ``run_dir`` (its own lookup)."""
    found = get_results_filenames([str(p) for p in run_dir.rglob("results_*.json")])
    return Path(get_latest_filename(found)) if found else None
