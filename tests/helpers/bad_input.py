"""Running an entry point on bad input and checking what a user must get: a non-zero exit,
one stderr line that names the problem, no traceback, and every file as it was.

The case tables run each entry point's ``main`` in this process (``run_here``: the same argv,
exit status, stdout and stderr, without a Python start and the libraries' import per case);
one case per entry point runs as a real process (``run``), where import-time noise would show."""

from __future__ import annotations

import hashlib
import importlib
import io
import os
import subprocess
import sys
import traceback
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

from helpers.common import REPO, cli_env


def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under ``root``: sha256 of a file, "dir" or "link -> target"."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            out[rel] = f"link -> {path.readlink()}"
        elif path.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def run(argv: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, env=cli_env(**env), capture_output=True, text=True, timeout=600)


GENERATE = [sys.executable, str(REPO / "generate_data.py")]
ENGRAM_RUN = [sys.executable, "-m", "engram_run"]
RECIPES = [sys.executable, "-m", "engram_run.runs.recipe_check"]
TINY = [sys.executable, "-m", "engram_run.runs.tiny"]
LOCALIZE = [sys.executable, "-m", "engram_localize.cli"]
# What each command line runs: its argv prefix -> the function behind it.
MAINS = {
    tuple(GENERATE): "engram_data.cli:main",
    tuple(ENGRAM_RUN): "engram_run.__main__:main",
    tuple(RECIPES): "engram_run.runs.recipe_check:main",
    tuple(TINY): "engram_run.runs.tiny:main",
    tuple(LOCALIZE): "engram_localize.cli:main",
}


def run_here(argv: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """``run``'s result for ``argv``, from its entry point's ``main`` called in this process
    (working directory, environment, stdout and stderr are its own for the call)."""
    prefix = next(p for p in MAINS if tuple(argv[: len(p)]) == p)
    module, name = MAINS[prefix].split(":")
    main = getattr(importlib.import_module(module), name)
    out, err = io.StringIO(), io.StringIO()
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    os.environ.update(cli_env(**env))
    os.chdir(cwd)
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                code = main(argv[len(prefix) :]) or 0
            except SystemExit as exc:  # what the interpreter would make of it
                code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
                if isinstance(exc.code, str):
                    print(exc.code, file=sys.stderr)
            except BaseException:  # an uncaught exception: the traceback a process would print
                traceback.print_exc()
                code = 1
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


def assert_refused(proc: subprocess.CompletedProcess, message: str, code: int = 2, any_line: bool = False) -> str:
    """Exit ``code``, one stderr line (or, with ``any_line``, a last line) holding ``message``,
    no traceback anywhere. Returns the line."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == code, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-3000:]
    assert lines, "nothing on stderr"
    if not any_line:
        assert len(lines) == 1, lines
    assert message in lines[-1], (message, lines[-1])
    return lines[-1]
