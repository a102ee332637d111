"""Every entry point under bad input and faults: a non-zero exit, one line that names the
problem and the fix, no traceback, and every file that was there byte-identical after."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from helpers.bad_input import ENGRAM_RUN, GENERATE, LOCALIZE, RECIPES, TINY, assert_refused, run, run_here, snapshot
from helpers.common import REPO, cli_env

from engram_data.contract import read_jsonl


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """A workspace a user might have: a previous dataset, a folder and a file of their own,
    bioS_v1-style rows to import, a lm-eval result file, a recipe."""
    root = tmp_path_factory.mktemp("ws")
    proc = run([*GENERATE, "--num-people", "30", "--out", str(root / "prev"), "--no-progress"], root)
    assert proc.returncode == 0, proc.stderr
    (root / "foreign").mkdir()
    (root / "foreign" / "notes.txt").write_text("my notes\n")
    (root / "afile.txt").write_text("a file\n")
    people = read_jsonl(root / "prev" / "people.jsonl")
    keep = ("name", "bioS", "bioS_fullname", "bioS_multi5_permutes")
    (root / "src").mkdir()
    rows = [{k: v for k, v in p.items() if k in keep or k.endswith(("_q", "_a"))} for p in people]
    (root / "src" / "good.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    variants = {
        "multi5_string": lambda r: {**r, "bioS_multi5_permutes": r["bioS"]},
        "int_date": lambda r: {**r, "bdate_a": 19390526},
        "list_date": lambda r: {**r, "bdate_a": ["May 26, 1939"]},
        "null_name": lambda r: {**r, "name": None},
        "empty_name": lambda r: {**r, "name": "  "},
        "empty_major": lambda r: {**r, "major_a": ""},
        "no_name": lambda r: {k: v for k, v in r.items() if k != "name"},
        "no_major": lambda r: {k: v for k, v in r.items() if k != "major_a"},
        "bad_gender": lambda r: {**r, "gender": "x"},
    }
    for name, change in variants.items():
        # Every row changed, so that the column has one type throughout (as a real file would).
        (root / "src" / f"{name}.jsonl").write_text("".join(json.dumps(change(r)) + "\n" for r in rows))
    (root / "src" / "dupes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows + rows[:3]))
    (root / "src" / "empty.jsonl").write_text("")
    (root / "src" / "latin1.jsonl").write_bytes(b'{"name": "Jos\xe9"}\n')
    (root / "src" / "rows.txt").write_text("a\n")
    (root / "results" / "run" / "m").mkdir(parents=True)
    (root / "results" / "run" / "m" / "results_2026-01-01T00-00-00.json").write_text('{"results": {"bios_qa": {')
    (root / "ok_results.json").write_text(json.dumps({"results": {"bios_qa": {"acc,none": 0.5}}}))
    (root / "list.yml").write_text("- a\n- b\n")
    (root / "broken.yml").write_text("base_model: [unclosed\n")
    return root


def refused(ws: Path, argv: list[str], message: str, code: int = 2, process: bool = False, **env) -> str:
    """``argv`` refused with ``message`` and nothing under ``ws`` changed: in this process, or
    (``process``) as its own process."""
    before = snapshot(ws)
    line = assert_refused((run if process else run_here)(argv, ws, **env), message, code)
    assert snapshot(ws) == before, "files changed"
    return line


# --------------------------------------------------------------------------- generate_data.py

GENERATE_CASES = [
    ("zero people", ["--num-people", "0"], "argument --num-people: must be >= 1 (got 0)"),
    ("negative people", ["--num-people", "-5"], "argument --num-people: must be >= 1 (got -5)"),
    ("people not a number", ["--num-people", "abc"], "argument --num-people: 'abc' is not an integer"),
    ("too many people", ["--num-people", str(10**9)], "too many for the name pools"),
    ("seed not a number", ["--seed", "x"], "argument --seed: 'x' is not an integer"),
    ("heldout 1", ["--heldout-fraction", "1"], "--heldout-fraction must be in [0, 1) (got 1.0)"),
    ("heldout negative", ["--heldout-fraction", "-0.1"], "--heldout-fraction must be in [0, 1) (got -0.1)"),
    ("heldout nan", ["--heldout-fraction", "nan"], "argument --heldout-fraction: must be a finite number"),
    ("heldout inf", ["--heldout-fraction", "inf"], "argument --heldout-fraction: must be a finite number"),
    ("unknown variant", ["--variants", "bioS,bioX"], "unknown text variant bioX; choose from bioS"),
    ("no variant", ["--variants", ","], "unknown text variant (none given)"),
    ("unknown option", ["--peple", "3"], "unrecognized arguments: --peple 3"),
    ("out is a file", ["--out", "{ws}/afile.txt"], "exists and is not a directory; choose another --out"),
    (
        "out is a foreign folder",
        ["--out", "{ws}/foreign", "--overwrite"],
        "is not a previous llm-engram/generate_data output",
    ),
    ("out is a previous output", ["--out", "{ws}/prev"], "already holds a dataset; pass --overwrite"),
    ("out under a file", ["--out", "{ws}/afile.txt/sub"], "cannot write to"),
    (
        "source on the hub, offline",
        ["--source", "minsungkim/bioS_v1"],
        "cannot load the bioS_v1 dataset 'minsungkim/bioS_v1'",
    ),
    ("source of another type", ["--source", "{ws}/src/rows.txt"], "use a .jsonl, .json, .parquet or .csv file"),
    ("source missing", ["--source", "{ws}/src/nothing.jsonl"], "cannot load the bioS_v1 dataset"),
    ("source empty", ["--source", "{ws}/src/empty.jsonl"], "cannot load the bioS_v1 dataset"),
    ("source not UTF-8", ["--source", "{ws}/src/latin1.jsonl"], "cannot load the bioS_v1 dataset"),
    (
        "source multi5 is a string",
        ["--source", "{ws}/src/multi5_string.jsonl"],
        "column 'bioS_multi5_permutes' must be a list of biographies, got str",
    ),
    (
        "source integer date",
        ["--source", "{ws}/src/int_date.jsonl"],
        "column 'bdate_a' must be a non-empty string, got 19390526 (int)",
    ),
    (
        "source list date",
        ["--source", "{ws}/src/list_date.jsonl"],
        "column 'bdate_a' must be a non-empty string, got ['May 26, 1939'] (list)",
    ),
    (
        "source null name",
        ["--source", "{ws}/src/null_name.jsonl"],
        "row 0: column 'name' must be a non-empty string, got null",
    ),
    (
        "source empty name",
        ["--source", "{ws}/src/empty_name.jsonl"],
        "row 0: column 'name' must be a non-empty string, got ' ' (str)",
    ),
    (
        "source empty value",
        ["--source", "{ws}/src/empty_major.jsonl"],
        "column 'major_a' must be a non-empty string, got '' (str)",
    ),
    ("source without names", ["--source", "{ws}/src/no_name.jsonl"], "the dataset has no 'name' column"),
    ("source without a field", ["--source", "{ws}/src/no_major.jsonl"], "has neither 'major' nor 'major_a'"),
    (
        "source bad gender",
        ["--source", "{ws}/src/bad_gender.jsonl"],
        "column 'gender' must be male, female or null, got 'x'",
    ),
    ("source duplicate names", ["--source", "{ws}/src/dupes.jsonl"], "3 rows repeat a name already seen (first:"),
]


@pytest.mark.parametrize(("args", "message"), [c[1:] for c in GENERATE_CASES], ids=[c[0] for c in GENERATE_CASES])
def test_generate_data_refuses(ws, args, message):
    out = ["--out", str(ws / "new")] if "--out" not in args else []
    argv = [*GENERATE, *[a.format(ws=ws) for a in args], *out, "--no-progress"]
    line = refused(ws, argv, message)
    assert line.startswith("generate_data.py: error:")
    assert not (ws / "new").exists()


def test_duplicates_are_dropped_only_when_asked_and_counted(ws, tmp_path):
    proc = run(
        [
            *GENERATE,
            "--source",
            str(ws / "src/dupes.jsonl"),
            "--drop-duplicates",
            "--out",
            str(tmp_path / "d"),
            "--no-progress",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "wrote 30 people" in proc.stdout and "dropped 3 rows that repeated a name" in proc.stdout
    manifest = json.loads((tmp_path / "d/manifest.json").read_text())
    assert manifest["import"]["duplicate_names_dropped"] == 3


def test_a_symlinked_out_is_refused_and_left_alone(ws, tmp_path):
    link = ws / "link"
    link.symlink_to(ws / "prev")
    try:
        refused(
            ws,
            [*GENERATE, "--num-people", "5", "--out", str(link), "--overwrite", "--no-progress"],
            "is a symbolic link",
        )
        assert not list(ws.glob(".link*"))
    finally:
        link.unlink()


def test_a_run_that_holds_the_lock_makes_a_second_refuse(ws):
    lock = ws / ".prev.lock"
    lock.write_text(str(os.getpid()))  # this test process: alive
    try:
        refused(
            ws,
            [*GENERATE, "--num-people", "5", "--out", str(ws / "prev"), "--overwrite", "--no-progress"],
            f"another run (pid {os.getpid()}) is writing",
            process=True,
        )
    finally:
        lock.unlink()


def test_a_dead_runs_lock_and_temp_folder_are_cleaned_up(tmp_path):
    dead = 2**22 + 12345  # above any pid this machine hands out
    (tmp_path / ".d.lock").write_text(str(dead))
    stale = tmp_path / f".d.tmp-{dead}-abc"
    stale.mkdir()
    (stale / "big.bin").write_bytes(b"x" * 1000)
    proc = run([*GENERATE, "--num-people", "5", "--out", str(tmp_path / "d"), "--no-progress"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_two_concurrent_runs_to_one_new_out_one_wins_the_other_refuses(tmp_path):
    argv = [*GENERATE, "--num-people", "20000", "--out", str(tmp_path / "d"), "--no-progress"]
    procs = [
        subprocess.Popen(argv, cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    assert sorted(code for code, _ in results) == [0, 2], results
    (err,) = [e for code, e in results if code == 2]
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "another run (pid" in err or "already holds a dataset" in err
    manifest = json.loads((tmp_path / "d/manifest.json").read_text())
    assert manifest["num_people"] == 20000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]  # no temp folder, no lock


def _start_and_wait_for_the_write(tmp_path: Path) -> subprocess.Popen:
    argv = [*GENERATE, "--num-people", "60000", "--out", str(tmp_path / "d"), "--no-progress"]
    proc = subprocess.Popen(
        argv, cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 120
    while not list(tmp_path.glob(".d.tmp-*")):
        assert proc.poll() is None and time.time() < deadline, "the write never started"
        time.sleep(0.02)
    return proc


def test_a_folder_made_at_out_during_the_run_is_never_replaced(tmp_path):
    proc = _start_and_wait_for_the_write(tmp_path)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "mine.txt").write_text("made while the run wrote\n")
    proc.wait(timeout=600)
    assert_refused(
        subprocess.CompletedProcess([], proc.returncode, proc.stdout.read(), proc.stderr.read()),
        "is not a previous llm-engram/generate_data output",
    )
    assert (tmp_path / "d" / "mine.txt").read_text() == "made while the run wrote\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_sigterm_during_the_write_leaves_nothing(tmp_path):
    proc = _start_and_wait_for_the_write(tmp_path)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 128 + signal.SIGTERM
    assert "Traceback" not in proc.stderr.read()
    assert list(tmp_path.iterdir()) == []  # no temp folder, no lock, no output


# --------------------------------------------------------------------------- generate_data.py corpus


CORPUS_CASES = [
    ("input missing", ["--input", "{ws}/nothing.md"], "does not exist; pass files or folders"),
    ("input empty", ["--input", "{ws}/empty.md"], "no text found in"),
    ("input a damaged pdf", ["--input", "{ws}/paper.pdf"], "paper.pdf: cannot be read as PDF"),
    ("input an image", ["--input", "{ws}/image.png"], "supported are .txt, .md, .pdf, .docx, .html, .htm"),
    ("input not UTF-8", ["--input", "{ws}/latin1.md"], "latin1.md: not UTF-8 text; save it as UTF-8"),
    ("unknown generator", ["--generator", "gpt:x"], "unknown generator 'gpt:x'"),
    ("hf model missing", ["--generator", "hf:{ws}/nomodel"], "does not exist; pass hf:PATH"),
    ("hf folder not a model", ["--generator", "hf:{ws}/foreign"], "cannot load the generator's tokenizer"),
    ("openai without tokenizer", ["--generator", "openai:http://127.0.0.1:9/v1"], "pass --tokenizer PATH"),
    (
        "bad tokenizer",
        ["--generator", "openai:http://127.0.0.1:9/v1", "--tokenizer", "{ws}/foreign"],
        "cannot load the tokenizer",
    ),
    ("temp-min nan", ["--temp-min", "nan"], "argument --temp-min: must be a finite number"),
    ("temp-max inf", ["--temp-max", "inf"], "argument --temp-max: must be a finite number"),
    ("temp-min negative", ["--temp-min", "-1"], "argument --temp-min: must be >= 0"),
    ("temp-min above max", ["--temp-min", "1", "--temp-max", "0.5"], "bad temperature schedule"),
    ("no temperatures", ["--temperatures", "0"], "argument --temperatures: must be >= 1"),
    (
        "every temperature held out",
        ["--temperatures", "3", "--heldout-temperatures", "3"],
        "--heldout-temperatures must be in [0, 3)",
    ),
    ("negative held out", ["--heldout-temperatures", "-1"], "argument --heldout-temperatures: must be >= 0"),
    ("concurrency 0", ["--concurrency", "0"], "argument --concurrency: must be >= 1 (got 0)"),
    ("retries -1", ["--retries", "-1"], "argument --retries: must be >= 0 (got -1)"),
    ("timeout -1", ["--timeout", "-1"], "argument --timeout: must be > 0 (got -1)"),
    ("timeout nan", ["--timeout", "nan"], "argument --timeout: must be a finite number"),
    ("chunk tokens 0", ["--chunk-tokens", "0"], "argument --chunk-tokens: must be >= 1"),
    ("tokens per question 0", ["--tokens-per-question", "0"], "argument --tokens-per-question: must be >= 1"),
    ("unknown style", ["--styles", "simple,poetic"], "unknown style poetic"),
    ("out is a file", ["--out", "{ws}/afile.txt"], "exists and is not a directory"),
    (
        "out is a foreign folder",
        ["--out", "{ws}/foreign", "--overwrite"],
        "is not a previous llm-engram/generate_data docs output",
    ),
    (
        "out holds a malformed manifest",
        ["--out", "{ws}/badmanifest", "--overwrite"],
        "is not a previous llm-engram/generate_data docs output",
    ),
]


@pytest.fixture(scope="module")
def corpus_ws(ws, tiny_llama) -> Path:
    (ws / "doc.md").write_text("Aspirin was first made by Felix Hoffmann in 1897. It treats pain.\n")
    (ws / "empty.md").write_text(" \n")
    (ws / "paper.pdf").write_bytes(b"%PDF-1.4")
    (ws / "image.png").write_bytes(b"\x89PNG")
    (ws / "latin1.md").write_bytes(b"Caf\xe9 au lait.\n")
    (ws / "badmanifest").mkdir(exist_ok=True)
    (ws / "badmanifest" / "manifest.json").write_text("{not json")
    (ws / "tok").mkdir(exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_llama / name, ws / "tok" / name)
    return ws


@pytest.mark.parametrize(("args", "message"), [c[1:] for c in CORPUS_CASES], ids=[c[0] for c in CORPUS_CASES])
def test_generate_corpus_refuses(corpus_ws, args, message):
    ws = corpus_ws
    args = [a.format(ws=ws) for a in args]
    defaults = {"--input": str(ws / "doc.md"), "--generator": f"hf:{ws / 'nomodel'}", "--out": str(ws / "newdocs")}
    if "--generator" not in args and "input" not in message and "generator" not in message:
        # Every other case must fail on its own problem, before the generator is loaded.
        defaults["--generator"] = "openai:http://127.0.0.1:9/v1"
        defaults["--tokenizer"] = str(ws / "tok")
    extra = [x for k, v in defaults.items() if k not in args for x in (k, v)]
    line = refused(ws, [*GENERATE, "corpus", *args, *extra, "--no-progress"], message)
    assert line.startswith("generate_data.py corpus: error:")
    assert not (ws / "newdocs").exists() and not (ws / "newdocs.cache").exists()


class EchoingServer(BaseHTTPRequestHandler):
    """Answers 401 and echoes the request's headers, Authorization included."""

    def do_POST(self):  # noqa: N802
        body = json.dumps({"error": "unauthorized", "headers": dict(self.headers)}).encode()
        self.send_response(401)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_an_api_key_echoed_by_the_server_is_redacted(corpus_ws, tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoingServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        argv = [
            *GENERATE,
            "corpus",
            "--input",
            str(corpus_ws / "doc.md"),
            "--out",
            str(tmp_path / "o"),
            "--generator",
            f"openai:http://127.0.0.1:{server.server_address[1]}/v1",
            "--tokenizer",
            str(corpus_ws / "tok"),
            "--retries",
            "0",
            "--no-progress",
        ]
        proc = run(argv, tmp_path, OPENAI_API_KEY="sk-test-SECRET-1234")
        line = assert_refused(proc, "answered HTTP 401")
        assert "SECRET" not in proc.stderr + proc.stdout and "Bearer ***" in line
        assert not (tmp_path / "o").exists()
    finally:
        server.shutdown()


# --------------------------------------------------------------------------- python -m engram_run


SWEEP = ["sweep", "--model", "tiny", "--data-dir", "{ws}/prev", "--outputs", "{ws}/so", "--results", "{ws}/sr"]
RUN_CASES = [
    (
        "report into the results folder",
        ["report", "--results", "{ws}/results", "--out", "{ws}/results"],
        "is not a previous llm-engram/report output",
    ),
    (
        "report into a foreign folder",
        ["report", "--results", "{ws}/prevresults", "--out", "{ws}/foreign"],
        "is not a previous llm-engram/report output",
    ),
    ("report on a cut result file", ["report", "--results", "{ws}/results", "--out", "{ws}/rep"], "is not valid JSON"),
    (
        "report with no results",
        ["report", "--results", "{ws}/foreign", "--out", "{ws}/rep"],
        "no lm-eval results under",
    ),
    (
        "compare a missing file",
        ["compare", "--base-results", "{ws}/none.json", "--tuned-results", "{ws}/ok_results.json"],
        "cannot read the lm-eval result file",
    ),
    (
        "compare a cut file",
        [
            "compare",
            "--base-results",
            "{ws}/results/run/m/results_2026-01-01T00-00-00.json",
            "--tuned-results",
            "{ws}/ok_results.json",
        ],
        "is not valid JSON",
    ),
    (
        "compare a non-result file",
        ["compare", "--base-results", "{ws}/prev/manifest.json", "--tuned-results", "{ws}/ok_results.json"],
        "is not an lm-eval result file",
    ),
    ("compare without a model", ["compare"], "compare needs --model"),
    ("compare an unknown model", ["compare", "--model", "gpt5"], "no recipe for MODEL=gpt5"),
    (
        "compare an unknown task",
        ["compare", "--model", "tiny", "--tasks", "bios_qa,hellaswg"],
        "lm-eval has no task or group 'hellaswg'",
    ),
    (
        "compare an unknown suite",
        ["compare", "--model", "tiny", "--suite", "huge"],
        "argument --suite: invalid choice: 'huge'",
    ),
    (
        "compare multiturn without chat",
        ["compare", "--model", "tiny", "--fewshot-as-multiturn"],
        "--fewshot-as-multiturn needs --apply-chat-template",
    ),
    (
        "demo with no people",
        ["demo", "--people", "0", "--data-dir", "{ws}/prev"],
        "argument --people: must be >= 4 (got 0)",
    ),
    ("demo with no epochs", ["demo", "--epochs", "0"], "argument --epochs: must be >= 1"),
    ("demo rate nan", ["demo", "--learning-rate", "nan"], "argument --learning-rate: must be a finite number"),
    (
        "demo into a foreign data folder",
        ["demo", "--data-dir", "{ws}/foreign", "--outputs", "{ws}/o", "--results", "{ws}/r"],
        "is not a previous llm-engram/generate_data output",
    ),
    (
        "demo over foreign outputs",
        ["demo", "--data-dir", "{ws}/d", "--outputs", "{ws}/outs"],
        "was not written by the demo",
    ),
    (
        "train with a malformed --set",
        ["train-all", "--models", "tiny", "--data-dir", "{ws}/prev", "--set", "num_epochs"],
        "--set takes KEY=VALUE (got 'num_epochs')",
    ),
    (
        "train without the data",
        ["train-all", "--models", "tiny", "--data-dir", "{ws}/nodata"],
        "manifest.json is missing",
    ),
    (
        "train on a foreign folder",
        ["train-all", "--models", "tiny", "--data-dir", "{ws}/foreign"],
        "manifest.json is missing",
    ),
    ("eval with limit 0", ["eval-all", "--models", "tiny", "--limit", "0"], "argument --limit: must be >= 1"),
    (
        "unknown variant",
        ["train-all", "--models", "tiny", "--variant", "bioX"],
        "invalid choice: 'bioX' (choose from 'bioS', 'bioS_fullname', 'bioS_single_permute1', 'bioS_single_permute5', 'bioS_multi5', 'bioS_multi5_permutes', 'bioS_multi5_permutes_fullname')",
    ),
    ("unknown command", ["trian"], "argument command: invalid choice: 'trian'"),
    (
        "reproduce an unknown variant",
        ["reproduce", "--variants", "bioS,bioX"],
        "unknown variant bioX; choose from bioS, bioS_fullname, bioS_single_permute1, bioS_single_permute5, bioS_multi5, bioS_multi5_permutes, bioS_multi5_permutes_fullname",
    ),
    (
        "reproduce an unknown protocol",
        ["reproduce", "--protocols", "mixed,qa"],
        "unknown protocol qa; choose from mixed, bio_then_qa",
    ),
    ("reproduce no variant", ["reproduce", "--variants", ","], "unknown variant ','"),
    (
        "reproduce a QA share of 1",
        ["reproduce", "--qa-share", "1"],
        "--qa-share 1.0 is not in [0, 1); the paper's is 0.8",
    ),
    ("reproduce an unknown scale", ["reproduce", "--scale", "huge"], "argument --scale: invalid choice: 'huge'"),
    (
        "reproduce over foreign outputs",
        ["reproduce", "--data-dir", "{ws}/d", "--outputs", "{ws}/outs"],
        "was not written by reproduce",
    ),
    (
        "reproduce a GPU recipe without data",
        ["reproduce", "--model", "llama1b", "--data-dir", "{ws}/nodata", "--outputs", "{ws}/ro"],
        "has no dataset; run `make data DATA_DIR=",
    ),
    (
        "reproduce an unknown model",
        ["reproduce", "--model", "gpt5", "--data-dir", "{ws}/prev", "--outputs", "{ws}/ro"],
        "no recipe for MODEL=gpt5",
    ),
    ("sweep a malformed grid", [*SWEEP, "--grid", "learning_rate"], "GRID takes KEY=V1,V2 ... (got 'learning_rate')"),
    (
        "sweep a misspelled key",
        [*SWEEP, "--grid", "learning_rat=1e-4,3e-4"],
        "'learning_rat' is not an Axolotl config key, so Axolotl would ignore it; did you mean 'learning_rate'?",
    ),
    ("sweep a bad value", [*SWEEP, "--grid", "num_epochs=1,abc"], "num_epochs: Input should be a valid number"),
    ("sweep without a grid", SWEEP, 'sweep takes one of GRID="KEY=V1,V2 ..." or GRID_FILE=sweep.yml'),
    ("sweep a missing grid file", [*SWEEP, "--grid-file", "{ws}/none.yml"], "cannot read the grid file"),
    ("sweep a grid file that is no grid", [*SWEEP, "--grid-file", "{ws}/prev/manifest.json"], "is not a sweep file"),
    (
        "sweep on SLURM without SLURM",
        [*SWEEP, "--grid", "learning_rate=1e-4", "--executor", "slurm"],
        "EXECUTOR=slurm needs SLURM's sbatch and srun on PATH",
    ),
    (
        "sweep over a foreign folder",
        [*SWEEP, "--grid", "learning_rate=1e-4", "--outputs", "{ws}/outs"],
        "was not written by engram_run",
    ),
    (
        "sweep without the data",
        ["sweep", "--model", "tiny", "--grid", "learning_rate=1e-4", "--data-dir", "{ws}/nodata"],
        "manifest.json is missing",
    ),
    (
        "sweep preset before the demo",
        ["sweep", "--preset", "batch"],
        "PRESET=batch trains the demo's model on the demo's data: run `make demo` first",
    ),
    (
        "lr-find rates that are no rates",
        ["lr-find", "--model", "tiny", "--lrs", "fast", "--data-dir", "{ws}/prev"],
        'LRS takes positive numbers, e.g. LRS="1e-4 2e-4 5e-4"',
    ),
    (
        "epoch-find without an eval split",
        ["epoch-find", "--model", "tiny", "--lr", "1e-3", "--data-dir", "{ws}/prev", "--set", "val_set_size=0"],
        "tuning reads validation loss, and this recipe has no eval split",
    ),
    ("epoch-find without a rate", ["epoch-find", "--model", "tiny"], "the following arguments are required: --lr"),
]


@pytest.fixture(scope="module")
def run_ws(ws) -> Path:
    (ws / "outs" / "demo").mkdir(parents=True, exist_ok=True)
    (ws / "outs" / "demo" / "keep.txt").write_text("mine\n")
    (ws / "outs" / "sweeps" / "tiny-full-bioS_multi5_permutes").mkdir(parents=True, exist_ok=True)
    (ws / "outs" / "sweeps" / "tiny-full-bioS_multi5_permutes" / "keep.txt").write_text("mine\n")
    (ws / "prevresults" / "x").mkdir(parents=True, exist_ok=True)
    shutil.copy(ws / "ok_results.json", ws / "prevresults" / "x" / "results_2026-01-02T00-00-00.json")
    return ws


@pytest.mark.parametrize(("args", "message"), [c[1:] for c in RUN_CASES], ids=[c[0] for c in RUN_CASES])
def test_engram_run_refuses(run_ws, args, message):
    line = refused(run_ws, [*ENGRAM_RUN, *[a.format(ws=run_ws) for a in args]], message)
    assert line.startswith("python -m engram_run")


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("num_epochs=abc", "num_epochs: Input should be a valid number"),
        (
            "engram_stop_at_recal=0.9",
            "unknown engram plugin key 'engram_stop_at_recal': did you mean 'engram_stop_at_recall'?",
        ),
    ],
)
def test_set_is_validated_through_axolotls_schema_before_any_config_is_written(ws, tmp_path, setting, message):
    argv = [
        *ENGRAM_RUN,
        "train-all",
        "--models",
        "tiny",
        "--data-dir",
        str(ws / "prev"),
        "--set",
        setting,
        "--outputs",
        str(tmp_path / "outputs"),
    ]
    proc = run_here(argv, tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stdout + proc.stderr
    assert message in proc.stdout, proc.stdout[-2000:]
    assert not (tmp_path / "outputs").exists()  # no config written, nothing trained


# --------------------------------------------------------------------------- recipes check, tiny


def test_recipe_check_keeps_the_field_name_and_the_hint(tmp_path):
    recipe = tmp_path / "r.yml"
    cfg = (REPO / "axolotl_configs/tiny-full.yml").read_text().replace("engram_eval_samples:", "engram_eval_sample:")
    recipe.write_text(cfg)
    proc = run_here([*RECIPES, str(recipe)], tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stdout + proc.stderr
    assert "unknown engram plugin key 'engram_eval_sample': did you mean 'engram_eval_samples'?" in proc.stdout


def test_recipe_check_refuses_engram_keys_without_the_plugin(tmp_path):
    recipe = tmp_path / "r.yml"
    text = (REPO / "axolotl_configs/tiny-full.yml").read_text().replace("  - engram_plugin.EngramPlugin\n", "")
    recipe.write_text(text.replace("plugins:\n", "plugins: []\n"))
    proc = run_here([*RECIPES, str(recipe)], tmp_path)
    assert proc.returncode == 1
    assert "set but plugins does not list engram_plugin.EngramPlugin, so Axolotl would ignore them" in proc.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{ws}/missing.yml"], "cannot read the recipe"),
        (["{ws}/list.yml"], "is not an Axolotl config (a YAML mapping of keys)"),
        (["{ws}/broken.yml"], "is not valid YAML"),
    ],
)
def test_recipe_check_names_an_unreadable_recipe(ws, args, message):
    before = snapshot(ws)
    proc = run([*RECIPES, *[a.format(ws=ws) for a in args]], ws)
    assert proc.returncode == 1 and "Traceback" not in proc.stdout + proc.stderr
    assert message in proc.stdout and snapshot(ws) == before


