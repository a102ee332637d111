"""Output folders written whole or not at all: a temp folder beside the target, swapped in
when the block ends without error and removed on any error (SIGINT and SIGTERM included);
one writer per folder (a lock file with its pid); never a folder the tool did not write.
Every tool that writes a dataset, a report or a study's results goes through
:func:`atomic_output`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from engram_data.contract import MANIFEST, DataError


def is_previous_output(path: Path, generator: str) -> bool:  # its manifest names generator
    try:
        manifest = json.loads((path / MANIFEST).read_text("utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("generator") == generator


def check_output_dir(out: Path, generator: str, overwrite: bool) -> None:
    """``out`` may be written: new, empty, or a previous output of ``generator`` (with ``overwrite``)."""
    if out.is_symlink():
        raise DataError(f"output path {out} is a symbolic link (to {os.readlink(out)}); pass the real folder as --out")
    if out.exists() and not out.is_dir():
        raise DataError(f"output path {out} exists and is not a directory; choose another --out")
    if out.is_dir() and any(out.iterdir()):
        if not is_previous_output(out, generator):
            raise DataError(
                f"output directory {out} exists and is not a previous {generator} output; "
                "choose an empty or new --out (nothing was changed)"
            )
        if not overwrite:
            raise DataError(f"output directory {out} already holds a dataset; pass --overwrite to replace it")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True  # alive (PermissionError: another user's live process)


def _pid_of(path: Path) -> int | None:
    """The writer's pid in a lock file's text or in a ``.<name>.tmp-<pid>-...`` folder name."""
    text = path.read_text().strip() if path.is_file() else path.name.rsplit(".tmp-", 1)[-1].split("-")[0]
    return int(text) if text.isdigit() else None


@contextmanager
def _lock(out: Path) -> Iterator[None]:
    """One writer per output folder: a second run refuses; a dead run's lock and temp
    folders are cleaned up."""
    lock = out.with_name(f".{out.name}.lock")
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            pid = _pid_of(lock)
            if pid is not None and _alive(pid):
                raise DataError(
                    f"another run (pid {pid}) is writing {out}; wait for it to finish or choose another --out"
                ) from None
            lock.unlink(missing_ok=True)  # left by a run that died
    else:
        raise DataError(f"cannot lock {out} ({lock} keeps coming back); choose another --out")
    try:
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        for stale in out.parent.glob(f".{out.name}.tmp-*"):
            pid = _pid_of(stale)
            if pid is not None and not _alive(pid):
                shutil.rmtree(stale, ignore_errors=True)
        yield
    finally:
        lock.unlink(missing_ok=True)


@contextmanager
def _terminate_as_exit() -> Iterator[None]:
    """SIGTERM ends the run through the usual cleanup (an exception), not mid-write."""

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread: leave signals alone
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


@contextmanager
def atomic_output(out: str | os.PathLike, generator: str, overwrite: bool = False) -> Iterator[Path]:
    """A temp folder beside ``out`` to write the whole layout into; when the block ends
    without error it takes the place of ``out``, and on any error (SIGINT, SIGTERM
    included) it is removed.

    ``out`` must be new, empty, or a previous output of ``generator`` (then only with
    ``overwrite``), checked before and again at the swap: a folder the tool did not write,
    even one created meanwhile, is never touched. One writer at a time per ``out``.
    """
    out = Path(out)
    check_output_dir(out, generator, overwrite)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with _lock(out), _terminate_as_exit():
            prefix = f".{out.name}.tmp-{os.getpid()}-"  # this run's own temp folders for ``out``
            try:
                # Inside the try: a signal handled just after mkdtemp made the folder (before it
                # returned) must remove it too; the prefix names only this run's folders.
                tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=out.parent))
                # mkdtemp makes a private (0700) folder; the output gets the usual permissions.
                umask = os.umask(0)
                os.umask(umask)
                tmp.chmod(0o777 & ~umask)
                yield tmp
                check_output_dir(out, generator, overwrite)  # again: a user may have made it meanwhile
                if out.exists():
                    old = out.with_name(f".{out.name}.old-{os.getpid()}")
                    out.rename(old)
                    tmp.rename(out)
                    shutil.rmtree(old)
                else:
                    tmp.rename(out)
            except BaseException:
                for mine in out.parent.glob(f"{prefix}*"):
                    shutil.rmtree(mine, ignore_errors=True)
                raise
    except OSError as exc:
        raise DataError(f"cannot write to {out.parent} ({exc.strerror or exc}); choose a writable --out") from exc
