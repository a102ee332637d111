"""A run killed after its second evaluation (SIGTERM, and separately SIGKILL) and started
again resumes from its last complete checkpoint through Axolotl's own resume: the same final
recall as an uninterrupted run, the same evaluation steps in its logs with none twice, and a
best checkpoint that the run kept. (issue 29)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.common import cli_env, run_generate

from engram_data.run_files import LOG_HISTORY, RECALL_HISTORY
from engram_run.runs import launch
from engram_run.runs.recipes import RECIPES_DIR, derive_config, write_config

EPOCHS = 3  # an evaluation and a checkpoint each epoch: [0, 15, 30, 45]
TRAIN = (
    "from engram_run.runs import launch; import sys; from pathlib import Path; p = Path(sys.argv[1]); "
    "sys.exit(0 if launch.train(p / 'config.yml', p / 'model', p / 'train.log') else 1)"
)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_llama):
    root = tmp_path_factory.mktemp("resume")
    assert run_generate("--num-people", "40", "--out", str(root / "data")).returncode == 0
    return root, tiny_llama


def config(root: Path, run: str, model: Path) -> Path:
    overrides = {
        "base_model": str(model),
        "num_epochs": EPOCHS,
        "micro_batch_size": 4,
        "learning_rate": 3e-3,
        "engram_eval_samples": 20,
        "save_total_limit": 2,
    }
    cfg = derive_config(RECIPES_DIR / "tiny-full.yml", root / "data", root / run / "model", None, overrides)
    return write_config(cfg, root / run / "config.yml")


def start(root: Path, run: str, capture: bool = False) -> subprocess.Popen:
    """``launch.train`` as a user's ``make train`` runs it, in its own process group."""
    env = cli_env(ENGRAM_WORKER="0")  # axolotl as a child process, killed with the group
    out = subprocess.PIPE if capture else subprocess.DEVNULL
    return subprocess.Popen(
        [sys.executable, "-c", TRAIN, str(root / run)],
        env=env,
        start_new_session=True,
        stdout=out,
        stderr=subprocess.STDOUT,
        text=True,
    )


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture(scope="module")
def uninterrupted(setup):
    root, model = setup
    config(root, "whole", model)
    assert start(root, "whole").wait(timeout=600) == 0, (root / "whole" / "train.log").read_text()[-3000:]
    return root / "whole" / "model"


def complete_checkpoint_after(model_dir: Path, step: int) -> bool:
    return any(
        (p / "trainer_state.json").exists() and int(p.name.split("-")[-1]) >= step
        for p in model_dir.glob("checkpoint-*")
    )


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_killed_run_resumes_where_it_stopped(setup, uninterrupted, sig):
    root, model = setup
    run = f"killed-{sig.name}"
    config(root, run, model)
    model_dir = root / run / "model"
    proc = start(root, run)
    deadline = time.time() + 600
    while time.time() < deadline:  # the second evaluation after step 0, and its checkpoint saved
        history = lines(model_dir / RECALL_HISTORY)
        if len(history) >= 3 and complete_checkpoint_after(model_dir, history[2]["step"]):
            break
        assert proc.poll() is None, (root / run / "train.log").read_text()[-3000:]
        time.sleep(0.2)
    os.killpg(proc.pid, sig)
    proc.wait(timeout=60)
    assert not launch.is_trained(model_dir)
    killed_at = [h["step"] for h in lines(model_dir / RECALL_HISTORY)]
    again = start(root, run, capture=True)
    printed = again.communicate(timeout=600)[0]
    assert again.returncode == 0, (root / run / "train.log").read_text()[-3000:]
    assert f"[engram] resuming {model_dir} from checkpoint-" in printed, printed

    whole = lines(uninterrupted / RECALL_HISTORY)
    resumed = lines(model_dir / RECALL_HISTORY)
    steps = [h["step"] for h in resumed]
    assert steps == [h["step"] for h in whole] and len(set(steps)) == len(steps) == EPOCHS + 1, (killed_at, steps)
    eval_steps = [h["step"] for h in lines(model_dir / LOG_HISTORY) if "eval_loss" in h]
    assert eval_steps == [h["step"] for h in lines(uninterrupted / LOG_HISTORY) if "eval_loss" in h]
    assert len(set(eval_steps)) == len(eval_steps)
    # Resumed from the same weights, optimizer, scheduler, RNG and data position: every scoring
    # (recall, heldout, reverse, per field) and every validation loss is the uninterrupted run's.
    assert resumed == whole
    eval_loss = [(h["step"], h["eval_loss"]) for h in lines(model_dir / LOG_HISTORY) if "eval_loss" in h]
    assert eval_loss == [(h["step"], h["eval_loss"]) for h in lines(uninterrupted / LOG_HISTORY) if "eval_loss" in h]
    assert resumed[0] == whole[0]  # the step-0 floor, logged once, before the kill
    best = [p for p in model_dir.glob("best_model_qa_*")]
    assert len(best) == 1 and best[0].resolve().is_dir()
    assert best[0].resolve().parent == model_dir.resolve() and best[0].resolve().name.startswith("checkpoint-")


