"""Running an entry point on bad input and checking what a user must get: a non-zero exit,
one stderr line that names the problem, no traceback, and every file as it was."""

from __future__ import annotations

import hashlib
import subprocess
import sys
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