TINY_CASES = [
    ("data missing", ["--data", "{ws}/nodata", "--out", "{ws}/m"], "manifest.json is missing"),
    (
        "unknown architecture",
        ["--data", "{ws}/prev", "--out", "{ws}/m", "--arch", "rwkv"],
        "argument --arch: invalid choice: 'rwkv'",
    ),
    ("hidden 0", ["--data", "{ws}/prev", "--out", "{ws}/m", "--hidden", "0"], "argument --hidden: must be >= 1"),
    (
        "hidden not divisible",
        ["--data", "{ws}/prev", "--out", "{ws}/m", "--hidden", "30", "--heads", "4"],
        "is not a multiple of --heads 4",
    ),
    (
        "tokenizer missing",
        ["--data", "{ws}/prev", "--out", "{ws}/m", "--tokenizer-from", "{ws}/foreign"],
        "cannot load a tokenizer from",
    ),
    ("out is a foreign folder", ["--data", "{ws}/prev", "--out", "{ws}/foreign"], "was not written by this builder"),
    ("out is a file", ["--data", "{ws}/prev", "--out", "{ws}/afile.txt"], "was not written by this builder"),
]


@pytest.mark.parametrize(("args", "message"), [c[1:] for c in TINY_CASES], ids=[c[0] for c in TINY_CASES])
def test_tiny_builder_refuses(ws, args, message):
    line = refused(ws, [*TINY, *[a.format(ws=ws) for a in args]], message)
    assert line.startswith("python -m engram_run.runs.tiny: error:")
    assert not (ws / "m").exists()


