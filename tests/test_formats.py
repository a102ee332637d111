"""Documents in PDF, DOCX and HTML (engram_data/documents/formats.py): files the tests write
themselves (fpdf2, pypdf, python-docx), their text and pages, and every kind of unusable
file skipped with one line and counted."""

from __future__ import annotations

from pathlib import Path

import pytest

from engram_data.contract import DataError
from engram_data.documents.chunks import chunk_text, read_inputs
from engram_data.documents.formats import SKIP_KINDS, convert

PAGE1 = "Metformin treats type 2 diabetes. It lowers glucose production in the liver."
PAGE2 = "Lisinopril treats high blood pressure. It blocks the angiotensin converting enzyme."


def write_pdf(path: Path, pages: list[str]) -> Path:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("helvetica", size=11)
    for text in pages:
        pdf.add_page()
        if text:
            pdf.multi_cell(0, 6, text)
    pdf.output(str(path))
    return path


def write_encrypted_pdf(path: Path) -> Path:
    from pypdf import PdfReader, PdfWriter

    plain = write_pdf(path.with_name("plain-for-encryption.pdf"), [PAGE1])
    writer = PdfWriter(clone_from=PdfReader(plain))
    writer.encrypt(user_password="secret", owner_password="owner")
    with path.open("wb") as f:
        writer.write(f)
    plain.unlink()
    return path


def write_docx(path: Path, paragraphs: list[str]) -> Path:
    import docx

    document = docx.Document()
    for text in paragraphs:
        document.add_paragraph(text)
    document.save(str(path))
    return path


HTML = f"""<!doctype html><html><head><title>Drug notes</title><style>p {{color: red}}</style>
<script>var secret = "never in the text";</script></head>
<body><h1>Drugs</h1><p>{PAGE1}</p><ul><li>{PAGE2}</li></ul><noscript>enable scripts</noscript></body></html>"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("formats")
    write_pdf(root / "two_pages.pdf", [PAGE1, PAGE2])
    write_docx(root / "notes.docx", [PAGE1, PAGE2])
    (root / "page.html").write_text(HTML)
    write_encrypted_pdf(root / "locked.pdf")
    write_pdf(root / "scan.pdf", ["", ""])  # pages without a text layer
    (root / "empty.pdf").write_bytes(b"")
    (root / "broken.docx").write_bytes(b"PK\x03\x04 not really a zip")
    (root / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    return root


def test_pdf_text_keeps_its_pages(folder):
    doc = convert(folder / "two_pages.pdf")
    assert PAGE1 in doc.text and PAGE2 in doc.text and len(doc.page_starts) == 2
    assert doc.page(doc.text.index(PAGE1)) == 1 and doc.page(doc.text.index(PAGE2)) == 2


def test_docx_and_html_give_their_text_and_nothing_else(folder):
    assert convert(folder / "notes.docx").text.split() == f"{PAGE1} {PAGE2}".split()
    html = convert(folder / "page.html")
    assert html.text.splitlines() == ["Drugs", PAGE1, PAGE2]  # one line per block element
    assert "secret" not in html.text and "color" not in html.text and "Drug notes" not in html.text
    assert html.page(0) is None  # no pages outside PDF


def test_chunks_carry_the_page_they_start_on(folder, tiny_llama):
    from transformers import AutoTokenizer

    doc = convert(folder / "two_pages.pdf")
    chunks = chunk_text(doc.path, doc.text, AutoTokenizer.from_pretrained(tiny_llama), 20, doc.page)
    assert [c.page for c in chunks] == sorted(c.page for c in chunks) and {c.page for c in chunks} == {1, 2}
    for c in chunks:
        assert c.text in (PAGE1 if c.page == 1 else PAGE2) or c.text in doc.text


def test_every_unusable_file_is_skipped_with_one_line_and_counted(folder):
    lines = []
    corpus, skipped = read_inputs([folder], warn=lines.append)
    assert sorted(Path(d.path).name for d in corpus) == ["notes.docx", "page.html", "two_pages.pdf"]
    assert dict(skipped) == {"encrypted": 1, "no text layer": 1, "empty": 1, "unreadable": 2}
    assert set(skipped) <= set(SKIP_KINDS)
    by_file = {line.split(":")[0].removeprefix("skipped ").rsplit("/", 1)[-1]: line for line in lines}
    assert sorted(by_file) == ["broken.docx", "empty.pdf", "latin1.txt", "locked.pdf", "scan.pdf"]
    assert by_file["locked.pdf"].endswith("an encrypted PDF; save a copy without a password")
    assert by_file["scan.pdf"].endswith("a PDF without a text layer (a scan?); run OCR on it first")
    assert by_file["empty.pdf"].endswith("the file is empty")
    assert by_file["latin1.txt"].endswith("not UTF-8 text; save it as UTF-8")
    assert "cannot be read as DOCX" in by_file["broken.docx"]


def test_nothing_usable_is_one_error_naming_what_was_skipped(folder, tmp_path):
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    for name in ("locked.pdf", "scan.pdf"):
        (only_bad / name).write_bytes((folder / name).read_bytes())
    with pytest.raises(DataError, match=r"no text found in .* \(1 encrypted, 1 no text layer\); pass documents"):
        read_inputs([only_bad])
    with pytest.raises(
        DataError, match=r"no text found in .*scan.pdf: a PDF without a text layer \(a scan\?\); run OCR"
    ):
        read_inputs([only_bad / "scan.pdf"], warn=pytest.fail)  # one file: its reason, and no warning besides


def test_the_runs_last_line_counts_the_skipped_files_by_kind(folder):
    from engram_data.cli import skipped_line
    from engram_data.documents.formats import skip_key

    _, skipped = read_inputs([folder])
    counts = {skip_key(kind): skipped[kind] for kind in SKIP_KINDS}
    assert skipped_line(counts) == "5 (1 empty, 1 encrypted, 1 no text layer, 2 unreadable)"
    assert skipped_line({skip_key(kind): 0 for kind in SKIP_KINDS}) == "none"
