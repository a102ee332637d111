"""The repository, the shared population's size, offline settings, and running the real CLIs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# A population big enough that every template and split is exercised, small enough to be quick.
NUM_PEOPLE = 600
SEED = 7
# No test may reach the network: everything is built locally.
OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "AXOLOTL_DO_NOT_TRACK": "1",
    "WANDB_MODE": "disabled",
    "TOKENIZERS_PARALLELISM": "false",
}


def cli_env(**extra: str) -> dict:
    """Environment for the project's command-line tools: offline, the venv's bin on PATH."""
    return {
        **os.environ,
        **OFFLINE,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        # `accelerate launch` (behind `axolotl train`) would otherwise run on one core.
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(os.cpu_count() or 1)),
        **extra,
    }


def run_generate(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """Run the real generate_data.py, as a user would."""
    return subprocess.run(
        [sys.executable, str(REPO / "generate_data.py"), *args, "--no-progress"],
        cwd=cwd,
        capture_output=True,
        text=True,
    )


def family_of(cfg: dict) -> str:
    """A GPU recipe's architecture (its tiny model's key): the stored shape of its base model,
    which every recipe but tiny-full has (the memory generator needs it)."""
    from engram_run.runs.architectures import ARCHITECTURES

    assert cfg["base_model"] in ARCHITECTURES, f"unknown family for {cfg['base_model']}"
    return ARCHITECTURES[cfg["base_model"]]["model_type"]