# --------------------------------------------------------------------------- the lm-eval tasks and the plugin's reader


def _rewrite(data: Path, rows: list, fix_manifest: bool) -> None:
    """Replace qa/major.jsonl with ``rows`` (dicts, or raw lines); optionally make the
    manifest agree, as a hand-edited dataset would."""
    import hashlib

    path = data / "qa" / "major.jsonl"
    path.write_bytes(b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in rows))
    if fix_manifest:
        manifest = json.loads((data / "manifest.json").read_text())
        body = path.read_bytes()
        manifest["files"]["qa/major.jsonl"].update(rows=body.count(b"\n"), sha256=hashlib.sha256(body).hexdigest())
        (data / "manifest.json").write_text(json.dumps(manifest))


def _first(rows, **change):
    return [{**rows[0], **change}, *rows[1:]]


QA_CASES = [
    ("cut at a line boundary", lambda rows: rows[:-5], False, "does not match"),
    ("edited after generation", lambda rows: _first(rows, question="What?"), False, "does not match"),
    (
        "three choices",
        lambda rows: _first(rows, choices=rows[0]["choices"][:3], label=0, answer=rows[0]["choices"][0]),
        True,
        "does not have 4 text choices",
    ),
    ("label -1", lambda rows: _first(rows, label=-1), True, "has label -1, not 0..3"),
    ("label 4", lambda rows: _first(rows, label=4), True, "has label 4, not 0..3"),
    ("label a string", lambda rows: _first(rows, label="0"), True, "has label '0', not 0..3"),
    (
        "answer not the labelled choice",
        lambda rows: _first(rows, answer="Nothing"),
        True,
        "its answer is not choices[label]",
    ),
    ("repeated choice", lambda rows: _first(rows, choices=[rows[0]["answer"]] * 4, label=0), True, "repeats a choice"),
    ("unknown split", lambda rows: _first(rows, split="test"), True, "has split 'test'"),
    (
        "missing key",
        lambda rows: [{k: v for k, v in rows[0].items() if k != "label"}, *rows[1:]],
        True,
        "a row lacks label",
    ),
    ("not JSON", lambda rows: [rows[0], b"{oops", *rows[2:]], True, "line 2 is not JSON"),
]


