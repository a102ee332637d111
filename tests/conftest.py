"""Shared fixtures: one generated population per session, offline settings for every test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# No test may reach the network: everything is built locally.
for key, value in {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "AXOLOTL_DO_NOT_TRACK": "1",
    "WANDB_MODE": "disabled",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ[key] = value

REPO = Path(__file__).resolve().parent.parent
# A population big enough that every template and split is exercised, small enough to be quick.
NUM_PEOPLE = 600
SEED = 7


def run_generate(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """Run the real CLI, as a user would."""
    return subprocess.run(
        [sys.executable, str(REPO / "generate_data.py"), *args, "--no-progress"],
        cwd=cwd,
        capture_output=True,
        text=True,
    )


@pytest.fixture(scope="session")
def bios_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bios") / "bios"
    proc = run_generate("--num-people", str(NUM_PEOPLE), "--seed", str(SEED), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="session")
def tiny_llama(bios_dir, tmp_path_factory) -> Path:
    """A random tiny Llama with a tokenizer trained on the generated text (no downloads)."""
    from engram_plugin.tiny import build_tiny_model

    return build_tiny_model(bios_dir, tmp_path_factory.mktemp("models") / "tiny-llama", hidden=64, layers=2)


@pytest.fixture(scope="session")
def tiny_models(bios_dir, tiny_llama, tmp_path_factory) -> dict[str, Path]:
    """A tiny random model of every architecture the recipes cover, sharing one tokenizer."""
    from engram_plugin.tiny import ARCHITECTURES, build_tiny_model

    root = tmp_path_factory.mktemp("arch-models")
    models = {"llama": tiny_llama}
    for arch in ARCHITECTURES:
        if arch != "llama":
            models[arch] = build_tiny_model(
                bios_dir, root / arch, arch=arch, hidden=64, layers=2, tokenizer_from=tiny_llama
            )
    return models


def cli_env(**extra: str) -> dict:
    """Environment for the project's command-line tools: offline, the venv's bin on PATH."""
    return {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        **extra,
    }
