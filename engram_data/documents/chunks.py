"""Reading the user's documents and cutting them into chunks of the generator's tokens."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from engram_data.contract import DataError

SUFFIXES = (".txt", ".md")


@dataclass(frozen=True)
class Chunk:
    id: str
    source: str
    start: int  # character offsets in the source text
    end: int
    text: str
    num_tokens: int


def read_inputs(paths: Sequence[str | os.PathLike]) -> list[tuple[str, str]]:
    """(path, text) of every .txt / .md file given or inside a given folder, sorted."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
        elif path.is_file():
            if path.suffix.lower() not in SUFFIXES:
                raise DataError(
                    f"cannot read {path}: only {', '.join(SUFFIXES)} files are supported; convert it to text"
                )
            files.append(path)
        else:
            raise DataError(f"input {path} does not exist; pass files or folders of .txt / .md documents")
    docs = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"cannot read {path} ({exc}); pass UTF-8 text files") from exc
        if text.strip():
            docs.append((str(path), text))
    if not docs:
        raise DataError(f"no text found in {', '.join(map(str, paths))}; pass non-empty .txt / .md files")
    return docs


_SENTENCE = re.compile(r"[^.!?\n]+(?:[.!?]+|\n+|$)\s*")


def sentences(text: str) -> list[tuple[int, int]]:
    """Character spans of sentences (ends at . ! ? or a line break), covering the text."""
    spans = [(m.start(), m.end()) for m in _SENTENCE.finditer(text) if m.group().strip()]
    return spans


def chunk_text(source: str, text: str, tokenizer, chunk_tokens: int) -> list[Chunk]:
    """Consecutive sentences up to ``chunk_tokens`` tokens of the generator's tokenizer;
    a sentence is split (at token boundaries) only when it alone is longer than that."""
    chunks: list[Chunk] = []
    cur_start, cur_end, cur_tokens = None, None, 0

    def flush():
        nonlocal cur_start, cur_end, cur_tokens
        if cur_start is not None:
            body = text[cur_start:cur_end]
            chunks.append(
                Chunk(f"{Path(source).name}:{cur_start}", source, cur_start, cur_end, body.strip(), cur_tokens)
            )
        cur_start, cur_end, cur_tokens = None, None, 0

    for start, end in sentences(text):
        n = len(tokenizer.encode(text[start:end], add_special_tokens=False))
        if n > chunk_tokens:  # a sentence longer than a chunk: cut it by tokens
            flush()
            enc = tokenizer(text[start:end], add_special_tokens=False, return_offsets_mapping=True)
            offsets = enc["offset_mapping"]
            for i in range(0, len(offsets), chunk_tokens):
                piece = offsets[i : i + chunk_tokens]
                s, e = start + piece[0][0], start + piece[-1][1]
                chunks.append(Chunk(f"{Path(source).name}:{s}", source, s, e, text[s:e].strip(), len(piece)))
            continue
        if cur_tokens + n > chunk_tokens:
            flush()
        if cur_start is None:
            cur_start = start
        cur_end, cur_tokens = end, cur_tokens + n
    flush()
    return chunks
