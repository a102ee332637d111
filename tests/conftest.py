"""Session fixtures: one generated population and tiny models of every architecture, shared
by all tests; offline settings for every test. Helpers live in tests/helpers/."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers.common import NUM_PEOPLE, OFFLINE, SEED, run_generate

os.environ.update(OFFLINE)


@pytest.fixture(scope="session")
def bios_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bios") / "bios"
    proc = run_generate("--num-people", str(NUM_PEOPLE), "--seed", str(SEED), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="session")
def tiny_llama(bios_dir, tmp_path_factory) -> Path:
    """A random tiny Llama with a tokenizer trained on the generated data (no downloads)."""
    from engram_run.runs.tiny import build_tiny_model

    return build_tiny_model(bios_dir, tmp_path_factory.mktemp("models") / "tiny-llama", hidden=64, layers=2)


@pytest.fixture(scope="session")
def tiny_models(bios_dir, tiny_llama, tmp_path_factory) -> dict[str, Path]:
    """A tiny random model of every architecture the recipes cover, sharing one tokenizer."""
    from engram_run.runs.tiny import ARCHITECTURES, build_tiny_model

    root = tmp_path_factory.mktemp("arch-models")
    models = {"llama": tiny_llama}
    for arch in ARCHITECTURES:
        if arch != "llama":
            models[arch] = build_tiny_model(
                bios_dir, root / arch, arch=arch, hidden=64, layers=2, tokenizer_from=tiny_llama
            )
    return models