@pytest.mark.slow
def test_a_preempted_submitit_job_requeues_itself_and_resumes(setup, uninterrupted):
    """A sweep point submitted through submitit's local executor, signalled the way SLURM
    signals a job it preempts (USR2 to the job's task), checkpoints, requeues and resumes from
    the point's last checkpoint."""
    import yaml

    from engram_run.tuning.executors import ExecutorSettings
    from engram_run.tuning.points import PointJob, RunPoint

    root, model = setup
    point = root / "point"
    cfg = yaml.safe_load(config(root, "point", model).read_text())
    job = PointJob(id="p", values={}, config=cfg, dir=str(point), cwd=str(root), keep_model=True)
    executor = ExecutorSettings(kind="submitit-local").submitit(root / "submitit")
    executor.update_parameters(timeout_min=60)
    submitted = executor.submit(RunPoint(), job)
    model_dir = point / "model"
    deadline = time.time() + 600
    while time.time() < deadline:
        history = lines(model_dir / RECALL_HISTORY)
        if len(history) >= 3 and complete_checkpoint_after(model_dir, history[2]["step"]):
            break
        assert not submitted.done(), submitted.stderr()
        time.sleep(0.2)
    # SLURM signals the job's tasks (USR2 before it preempts or ends a job; submitit's
    # LocalJob._interrupt signals the local controller instead, which does not forward it).
    (task,) = Path(f"/proc/{submitted.job_id}/task/{submitted.job_id}/children").read_text().split()
    os.kill(int(task), signal.SIGUSR2)
    row = submitted.result()
    assert row["status"] == "done", row
    printed = (submitted.stderr() or "") + (submitted.stdout() or "")
    assert "this job is preempted" in printed and "Requeued job" in printed, printed
    assert f"[engram] resuming {model_dir} from checkpoint-" in printed, printed
    assert lines(model_dir / RECALL_HISTORY) == lines(uninterrupted / RECALL_HISTORY)  # every scoring, exactly


@pytest.mark.slow
def test_a_full_disk_while_saving_fails_in_one_line_and_the_rerun_resumes(setup, uninterrupted):
    from helpers.common import REPO

    root, model = setup
    run = "full-disk"
    config(root, run, model)
    model_dir = root / run / "model"
    env = cli_env(
        ENGRAM_WORKER="0",
        ENGRAM_TEST_FULL_DISK_AT="checkpoint-30",
        PYTHONPATH=str(REPO / "tests" / "helpers" / "full_disk"),
    )
    proc = subprocess.run([sys.executable, "-c", TRAIN, str(root / run)], env=env, capture_output=True, text=True)
    assert proc.returncode == 1
    (line,) = [x for x in proc.stdout.splitlines() if "disk is full" in x]
    assert line.startswith(f"[engram] {model_dir}: the disk is full (No space left on device while saving)")
    assert "MiB are free there" in line and line.endswith("it resumes from checkpoint-15"), line
    assert not (model_dir / "checkpoint-30").exists()  # cut off mid-save: removed, never resumed from
    again = start(root, run, capture=True)
    printed = again.communicate(timeout=600)[0]
    assert again.returncode == 0 and f"[engram] resuming {model_dir} from checkpoint-15" in printed, printed
    assert lines(model_dir / RECALL_HISTORY) == lines(uninterrupted / RECALL_HISTORY)  # every scoring, exactly


def test_starting_over_clears_the_prepared_data_in_our_run_folder_only(tmp_path, monkeypatch):
    """Axolotl names a prepared dataset by the config, not the files' content: a run that starts
    over on rewritten data must not load the old tokens. A resumed run keeps them; a prepared
    folder outside the run folder is not ours to delete."""
    monkeypatch.chdir(tmp_path)
    run = launch.claim(tmp_path / "outputs" / "run")
    elsewhere = tmp_path / "shared-prepared"
    for prepared, kept in (("outputs/run/prepared", False), (str(elsewhere), True)):
        (tmp_path / prepared / "abc123").mkdir(parents=True)
        config = run / "config.yml"
        config.write_text(f"dataset_prepared_path: {prepared}\n")
        (run / "model").mkdir(exist_ok=True)
        (run / "model" / launch.DONE_FILE).write_text("")  # a finished run: no resume
        launch.start_over_unless_resumable(config, run / "model")
        assert not (run / "model").exists() and (tmp_path / prepared).exists() == kept
    # An interrupted run of this config resumes: its model folder and prepared data stay.
    config.write_text("dataset_prepared_path: outputs/run/prepared\n")
    (run / "prepared" / "abc123").mkdir(parents=True)
    (run / "model" / "checkpoint-3").mkdir(parents=True)
    (run / "model" / "checkpoint-3" / "trainer_state.json").write_text("{}")
    (run / "model" / launch.CONFIG_SUM).write_text(launch.config_sum(config))
    launch.start_over_unless_resumable(config, run / "model")
    assert (run / "model" / "checkpoint-3").exists() and (run / "prepared" / "abc123").exists()
    launch.start_over_unless_resumable(config, run / "model", force=True)  # FORCE=1
    assert not (run / "model").exists() and not (run / "prepared").exists()
