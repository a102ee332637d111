"""Reading the user's documents and cutting them into chunks of the generator's tokens."""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from engram_data.contract import DataError
from engram_data.documents.formats import SUFFIXES, Document, Skip, convert, describe_skips


@dataclass(frozen=True)
class Chunk:
    id: str
    source: str
    start: int  # character offsets in the source's converted text
    end: int
    text: str
    num_tokens: int
    page: int | None = None  # the page it starts on (PDF), else None


def read_inputs(paths: Sequence[str | os.PathLike], warn=None) -> tuple[list[Document], Counter]:
    """Every document given or inside a given folder (formats.SUFFIXES), sorted, converted to
    text; a file that cannot be used is skipped with one line through ``warn`` and counted by
    kind (formats.SKIP_KINDS). DataError if nothing usable is left."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
        elif path.is_file():
            if path.suffix.lower() not in SUFFIXES:
                raise DataError(f"cannot read {path}: supported are {', '.join(SUFFIXES)}; convert it to one of them")
            files.append(path)
        else:
            raise DataError(f"input {path} does not exist; pass files or folders of documents ({', '.join(SUFFIXES)})")
    corpus, skips = [], []
    for path in files:
        try:
            corpus.append(convert(path))
        except Skip as skip:
            skips.append((path, skip))
    skipped = Counter(skip.kind for _, skip in skips)
    if not corpus:  # one error line: the one file's reason, or what was skipped, by kind
        what = f": {skips[0][1]}" if len(skips) == 1 else f" ({describe_skips(skipped)})" if skips else ""
        raise DataError(
            f"no text found in {', '.join(map(str, paths))}{what}; pass documents with text ({', '.join(SUFFIXES)})"
        )
    for path, skip in skips if warn is not None else ():
        warn(f"skipped {path}: {skip}")
    return corpus, skipped


_SENTENCE = re.compile(r"[^.!?\n]+(?:[.!?]+|\n+|$)\s*")


def sentences(text: str) -> list[tuple[int, int]]:
    """Character spans of sentences (ends at . ! ? or a line break), covering the text."""
    spans = [(m.start(), m.end()) for m in _SENTENCE.finditer(text) if m.group().strip()]
    return spans


def chunk_text(
    source: str, text: str, tokenizer, chunk_tokens: int, page_of: Callable[[int], int | None] = lambda offset: None
) -> list[Chunk]:
    """Consecutive sentences up to ``chunk_tokens`` tokens of the generator's tokenizer;
    a sentence is split (at token boundaries) only when it alone is longer than that.
    ``page_of``: the page of a character offset (Document.page), kept on every chunk."""
    chunks: list[Chunk] = []
    cur_start, cur_end, cur_tokens = None, None, 0

    def flush():
        nonlocal cur_start, cur_end, cur_tokens
        if cur_start is not None:
            body = text[cur_start:cur_end]
            chunks.append(
                Chunk(
                    f"{Path(source).name}:{cur_start}",
                    source,
                    cur_start,
                    cur_end,
                    body.strip(),
                    cur_tokens,
                    page_of(cur_start),
                )
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
                chunks.append(
                    Chunk(f"{Path(source).name}:{s}", source, s, e, text[s:e].strip(), len(piece), page_of(s))
                )
            continue
        if cur_tokens + n > chunk_tokens:
            flush()
        if cur_start is None:
            cur_start = start
        cur_end, cur_tokens = end, cur_tokens + n
    flush()
    return chunks
