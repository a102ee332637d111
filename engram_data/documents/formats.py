"""Documents in the formats users have: PDF, DOCX, HTML, Markdown and text, as plain text
with the page each character came from.

Converters, chosen to be maintained, offline and light (no models, no system tools):

- PDF: ``pypdf`` (pure Python): the text layer page by page, so every chunk and question
  keeps its page, without the running header and footer (a line that starts or ends most pages,
  the page number ignored); an encrypted file is tried with the empty password (many "protected"
  PDFs open with it) and skipped otherwise. A PDF with no text layer at all (a scan) is
  skipped: OCR is out of scope (docling or unstructured do it, with models to download).
- DOCX: ``mammoth`` (pure Python, the document's text in reading order, no styling).
- HTML: ``beautifulsoup4`` with the standard library's parser; scripts, styles and
  ``<head>`` dropped, block elements on their own lines.
- ``.txt`` / ``.md``: read as UTF-8.

markitdown does the same conversions through these very libraries (pdfminer, mammoth, bs4)
but pulls in many more dependencies; docling's PDF pipeline needs layout models. A file that
cannot be used raises ``Skip`` with its kind (``SKIP_KINDS``) and a reason.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

SUFFIXES = (".txt", ".md", ".pdf", ".docx", ".html", ".htm")
SKIP_KINDS = ("empty", "encrypted", "no text layer", "unreadable")


def skip_key(kind: str) -> str:
    """The manifest's count of one kind of skipped file: ``files_skipped_no_text_layer``."""
    return f"files_skipped_{kind.replace(' ', '_')}"


def describe_skips(counts) -> str:
    """``1 encrypted, 1 no text layer``: skipped files by kind, the kinds with none left out."""
    return ", ".join(f"{counts[kind]} {kind}" for kind in SKIP_KINDS if counts.get(kind))


class Skip(Exception):
    """A file that cannot be used; ``kind`` is one of SKIP_KINDS."""

    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind = kind


@dataclass(frozen=True)
class Document:
    path: str
    text: str
    page_starts: tuple[int, ...] = ()  # character offset where each page begins (PDF only)

    def page(self, offset: int) -> int | None:
        """The 1-based page of a character offset, or None for a format without pages."""
        if not self.page_starts:
            return None
        return sum(1 for start in self.page_starts if start <= offset)


def convert(path: Path) -> Document:
    if path.stat().st_size == 0:
        raise Skip("empty", "the file is empty")
    suffix = path.suffix.lower()
    try:
        if suffix == ".pdf":
            return _pdf(path)
        if suffix == ".docx":
            text = _docx(path)
        elif suffix in (".html", ".htm"):
            text = _html(path.read_bytes())
        else:
            text = path.read_text(encoding="utf-8")
    except Skip:
        raise
    except UnicodeDecodeError:
        raise Skip("unreadable", "not UTF-8 text; save it as UTF-8") from None
    except Exception as exc:  # each library raises its own kinds for a damaged file
        raise Skip("unreadable", f"cannot be read as {suffix[1:].upper()} ({type(exc).__name__}: {exc})") from None
    if not text.strip():
        raise Skip("empty", "it has no text")
    return Document(str(path), text)


def _pdf(path: Path) -> Document:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path)
        if reader.is_encrypted and not reader.decrypt(""):
            raise Skip("encrypted", "an encrypted PDF; save a copy without a password")
        texts = [(page.extract_text() or "").strip() for page in reader.pages]
    except PdfReadError as exc:
        raise Skip("unreadable", f"cannot be read as PDF ({exc})") from None
    except Skip:
        raise
    except Exception as exc:
        if "decrypt" in str(exc).lower() or "password" in str(exc).lower():
            raise Skip("encrypted", "an encrypted PDF; save a copy without a password") from None
        raise Skip("unreadable", f"cannot be read as PDF ({type(exc).__name__}: {exc})") from None
    if not any(texts):
        kind = "no text layer" if texts else "empty"
        raise Skip(
            kind, "a PDF without a text layer (a scan?); run OCR on it first" if texts else "a PDF with no pages"
        )
    starts, parts, at = [], [], 0
    for text in without_running_lines(texts):
        starts.append(at)
        parts.append(text)
        at += len(text) + 2  # pages joined by a blank line
    return Document(str(path), "\n\n".join(parts), tuple(starts))


def without_running_lines(pages: list[str]) -> list[str]:
    """The pages without their running header and footer: a first (or last) line that, with
    its numbers ignored ("Page 3", "3"), is the first (or last) line of at least half of three
    or more pages. The first page keeps its first line (there the running header is usually
    the title)."""
    if len(pages) < 3:
        return pages
    lines = [page.splitlines() for page in pages]

    def running(index: int) -> set[str]:
        seen = Counter(re.sub(r"\d+", "#", ls[index].strip()) for ls in lines if ls)
        return {line for line, n in seen.items() if line and n >= max(3, len(pages) / 2)}

    head, foot = running(0), running(-1)
    out = []
    for i, ls in enumerate(lines):
        if ls and i > 0 and re.sub(r"\d+", "#", ls[0].strip()) in head:
            ls = ls[1:]
        if ls and re.sub(r"\d+", "#", ls[-1].strip()) in foot:
            ls = ls[:-1]
        out.append("\n".join(ls).strip())
    return out


def _docx(path: Path) -> str:
    import mammoth

    with path.open("rb") as f:
        return mammoth.extract_raw_text(f).value


_BLOCKS = ("p", "div", "li", "tr", "br", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "blockquote")


def _html(data: bytes) -> str:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(data, "html.parser")
    for tag in soup(["script", "style", "head", "noscript", "template"]):
        tag.decompose()
    for tag in soup.find_all(_BLOCKS):
        tag.insert_after("\n")
    text = soup.get_text()
    lines = [re.sub(r"[ \t\u00a0]+", " ", line).strip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
