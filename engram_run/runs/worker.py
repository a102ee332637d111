"""One Python process that runs ``axolotl train`` and ``engram-eval`` one after another, as
their own command lines would (Axolotl's click CLI and lm-eval's ``cli_evaluate``, called
in-process): the libraries are imported once for a whole batch, study or sweep instead of
once a run (~8 s for Axolotl and ~6 s for lm-eval on 2 cores, per run).

``launch.train`` and ``evaluation.evaluate`` hand their run to this worker where a run is one
process on a CPU (``axolotl train --launcher python``; lm-eval's ``hf`` backend). A GPU,
several processes (``accelerate launch``) and vLLM keep a process a run, so that nothing a run
leaves on a device is inherited by the next. ``ENGRAM_WORKER=0`` turns the worker off.

Each run's output goes to its own log file (the file descriptors themselves, as a process's
would), its environment is the one its process would get, and its exit status is what the
command would have returned. A run that kills the worker (a crash in C code) fails alone;
the next run starts a fresh worker.

    python -m engram_run.runs.worker   # reads one JSON job a line on stdin, answers on stdout
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import subprocess
import sys
import traceback
from pathlib import Path

WORKER_ENV = "ENGRAM_WORKER"
POLL_SECONDS = 0.5


@contextlib.contextmanager
def output_to(log: Path):
    """Send everything this process writes to stdout and stderr into ``log`` for the block: the
    file descriptors themselves, so the libraries' import noise (C extensions, handlers made at
    import time) goes there too. For work done in-process that a tool would do in its own."""
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    try:
        with log.open("a") as f:
            os.dup2(f.fileno(), 1)
            os.dup2(f.fileno(), 2)
            try:
                yield
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        os.close(saved[0])
        os.close(saved[1])


def enabled() -> bool:
    return os.environ.get(WORKER_ENV, "1") != "0"


# ---- the worker's side ----------------------------------------------------------------------


def run_tool(name: str, args: list[str]) -> int:
    """``name args`` in this process; the exit status its command line would give."""
    saved_argv = sys.argv
    try:
        if name == "axolotl":
            from axolotl.cli.main import cli

            sys.argv = ["axolotl", *args]  # Axolotl reads its trainer arguments from sys.argv
            cli.main(args, standalone_mode=False)
        elif name == "engram-eval":
            from lm_eval_tasks.cli import main

            main(args)
        else:
            raise ValueError(f"the worker runs axolotl and engram-eval, not {name}")
        return 0
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    except BaseException:  # noqa: BLE001 - a failed run is reported in its log, the worker goes on
        traceback.print_exc()
        return 1
    finally:
        sys.argv = saved_argv


def die_with_parent() -> None:
    """Linux: the kernel kills this worker when the process that started it dies (killed, not
    only exiting), so that a killed study or test leaves no run training on in the background."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() == 1:  # the parent died before the call above
        os._exit(1)


def serve() -> None:
    die_with_parent()
    replies = os.fdopen(os.dup(1), "w")  # answers go here; each run's output goes to its log
    for line in sys.stdin:
        job = json.loads(line)
        saved_env = dict(os.environ)
        os.environ.clear()
        os.environ.update(job["env"])
        try:
            Path(job["log"]).write_text("")
            with output_to(Path(job["log"])):
                code = run_tool(job["tool"], job["args"])
        finally:
            os.environ.clear()
            os.environ.update(saved_env)
        replies.write(json.dumps({"code": code}) + "\n")
        replies.flush()


# ---- the caller's side ----------------------------------------------------------------------


class Worker:
    """The caller's handle on one worker process, started at its first run."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None

    def start(self, env: dict) -> subprocess.Popen:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "engram_run.runs.worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )
        return self.proc

    def run(self, cmd: list[str], log: Path, env: dict, watch) -> int:
        """``cmd`` (an axolotl or engram-eval command line) in the worker, its output in ``log``,
        while ``watch`` shows progress; the command's exit status."""
        proc = self.start(env)
        job = {"tool": Path(cmd[0]).name, "args": cmd[1:], "log": str(log.resolve()), "env": env}
        try:
            proc.stdin.write(json.dumps(job) + "\n")
            proc.stdin.flush()
            while True:
                ready, _, _ = select.select([proc.stdout], [], [], POLL_SECONDS)
                watch.poll()
                if ready:
                    reply = proc.stdout.readline()
                    if reply:
                        return json.loads(reply)["code"]
                    code = proc.wait()  # the worker died with this run
                    with log.open("a") as f:
                        f.write(f"\nthe worker process running this ended with exit status {code}\n")
                    return code or 1
        except BaseException:
            self.close(kill=True)
            raise
        finally:
            watch.close()

    def close(self, kill: bool = False) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        if kill:
            proc.kill()
        else:
            proc.stdin.close()
        proc.wait()


SHARED = Worker()
atexit.register(SHARED.close)


if __name__ == "__main__":
    serve()
