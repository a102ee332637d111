"""make lr-find / epoch-find / sweep: the smoothness measure and the turn-up on hand-made
curves with known answers; the grid; a 2-point sweep on the tiny model end to end (a rerun
skips both points and writes the same table; a failing point is reported and the other goes
on); lr-find through submitit's local executor; the SLURM job a sweep would submit."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.common import cli_env

from engram_run.runs.recipes import RunError
from engram_run.tuning.curves import choose_rate, rise_share, smoothness, turn_up, tv_ratio
from engram_run.tuning.executors import ExecutorSettings
from engram_run.tuning.sweep import expand, parse_grid, point_id

# -- hand-made curves


def curve(val: list[float], train: list[float] | None = None) -> dict:
    train = train if train is not None else val
    return {
        "eval": [{"step": i, "epoch": i, "eval_loss": v} for i, v in enumerate(val)],
        "train": [{"step": i, "epoch": i, "loss": v} for i, v in enumerate(train)],
    }


def test_smoothness_counts_the_rises_of_validation_loss_and_the_path_of_training_loss():
    assert rise_share([5, 4, 3, 2, 1]) == 0.0
    assert rise_share([5, 4, 4.5, 3, 3.5]) == 0.5  # 2 rises in 4 steps
    assert rise_share([5]) == 0.0
    assert tv_ratio([5, 4, 3, 2, 1]) == 1.0  # only falls
    assert tv_ratio([5, 3, 4, 1]) == pytest.approx((2 + 1 + 3) / 4)
    assert tv_ratio([5, 3, 6]) == math.inf and tv_ratio([5, math.nan, 1]) == math.inf
    m = smoothness(curve([3.0, 2.5, 2.6, 2.2, 2.0, 2.1], [4.0, 3.0, 3.5, 2.5]))
    assert (m["evaluations"], m["val_rises"], m["val_rise_share"]) == (6, 2, 0.4)
    assert m["train_tv_ratio"] == pytest.approx((1 + 0.5 + 1) / 1.5) and m["val_diverged"] is False


def test_the_chosen_rate_is_the_highest_smooth_one_and_the_reason_names_the_others():
    runs = {
        1e-4: smoothness(curve([3, 2.8, 2.6, 2.5, 2.4, 2.3])),  # smooth, slow
        3e-4: smoothness(curve([3, 2.5, 2.2, 2.0, 2.05, 1.9])),  # one rise in 5: 20%
        1e-3: smoothness(curve([3, 2.4, 2.6, 2.2, 2.5, 2.1])),  # two rises in 5: oscillates
        3e-3: smoothness(curve([3, 3.5, 4.0, 9.0, math.nan, math.nan])),  # diverged
    }
    lr, why = choose_rate(runs, max_rise_share=0.2)
    assert lr == 3e-4
    assert why.startswith("0.0003: the highest rate whose validation loss stays smooth (rose in 1 of 5 evaluations")
    assert "; 0.001: its validation loss rose in 2 of 5 evaluations: it oscillates" in why
    assert "; 0.003: its validation loss did not end below where it began" in why
    assert choose_rate(runs, max_rise_share=0.0)[0] == 1e-4
    # At 50% 1e-3 counts as smooth but ends at 2.1, above 1.9 at 3e-4: it overshoots.
    lr, why = choose_rate(runs, max_rise_share=0.5)
    assert lr == 3e-4 and "0.001: its validation loss ended at 2.1, above 1.9 at 0.0003: it overshoots" in why
    # A smooth curve that ends lower than every lower rate's is chosen.
    runs[1e-3] = smoothness(curve([3, 2.4, 2.2, 2.0, 1.8, 1.7]))
    assert choose_rate(runs, max_rise_share=0.2)[0] == 1e-3
    lr, why = choose_rate({3e-3: runs[3e-3]}, 0.2)
    assert lr is None and why.startswith("no rate kept validation loss smooth") and why.endswith("try lower rates")
    assert "add higher LRS" in choose_rate({1e-4: runs[1e-4]}, 0.2)[1]


def test_turn_up_is_the_lowest_loss_that_patience_evaluations_failed_to_beat():
    assert turn_up([5, 4, 3, 2, 2.5, 2.6, 2.7], patience=3) == 3
    assert turn_up([5, 4, 3, 2, 2.5, 2.6, 2.7], patience=4) is None  # not waited long enough
    # A bump is not a turn-up: the loss went lower again within the patience.
    assert turn_up([5, 4, 3, 3.1, 2.9, 3.0, 3.2, 3.3], patience=3) == 4
    assert turn_up([5, 4, 3, 3.1, 2.9, 3.0, 3.2, 3.3], patience=1) == 2
    assert turn_up([5, 4, 3, 2, 1], patience=1) is None  # still falling
    assert turn_up([2, 2, 2, 2], patience=3) == 0  # equal is not lower
    with pytest.raises(ValueError):
        turn_up([1, 2], patience=0)


def test_grid_parses_numbers_as_numbers_and_expands_in_order():
    grid = parse_grid("learning_rate=1e-4,3e-4 weight_decay=0,0.1 lr_scheduler=cosine")
    assert grid == {"learning_rate": [1e-4, 3e-4], "weight_decay": [0, 0.1], "lr_scheduler": ["cosine"]}
    points = expand(grid)
    assert len(points) == 4 and points[0] == {"learning_rate": 1e-4, "weight_decay": 0, "lr_scheduler": "cosine"}
    assert points[1]["weight_decay"] == 0.1 and points[2]["learning_rate"] == 3e-4
    assert point_id(points[1]) == "learning_rate-0.0001__weight_decay-0.1__lr_scheduler-cosine"
    # axolotl train --sweep's file format: values that go together under "_".
    paired = expand({"learning_rate": [1e-4], "_": [{"adapter": "lora", "lora_r": 8}, {"adapter": None}]})
    assert paired == [{"learning_rate": 1e-4, "adapter": "lora", "lora_r": 8}, {"learning_rate": 1e-4, "adapter": None}]
    for bad in ("learning_rate", "learning_rate=", "a=1 a=2", ""):
        with pytest.raises(RunError, match="GRID"):
            parse_grid(bad)


def test_a_slurm_job_asks_for_the_partition_gpus_and_time_and_launches_accelerate(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    with pytest.raises(RunError, match="EXECUTOR=slurm needs SLURM's sbatch and srun on PATH"):
        ExecutorSettings("slurm").check()
    (tmp_path / "bin").mkdir()
    for name in ("sbatch", "srun"):  # a login node, as far as submitit looks
        (tmp_path / "bin" / name).write_text("#!/bin/sh\n")
        (tmp_path / "bin" / name).chmod(0o755)
    ExecutorSettings("slurm").check()
    settings = ExecutorSettings(
        "slurm", partition="gpu", gpus=4, cpus=32, mem_gb=200, time_min=600, parallel=2, slurm_args={"account": "lab"}
    )
    assert settings.launcher_args == ("--num_processes", "4")
    assert ExecutorSettings("slurm", gpus=1).launcher_args == ()
    executor = settings.submitit(tmp_path / "jobs")
    text = executor._executor._make_submission_file_text("python -m submitit.core._submit x", "uid")
    for line in (
        "--partition=gpu",
        "--gpus-per-node=4",
        "--time=600",
        "--cpus-per-task=32",
        "--mem=200GB",
        "--account=lab",
        "--ntasks-per-node=1",
    ):
        assert f"#SBATCH {line}" in text, text
    assert executor._executor.parameters["array_parallelism"] == 2
    with pytest.raises(RunError, match="unknown EXECUTOR=pbs; choose from local, slurm, submitit-local"):
        ExecutorSettings("pbs")


# -- end to end on the tiny model


def engram_run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "engram_run", *args], cwd=cwd, env=cli_env(), capture_output=True, text=True
    )


def tiny_args(bios_dir: Path, tiny_llama: Path, steps: int = 6) -> list[str]:
    return [
        "--model",
        "tiny",
        "--data-dir",
        str(bios_dir),
        "--set",
        f"base_model={tiny_llama}",
        f"max_steps={steps}",
        "engram_eval_samples=4",
        "engram_eval_heldout=false",
        "engram_eval_reverse=false",
        "sample_packing=false",
        "micro_batch_size=8",
        "logging_steps=1",
    ]


@pytest.mark.slow
def test_a_two_point_sweep_end_to_end_skips_finished_points_and_reports_a_failed_one(bios_dir, tiny_llama, tmp_path):
    args = ["sweep", *tiny_args(bios_dir, tiny_llama), "eval_steps=3", "--grid", "learning_rate=1e-3,3e-3"]
    proc = engram_run(*args, cwd=tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    out = tmp_path / "results/sweeps/tiny-full-bioS_multi5_permutes"
    assert proc.stdout.strip().endswith(f"sweep: {out.relative_to(tmp_path)}/sweep.md")
    data = json.loads((out / "sweep.json").read_text())
    rows = data["points"]
    assert [r["learning_rate"] for r in rows] == [1e-3, 3e-3] and all(r["status"] == "done" for r in rows)
    for r in rows:
        evals = r["curves"]["eval"]
        assert [e["step"] for e in evals] == [0, 3, 6]  # the untrained model, then eval_steps=3 of max_steps=6
        assert r["val_loss_final"] == evals[-1]["eval_loss"] and r["val_loss_min"] == min(e["eval_loss"] for e in evals)
        assert r["recall_final"] == evals[-1]["recall"] and r["recall_best"] == max(e["recall"] for e in evals)
        assert 0 <= r["recall_final"] <= 1 and r["seconds"] > 0
        assert [t["step"] for t in r["curves"]["train"]] == [1, 2, 3, 4, 5, 6]  # logging_steps=1
        point = tmp_path / "outputs/sweeps/tiny-full-bioS_multi5_permutes" / r["id"]
        config = (point / "config.yml").read_text()
        assert f"learning_rate: {r['learning_rate']}" in config and "save_strategy: 'no'" in config
        assert not list((point / "model").glob("*.safetensors"))  # a point measures: weights deleted
    csv = (out / "sweep.csv").read_text().splitlines()
    assert csv[0].startswith("learning_rate,status,recall_final,recall_best") and len(csv) == 3
    assert (out / "sweep.png").stat().st_size > 5_000 and (out / "sweep_curves.png").stat().st_size > 5_000
    before = {p.name: p.read_bytes() for p in out.glob("sweep.*") if p.suffix in (".json", ".csv", ".md")}

    again = engram_run(*args, cwd=tmp_path)
    assert again.returncode == 0 and again.stdout.count("finished before, skipped") == 2, again.stdout
    assert {p.name: p.read_bytes() for p in out.glob("sweep.*") if p.suffix in (".json", ".csv", ".md")} == before

    # A negative rate passes the schema but fails in the optimizer: reported, the other point
    # is skipped (finished), the exit status says a point failed.
    proc = engram_run(*args[:-1], "learning_rate=1e-3,-1", cwd=tmp_path)
    assert proc.returncode == 1 and "1 of 2 points failed" in proc.stdout, proc.stdout[-2000:]
    rows = json.loads((out / "sweep.json").read_text())["points"]
    assert rows[0]["status"] == "done" and rows[1]["status"].startswith("failed: see ")
    assert rows[1]["status"].endswith("learning_rate--1/train.log")


@pytest.mark.slow
def test_lr_find_through_submitits_local_executor(bios_dir, tiny_llama, tmp_path):
    proc = engram_run(
        "lr-find",
        *tiny_args(bios_dir, tiny_llama, steps=8),
        "--lrs",
        "1e-3 1e-2",
        "--evals",
        "4",
        "--executor",
        "submitit-local",
        "--time-min",
        "20",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    out = tmp_path / "results/sweeps/tiny-full-bioS_multi5_permutes-lr-find"
    data = json.loads((out / "lr_find.json").read_text())
    assert [r["learning_rate"] for r in data["runs"]] == [1e-3, 1e-2]
    for r in data["runs"]:
        assert r["status"] == "done" and [e["step"] for e in r["curves"]["eval"]] == [0, 2, 4, 6, 8]  # 1/4 of 8 steps
        assert r["evaluations"] == 5
        val = [e["eval_loss"] for e in r["curves"]["eval"]]
        assert r["val_rises"] == sum(b > a for a, b in zip(val, val[1:]))
        config = (tmp_path / "outputs/sweeps" / out.name / r["id"] / "config.yml").read_text()
        assert "lr_scheduler: constant" in config and "warmup_steps: 0" in config
    expected = choose_rate({r["learning_rate"]: r for r in data["runs"]}, 0.2)
    assert (data["chosen"], data["why"]) == expected
    # The jobs went through submitit: its pickles and logs are there, one per point.
    assert len(list((tmp_path / "outputs/sweeps" / out.name / "submitit").glob("*_result.pkl"))) == 2
    md = (out / "lr_find.md").read_text()
    assert f"**Chosen: {data['chosen']:.4g}**" in md if data["chosen"] else "**Chosen: none**" in md
    assert (out / "lr_find.png").stat().st_size > 5_000


@pytest.mark.slow
def test_epoch_find_reads_the_turn_up_off_one_run_and_prints_the_retrain_command(tiny_llama, tmp_path):
    from helpers.common import run_generate

    data = tmp_path / "small"
    assert run_generate("--num-people", "24", "--seed", "3", "--out", str(data)).returncode == 0
    args = [
        "epoch-find",
        "--model",
        "tiny",
        "--data-dir",
        str(data),
        "--lr",
        "3e-3",
        "--epochs",
        "4",
        "--evals-per-epoch",
        "2",
        "--patience",
        "2",
        "--set",
        f"base_model={tiny_llama}",
        "sample_packing=false",
        "micro_batch_size=8",
        "val_set_size=0.1",
        "engram_eval_samples=4",
        "engram_eval_reverse=false",
    ]
    proc = engram_run(*args, cwd=tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    out = tmp_path / "results/sweeps/tiny-full-bioS_multi5_permutes-epoch-find"
    result = json.loads((out / "epoch_find.json").read_text())
    evals = result["run"]["curves"]["eval"]
    assert [round(e["epoch"] * 2) for e in evals] == list(range(9))  # untrained, then 2 evaluations an epoch, 4 epochs
    at = turn_up([e["eval_loss"] for e in evals], 2)
    if at is None:
        assert result["turn_up_epoch"] is None and result["retrain"] is None
        assert "had not turned up by epoch 4 (patience 2): rerun with EPOCHS=8" in proc.stdout
    else:
        epoch = round(evals[at]["epoch"], 2)
        assert (result["turn_up_epoch"], result["turn_up_step"]) == (epoch, evals[at]["step"])
        assert (
            result["recall_at_turn_up"] == evals[at]["recall"] and result["heldout_at_turn_up"] == evals[at]["heldout"]
        )
        sets = (
            f"base_model={tiny_llama} sample_packing=false micro_batch_size=8 val_set_size=0.1 engram_eval_samples=4 "
            f"engram_eval_reverse=false learning_rate=0.003 num_epochs={epoch:g} lr_scheduler=cosine"
        )
        assert result["retrain"] == (
            f"make train MODEL=tiny VARIANT=bioS_multi5_permutes DATA_DIR={data} SET='{sets}' FORCE=1"
        )
        assert f"[epoch-find] retrain: {result['retrain']}" in proc.stdout
    config = (tmp_path / "outputs/sweeps" / out.name / "learning_rate-0.003/config.yml").read_text()
    assert "lr_scheduler: constant" in config and "evals_per_epoch: 2" in config and "num_epochs: 4.0" in config
    assert (out / "epoch_find.png").stat().st_size > 5_000


def test_a_multi_gpu_point_reaches_accelerate_launch_with_one_process_per_gpu(tmp_path, monkeypatch):
    """What a SLURM job with GPUS=4 runs: `axolotl train CONFIG -- --num_processes 4`, which
    Axolotl's own CLI turns into `accelerate launch --num_processes 4 -m axolotl.cli.train`."""
    import axolotl.cli.utils.train as axolotl_train
    from axolotl.cli.main import cli
    from click.testing import CliRunner

    from engram_run.runs.launch import train_command

    launched = []
    monkeypatch.setattr(axolotl_train.os, "execvpe", lambda _file, cmd, _env: launched.append(cmd))
    monkeypatch.setattr(axolotl_train.subprocess, "run", lambda cmd, check: launched.append(cmd))
    config = tmp_path / "point.yml"
    config.write_text("base_model: x\n")
    cmd = train_command(config, ExecutorSettings("slurm", gpus=4).launcher_args)
    assert cmd[1:] == ["train", str(config), "--", "--num_processes", "4"]
    result = CliRunner().invoke(cli, cmd[1:])
    assert result.exit_code == 0, result.output
    assert launched[0][:7] == ["accelerate", "launch", "--num_processes", "4", "-m", "axolotl.cli.train", str(config)]
