"""Where a sweep's points run: here in sequence, or as jobs through submitit.

* ``local``: one after another in this process's machine, each an ``axolotl train``.
* ``slurm``: one SLURM job per point (a job array) through submitit: partition, GPUs per
  job, CPUs, memory, time limit and at most ``parallel`` points at once come from options;
  a job with several GPUs launches ``accelerate launch --num_processes N`` (Axolotl's DDP,
  or DeepSpeed/FSDP where the recipe names them). The sweep waits for its jobs and writes
  the table; a rerun skips the points that finished.
* ``submitit-local``: submitit's LocalExecutor: the same pickled jobs, folders and result
  handling as on SLURM, as processes on this machine (all at once). The tests use it to
  run the cluster's code path on a CPU.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from engram_run.runs.recipes import RunError
from engram_run.tuning.points import RunPoint, run_point

EXECUTORS = ("local", "slurm", "submitit-local")
POLL_SECONDS = {"slurm": 30.0, "submitit-local": 2.0}


@dataclass(frozen=True)
class ExecutorSettings:
    kind: str = "local"
    partition: str | None = None
    gpus: int = 0  # per job (one node); more than 1: accelerate launch --num_processes GPUS
    cpus: int | None = None  # per job
    mem_gb: int | None = None
    time_min: int = 240  # per job; SLURM ends a job at its limit (the point fails, the rest go on)
    parallel: int | None = None  # at most this many jobs at once (a SLURM array's %N)
    slurm_args: dict = field(default_factory=dict)  # more sbatch options: {"account": "x", "qos": "y"}

    def __post_init__(self):
        if self.kind not in EXECUTORS:
            raise RunError(f"unknown EXECUTOR={self.kind}; choose from {', '.join(EXECUTORS)}")

    @property
    def launcher_args(self) -> tuple[str, ...]:
        return ("--num_processes", str(self.gpus)) if self.gpus > 1 else ()

    def parameters(self) -> dict:
        """submitit's AutoExecutor parameters (``slurm_*`` ones are ignored off SLURM)."""
        p = {
            "name": "engram-sweep",
            "timeout_min": self.time_min,
            "nodes": 1,
            "tasks_per_node": 1,
            "gpus_per_node": self.gpus,
        }
        optional = {
            "cpus_per_task": self.cpus,
            "mem_gb": self.mem_gb,
            "slurm_partition": self.partition,
            "slurm_array_parallelism": self.parallel,
            "slurm_additional_parameters": self.slurm_args or None,
        }
        return p | {k: v for k, v in optional.items() if v is not None}

    def check(self) -> None:
        """Before anything is written: SLURM's commands must be here (a login node of the cluster)."""
        import shutil

        if self.kind == "slurm" and not (shutil.which("sbatch") and shutil.which("srun")):
            raise RunError("EXECUTOR=slurm needs SLURM's sbatch and srun on PATH; run it on the cluster's login node")

    def submitit(self, folder: Path):
        """The submitit executor for this kind, its logs and pickles in ``folder``."""
        import submitit

        executor = submitit.AutoExecutor(folder=folder, cluster="slurm" if self.kind == "slurm" else "local")
        executor.update_parameters(**self.parameters())
        return executor


def failed(job, why: str) -> dict:
    return {"id": job.id, **job.values, "status": f"failed: {why}"}


def _status(row: dict) -> str:
    if row["status"] != "done":
        return row["status"]
    recall = row.get("recall_final")
    return "done" + (
        f": recall {recall:.3f}, validation loss {row['val_loss_final']:.3f}" if recall is not None else ""
    )


def execute(jobs: list, settings: ExecutorSettings, root: Path) -> dict[str, dict]:
    """Run every job; {point id: row}. A failed point is a row with ``status: failed: ...``."""

    if not jobs:
        return {}
    rows: dict[str, dict] = {}
    if settings.kind == "local":
        for i, job in enumerate(jobs, 1):
            print(f"[sweep {i}/{len(jobs)}] {job.id}: axolotl train (log: {Path(job.dir) / 'train.log'})", flush=True)
            try:
                rows[job.id] = run_point(job)
            except RunError as exc:
                rows[job.id] = failed(job, str(exc))
            print(f"[sweep {i}/{len(jobs)}] {job.id}: {_status(rows[job.id])}", flush=True)
        return rows
    executor = settings.submitit(root / "submitit")
    submitted = executor.map_array(RunPoint(), jobs)  # requeued and resumed when preempted
    print(
        f"[sweep] {len(jobs)} points submitted ({settings.kind}: jobs {submitted[0].job_id.split('_')[0]}...); "
        f"logs in {root / 'submitit'}",
        flush=True,
    )
    pending = dict(zip(range(len(jobs)), submitted, strict=True))
    with tqdm(total=len(jobs), desc="sweep", unit="point", dynamic_ncols=True) as bar:
        while pending:
            for i, sj in list(pending.items()):
                if not sj.done():
                    continue
                del pending[i]
                job = jobs[i]
                try:
                    rows[job.id] = sj.result()
                except Exception as exc:  # a job that raised, was cancelled, or ran out of time
                    lines = [ln for ln in str(exc).splitlines() if ln.strip()]
                    rows[job.id] = failed(
                        job, f"{lines[-1] if lines else type(exc).__name__} (job log: {sj.paths.stderr})"
                    )
                bar.update(1)
                bar.write(f"[sweep] {job.id}: {_status(rows[job.id])}")
            if pending:
                time.sleep(POLL_SECONDS[settings.kind])
    return rows
