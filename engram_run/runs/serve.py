"""A local OpenAI-compatible server: ``transformers serve MODEL`` on a free localhost port,
for as long as a ``with`` block runs (the documents study's generator, the suite's server)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from engram_run.runs.launch import tool, tool_env
from engram_run.runs.recipes import RunError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def served(
    model: str | Path, log: Path, device: str = "cpu", timeout: float = 180.0, continuous_batching: bool = False
) -> Iterator[str]:
    """``transformers serve MODEL`` on a free port until the block ends; yields its ``/v1``
    base URL once ``/health`` answers. RunError with the log's last line if it does not start.
    ``continuous_batching``: concurrent requests share the forward passes (paged attention); in
    transformers 5.16 every request then samples with the first request's temperature."""
    port = free_port()
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [tool("transformers"), "serve", str(model), "--host", "127.0.0.1", "--port", str(port), "--device", device]
    if continuous_batching:
        cmd.append("--continuous-batching")
    with log.open("w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=tool_env(), start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + timeout
        while not _healthy(url):
            if proc.poll() is not None or time.time() > deadline:
                last = (log.read_text(errors="replace").strip().splitlines() or ["no output"])[-1]
                why = (
                    f"exited with status {proc.returncode}" if proc.poll() is not None else f"not up in {timeout:.0f} s"
                )
                raise RunError(f"transformers serve {model} {why} ({last}); see {log}")
            time.sleep(0.5)
        yield f"{url}/v1"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False
