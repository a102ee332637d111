"""Where engram-localize writes: one folder per run of a subcommand (``OUT/diff/``,
``OUT/graft/``, ``OUT/prune/``, ``OUT/trace/``, ``OUT/probe/``), each written whole or not at all, and
``OUT/summary.md`` gathering their Markdown summaries; tables as CSV + JSON, plots as PNG."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from engram_data.atomic import atomic_output

GENERATOR = "engram-localize"
MARK = ".engram_localize"
SECTIONS = ("diff", "graft", "prune", "trace", "probe")


def check_out(out: Path, name: str | None = None, overwrite: bool = False) -> None:
    """``out`` is new, empty or engram-localize's own (it holds the mark), and ``out/name``
    is new unless ``overwrite``; nothing is created."""
    from engram_localize.checkpoints import LocalizeError

    if out.is_symlink():
        raise LocalizeError(f"--out {out} is a symbolic link; pass the real folder")
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MARK).exists())):
        raise LocalizeError(f"{out} exists and was not written by {GENERATOR}; choose a new or empty --out")
    if name and (out / name).exists() and not overwrite:
        raise LocalizeError(f"{out / name} holds an earlier {name} result; pass --overwrite to replace it")


def existing_parent(path: Path) -> Path:
    """The nearest folder at or above ``path`` that exists (where scratch files may go)."""
    path = path.absolute()
    while not path.is_dir():
        path = path.parent
    return path


def claim_out(out: Path) -> None:
    """Create ``out`` (checked by check_out) and mark it as engram-localize's."""
    check_out(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARK).write_text(f"written by {GENERATOR}; it replaces only its own files here\n")


@contextmanager
def section(out: Path, name: str, manifest: dict, overwrite: bool = False) -> Iterator[Path]:
    """A temporary folder that becomes ``out/name`` when the block ends without error (an
    earlier ``out/name`` is replaced only with ``overwrite``); then ``out/summary.md``."""
    claim_out(out)
    with atomic_output(out / name, f"{GENERATOR} {name}", overwrite) as tmp:
        yield tmp
        write_json(tmp / "manifest.json", {"generator": f"{GENERATOR} {name}", **manifest})
    write_summary(out)


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, default=float) + "\n")


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_summary(out: Path) -> Path:
    parts = [f"# Where is the memory?\n\nWritten by `{GENERATOR}`; each section's files are in its folder.\n"]
    for name in SECTIONS:
        md = out / name / f"{name}.md"
        if md.exists():
            parts.append(md.read_text().replace("\n# ", "\n## ").replace("# ", "## ", 1))
    write_atomic(out / "summary.md", "\n".join(parts))
    return out / "summary.md"


def markdown_table(frame: pd.DataFrame, floatfmt: str = ".4g") -> str:
    return frame.to_markdown(index=False, floatfmt=floatfmt)


def percent(x: float) -> str:
    """A share as people write it: 0.9 -> 90%, 0.0123 -> 1.2%, 0.0001 -> 0.01%."""
    if x == 0 or x >= 0.1:
        return f"{100 * x:.0f}%"
    return f"{100 * x:.2g}%"


def layer_ranges(layers: list[int]) -> str:
    """[1, 2, 3, 5] -> "1–3, 5"."""
    runs: list[list[int]] = []
    for layer in sorted(layers):
        if runs and layer == runs[-1][-1] + 1:
            runs[-1].append(layer)
        else:
            runs.append([layer])
    return ", ".join(f"{r[0]}–{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)