@pytest.mark.parametrize(("change", "fix", "message"), [c[1:] for c in QA_CASES], ids=[c[0] for c in QA_CASES])
def test_tasks_and_the_plugin_refuse_a_bad_qa_file(ws, tmp_path, change, fix, message):
    from engram_data.contract import DataError
    from engram_eval.recall import load_questions
    from lm_eval_tasks.utils import BiosDataError, load_bios_qa

    data = tmp_path / "data"
    shutil.copytree(ws / "prev", data)
    _rewrite(data, change(read_jsonl(data / "qa/major.jsonl")), fix)
    with pytest.raises(BiosDataError) as err:
        load_bios_qa("major", data_dir=str(data))
    text = str(err.value)
    assert message in text and len(text.splitlines()) == 1 and "qa/major.jsonl" in text
    with pytest.raises(DataError, match=message.replace("[", r"\[").replace("(", r"\(")):
        load_questions(data, tokenizer=None)


@pytest.mark.parametrize(
    ("manifest", "message"),
    [(None, "manifest.json is missing"), ("{not json", "manifest.json is unreadable"), ("[1]", "is not a JSON object")],
)
def test_tasks_refuse_data_without_a_readable_manifest(ws, tmp_path, manifest, message):
    from lm_eval_tasks.utils import BiosDataError, load_bios_qa

    data = tmp_path / "data"
    shutil.copytree(ws / "prev", data)
    if manifest is None:
        (data / "manifest.json").unlink()
    else:
        (data / "manifest.json").write_text(manifest)
    with pytest.raises(BiosDataError, match=message):
        load_bios_qa("major", data_dir=str(data))


