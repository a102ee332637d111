"""Train several Axolotl configs one after another in one Python process, each as
``axolotl train --launcher python CONFIG`` trains it (Axolotl's own CLI, called in-process;
its sweeps run their points the same way): the libraries are imported once, not once a run
(~15 s each on 2 cores).

Usage: python tests/helpers/train_in_one_process.py CONFIG [CONFIG ...]

A config whose training raises gets its traceback in ``<output_dir>/train_error.txt`` and
the next one trains; the exit status is 0 unless a config cannot be read."""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

import yaml

ERROR_FILE = "train_error.txt"


def main(configs: list[str]) -> None:
    from axolotl.cli.main import cli

    for config in configs:
        out = Path(yaml.safe_load(Path(config).read_text())["output_dir"])
        # Axolotl parses its trainer arguments from sys.argv: give it the command line it would have.
        sys.argv = ["axolotl", "train", "--launcher", "python", config]
        try:
            cli.main(sys.argv[1:], standalone_mode=False)
        except (Exception, SystemExit):  # a failed run must not stop the others
            out.mkdir(parents=True, exist_ok=True)
            (out / ERROR_FILE).write_text(traceback.format_exc())


def train_together(configs: list[Path], cwd: Path) -> None:
    """This script as its own process on ``configs`` (for the suite's fixtures); each config's
    failure is left in its ``ERROR_FILE`` for the test that reads that run."""
    import subprocess

    from helpers.common import cli_env

    proc = subprocess.run(
        [sys.executable, __file__, *map(str, configs)], env=cli_env(), capture_output=True, text=True, cwd=cwd
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]


if __name__ == "__main__":
    main(sys.argv[1:])
