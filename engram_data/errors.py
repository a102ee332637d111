"""How every llm-engram command reports bad input: one line on stderr that names the problem
and the fix, a non-zero exit status, no traceback (``ENGRAM_DEBUG=1`` shows it).

Shared by every entry point (generate_data.py, python -m engram_run, the recipe check, the
tiny model builder); like the data contract, it imports nothing else of the project.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Iterable

DEBUG_ENV = "ENGRAM_DEBUG"


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line: ``PROG: error: MESSAGE (see PROG --help)``, exit 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def one_line(text: object) -> str:
    return " ".join(str(text).split())


def run_cli(prog: str, body: Callable[[], int | None], expected: tuple[type[BaseException], ...]) -> int:
    """Run a command: an ``expected`` error is one line and exit 2; anything else is one line
    naming the exception and exit 1; Ctrl-C is "interrupted" and 130. ``ENGRAM_DEBUG=1``
    lets exceptions through with their traceback."""
    debug = os.environ.get(DEBUG_ENV, "") not in ("", "0")
    try:
        return body() or 0
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except expected as exc:
        if debug:
            raise
        print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:
        if debug:
            raise
        print(f"{prog}: error: {type(exc).__name__}: {one_line(exc)} ({DEBUG_ENV}=1 shows where)", file=sys.stderr)
        return 1


def number(kind: type = float, low: float | None = None, high: float | None = None, low_open: bool = False):
    """An argparse ``type``: a finite ``kind`` within [low, high] (``low_open``: above low)."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number (got {text})")
        too_low = low is not None and (value <= low if low_open else value < low)
        if too_low or (high is not None and value > high):
            bounds = f"{'>' if low_open else '>='} {low}" if high is None else f"in [{low}, {high}]"
            raise argparse.ArgumentTypeError(f"must be {bounds} (got {text})")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every non-empty secret replaced by ``***``: for anything a server echoes."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