@pytest.mark.slow
def test_engram_eval_on_a_cut_file_ends_with_one_line(ws, tiny_llama, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(ws / "prev", data)
    _rewrite(data, read_jsonl(data / "qa/major.jsonl")[:-1], False)
    argv = [
        "engram-eval",
        "--model",
        "hf",
        "--model_args",
        f"pretrained={tiny_llama}",
        "--tasks",
        "bios_qa_major",
        "--metadata",
        json.dumps({"data_dir": str(data)}),
        "--device",
        "cpu",
    ]
    assert_refused(run(argv, tmp_path), "does not match", code=1, any_line=True)


# --------------------------------------------------------------------------- engram-localize

LOCALIZE_CASES = [
    (
        "base not found",
        ["diff", "--base", "{ws}/nomodel", "--tuned", "{llama}", "--out", "{ws}/loc"],
        "is neither a local folder nor a Hub model this machine can fetch",
    ),
    (
        "no weights",
        ["diff", "--base", "{llama}", "--tuned", "{ws}/foreign", "--out", "{ws}/loc"],
        "holds no model.safetensors",
    ),
    (
        "other architecture",
        ["diff", "--base", "{llama}", "--tuned", "{gpt2}", "--out", "{ws}/loc"],
        "hold different tensors",
    ),
    (
        "full model without base",
        ["diff", "--tuned", "{llama}", "--out", "{ws}/loc"],
        "is a full model: pass the model it was tuned from as --base",
    ),
    (
        "fraction above 1",
        ["graft", "--base", "{llama}", "--tuned", "{llama}", "--fractions", "0,1.5"],
        "argument --fractions: must be in [0, 1] (got 1.5)",
    ),
    (
        "negative threshold",
        ["diff", "--base", "{llama}", "--tuned", "{llama}", "--out", "{ws}/loc", "--thresholds", "-1"],
        "argument --thresholds: must be >= 0",
    ),
    (
        "graft without data",
        ["graft", "--base", "{llama}", "--tuned", "{llama}", "--out", "{ws}/loc"],
        "graft needs --data and --out",
    ),
    (
        "save without fraction",
        ["prune", "--base", "{llama}", "--tuned", "{llama}", "--save", "{ws}/m"],
        "--save needs --fraction",
    ),
    (
        "data missing",
        ["graft", "--base", "{llama}", "--tuned", "{llama}", "--data", "{ws}/nodata", "--out", "{ws}/loc"],
        "manifest.json is missing",
    ),
    (
        "out is a foreign folder",
        ["diff", "--base", "{llama}", "--tuned", "{llama}", "--out", "{ws}/foreign"],
        "was not written by engram-localize",
    ),
    (
        "trace a missing model",
        ["trace", "--model", "{ws}/nomodel", "--data", "{ws}/prev", "--out", "{ws}/loc"],
        "is neither a local folder",
    ),
]


@pytest.mark.parametrize(("args", "message"), [c[1:] for c in LOCALIZE_CASES], ids=[c[0] for c in LOCALIZE_CASES])
def test_engram_localize_refuses(ws, tiny_models, args, message):
    paths = {"ws": ws, "llama": tiny_models["llama"], "gpt2": tiny_models["gpt2"]}
    line = refused(ws, [*LOCALIZE, *[a.format(**paths) for a in args]], message)
    assert line.startswith("engram-localize")
    assert not (ws / "loc").exists() and not (ws / "m").exists()


# --------------------------------------------------------------------------- each entry point as a process

# The tables above call each entry point's main in this process. One case of each runs as its
# own process too: the exit status, the one line and no traceback, with every library's
# import-time output included.
PROCESS_CASES = [
    (
        "generate_data.py",
        GENERATE,
        ["--num-people", "0", "--out", "{ws}/new", "--no-progress"],
        "argument --num-people: must be >= 1 (got 0)",
    ),
    (
        "generate_data.py corpus",
        GENERATE,
        [
            "corpus",
            "--input",
            "{ws}/nothing.md",
            "--out",
            "{ws}/newdocs",
            "--generator",
            "hf:{ws}/nomodel",
            "--no-progress",
        ],
        "does not exist; pass hf:PATH",
    ),
    (
        "python -m engram_run",
        ENGRAM_RUN,
        [*SWEEP, "--grid", "learning_rat=1e-4,3e-4"],
        "'learning_rat' is not an Axolotl config key",
    ),
    (
        "python -m engram_run.runs.tiny",
        TINY,
        ["--data", "{ws}/prev", "--out", "{ws}/m", "--hidden", "30", "--heads", "4"],
        "is not a multiple of --heads 4",
    ),
    (
        "engram-localize",
        LOCALIZE,
        ["diff", "--base", "{llama}", "--tuned", "{gpt2}", "--out", "{ws}/loc"],
        "hold different tensors",
    ),
]


@pytest.mark.parametrize(
    ("entry", "args", "message"), [c[1:] for c in PROCESS_CASES], ids=[c[0] for c in PROCESS_CASES]
)
def test_each_entry_point_refuses_as_a_process(run_ws, tiny_models, entry, args, message):
    paths = {"ws": run_ws, "llama": tiny_models["llama"], "gpt2": tiny_models["gpt2"]}
    refused(run_ws, [*entry, *[a.format(**paths) for a in args]], message, process=True)


def test_a_signal_inside_mkdtemp_after_the_folder_exists_leaves_nothing(tmp_path, monkeypatch):
    """The window the SIGTERM test can hit under load: the temp folder made, mkdtemp not yet
    returned, when the handler raises. Simulated exactly: mkdtemp makes it, then raises."""
    import tempfile

    from engram_data.atomic import atomic_output

    real = tempfile.mkdtemp

    def made_then_interrupted(**kw):
        real(**kw)
        raise SystemExit(128 + signal.SIGTERM)

    monkeypatch.setattr(tempfile, "mkdtemp", made_then_interrupted)
    with pytest.raises(SystemExit), atomic_output(tmp_path / "d", "llm-engram/generate_data"):
        pass
    assert list(tmp_path.iterdir()) == []  # no temp folder, no lock
