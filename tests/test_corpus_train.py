"""``make corpus-train`` end to end on a tiny model (documents -> QA pairs from a chat server ->
axolotl train with the plugin scoring the documents' questions -> lm-eval corpus_qa,
corpus_qa_heldout, corpus_qa_gen -> the report), its rerun, and ``make pick-base``."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
from http.server import ThreadingHTTPServer

import pytest
from helpers.common import REPO, cli_env
from helpers.oracle_chat import JsonHandler, OracleChat, oracle_server
from test_formats import write_pdf

from engram_data.contract import read_jsonl
from engram_data.run_files import RECALL_HISTORY

pytestmark = pytest.mark.slow
STYLES = ("simple", "reverse")
PEOPLE = 12


@pytest.fixture(scope="module")
def server(bios_dir):
    with oracle_server(bios_dir / "people.jsonl", first=PEOPLE) as url:
        yield url


def corpus_train(tmp, server, tokenizer, *extra):
    cmd = [
        sys.executable,
        "-m",
        "engram_run",
        "corpus-train",
        "--corpus",
        str(tmp / "handbook"),
        "--generator",
        f"openai:{server}",
        "--generator-model",
        "stub",
        "--tokenizer",
        str(tokenizer),
        "--generate-args",
        f"--temperatures 3 --heldout-temperatures 1 --chunk-tokens 120 --styles {','.join(STYLES)}",
        "--data-dir",
        str(tmp / "data"),
        "--outputs",
        str(tmp / "outputs"),
        "--results",
        str(tmp / "results"),
        "--set",
        "num_epochs=30",
        "micro_batch_size=1",
        "engram_eval_samples=200",
        *extra,
    ]
    return subprocess.run(cmd, cwd=tmp, env=cli_env(), capture_output=True, text=True)


@pytest.fixture(scope="module")
def trained(server, tiny_llama, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("corpus-train")
    folder = tmp / "handbook"
    folder.mkdir()
    for p in OracleChat.people.values():  # one biography per document, a third of them PDFs
        if p["id"] % 3:
            (folder / f"person-{p['id']}.md").write_text(p["bioS"] + "\n")
        else:
            write_pdf(folder / f"person-{p['id']}.pdf", [p["bioS"]])
    proc = corpus_train(tmp, server, tiny_llama)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return tmp, proc


def test_one_command_trains_on_the_documents_and_scores_them(trained):
    tmp, proc = trained
    run = "tiny-full-corpus-handbook"
    cfg = (tmp / "outputs" / run / "config.yml").read_text()
    assert "chunks.jsonl" in cfg and "qa_train.jsonl" in cfg and "lr_scheduler: constant" in cfg
    results = json.loads(next((tmp / "results" / run).rglob("results_*.json")).read_text())["results"]
    assert {"corpus_qa", "corpus_qa_heldout", "corpus_qa_gen"} <= set(results)
    qa = read_jsonl(tmp / "data" / "qa" / "corpus.jsonl")
    trained_n = sum(r["split"] == "train" for r in qa)
    assert results["corpus_qa"]["acc,none"] >= 0.9, results  # the trained pairs, memorized
    assert results["corpus_qa_gen"]["exact_match,none"] >= 0.5, results
    # The plugin scored the documents' questions, by style, at step 0 (the floor) and after training.
    history = [json.loads(line) for line in (tmp / "outputs" / run / "model" / RECALL_HISTORY).read_text().splitlines()]
    first, last = history[0], history[-1]
    assert first["step"] == 0 and {f"eval_engram_qa_acc_{s}" for s in STYLES} <= set(first)
    assert "eval_engram_heldout_acc_overall" in first and "eval_engram_reverse_acc" not in first
    assert first["eval_engram_qa_acc_overall"] <= 0.45 and last["eval_engram_qa_acc_overall"] >= 0.9
    # The plugin's recall and lm-eval's agree on the same questions (the plugin scores all of them here).
    assert trained_n <= 200 * len(STYLES)
    assert abs(last["eval_engram_qa_acc_overall"] - results["corpus_qa"]["acc,none"]) < 1e-9
    report = (tmp / "results" / "report" / "report.md").read_text()
    assert run in report and "corpus_heldout" in report
    assert "[engram] corpus_qa" in proc.stdout


def test_a_rerun_on_the_same_documents_trains_nothing_and_sends_nothing(trained, server, tiny_llama):
    tmp, _ = trained
    calls = OracleChat.calls
    before = (tmp / "outputs" / "tiny-full-corpus-handbook" / "model" / "model.safetensors").stat().st_mtime_ns
    proc = corpus_train(tmp, server, tiny_llama)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "already trained on this data" in proc.stdout and "already evaluated" in proc.stdout
    assert OracleChat.calls == calls  # every reply cached
    assert (tmp / "outputs" / "tiny-full-corpus-handbook" / "model" / "model.safetensors").stat().st_mtime_ns == before


def test_pick_base_ranks_the_trained_model_first_on_one_sample(trained):
    tmp, _ = trained
    run = tmp / "outputs" / "tiny-full-corpus-handbook"
    out = tmp / "pick"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "engram_run",
            "pick-base",
            "--models",
            f"{run / 'init'} {run / 'model'}",
            "--data-dir",
            str(tmp / "data"),
            "--sample",
            "20",
            "--out",
            str(out),
        ],
        cwd=tmp,
        env=cli_env(),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = json.loads((out / "pick-base.json").read_text())
    assert [r["candidate"] for r in rows] == ["model", "init"]
    assert rows[0]["acc"] >= 0.9 and rows[1]["p_vs_best"] < 0.05 and not rows[1]["tied_with_best"]
    assert all(r["questions"] == 20 for r in rows)
    assert "model scores best" in proc.stdout and (out / "pick-base.png").exists()
    # lm-eval scored 20 questions (its n-samples reports the task's size under --samples): the
    # untrained model's accuracy is k/20 and its standard error that of 20.
    p = rows[1]["acc"]
    assert round(p * 20, 9).is_integer() and abs(rows[1]["stderr"] - math.sqrt(p * (1 - p) / 19)) < 1e-9


def test_bad_corpus_train_input_is_one_line(tmp_path, tiny_llama):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("Aspirin thins the blood.\n")
    for given, generator, line in [
        (
            tmp_path / "missing",
            f"hf:{tiny_llama}",
            "missing does not exist; pass files or folders of documents (CORPUS=...)",
        ),
        (corpus, "gpt:x", "--generator gpt:x: no model folder there; pass a model folder, or hf:PATH / openai:URL"),
        # the default generator, before make pretrained
        (
            corpus,
            None,
            "--generator models/smollm2-135m: no model folder there; run make pretrained, or hf:PATH / openai:URL",
        ),
        # engram-data's own error line, said once, by corpus-train
        (
            corpus,
            f"hf:{tmp_path}/x",
            f"generator model {tmp_path}/x does not exist; pass hf:PATH to a local model folder",
        ),
    ]:
        cmd = [
            sys.executable,
            "-m",
            "engram_run",
            "corpus-train",
            "--corpus",
            str(given),
            *(["--generator", generator] if generator else []),
            "--data-dir",
            str(tmp_path / "d"),
        ]
        proc = subprocess.run(cmd, cwd=tmp_path, env=cli_env(), capture_output=True, text=True)
        assert proc.returncode != 0 and "Traceback" not in proc.stderr
        errors = [e for e in proc.stderr.splitlines() if "error" in e]
        assert len(errors) == 1 and errors[0].endswith(line), proc.stderr[-2000:]
    assert not (tmp_path / "d").exists() and not (tmp_path / "outputs").exists()


@pytest.mark.parametrize("recipe", ["llama3b", "gpt2-lora", "llama8b-qlora"])
def test_the_documents_recipe_of_a_gpu_recipe_passes_axolotls_gpu_validation(trained, recipe):
    from engram_run.runs.corpus import corpus_config
    from engram_run.runs.recipes import load_recipe, recipe_path, validate

    tmp, _ = trained
    cfg = corpus_config(recipe_path(recipe), tmp / "data", tmp / "o" / "model")
    assert [d["path"] for d in cfg["datasets"]] == [
        str(tmp / "data" / "train" / f) for f in ("chunks.jsonl", "qa_train.jsonl")
    ]
    assert cfg["lr_scheduler"] == "constant" and "warmup_steps" not in cfg and "warmup_ratio" not in cfg
    assert cfg["engram_data_dir"] == str(tmp / "data") and cfg["engram_eval_heldout"] and not cfg["engram_eval_reverse"]
    own = load_recipe(recipe_path(recipe))
    assert all(cfg[k] == own[k] for k in ("base_model", "learning_rate", "micro_batch_size", "adapter") if k in own)
    validate(cfg, gpus=1)  # as axolotl train does on a bf16 GPU


@pytest.mark.parametrize(
    ("argv", "notice", "error"),
    [
        (
            [sys.executable, "generate_data.py", "docs", "--input", "no-such-folder", "--generator", "hf:x"],
            "generate_data.py docs is deprecated and goes in 0.2: use generate_data.py corpus",
            "generate_data.py corpus: error: generator model x does not exist",
        ),
        (
            [sys.executable, "-m", "engram_run", "docs-train", "--docs", "no-such-folder", "--generator", "hf:x"],
            "docs-train is deprecated and goes in 0.2: use corpus-train (--corpus for --docs)",
            "no-such-folder does not exist; pass files or folders of documents",
        ),
    ],
)
def test_the_old_docs_commands_work_with_a_one_line_notice(tmp_path, argv, notice, error):
    proc = subprocess.run(argv, cwd=REPO, env=cli_env(), capture_output=True, text=True)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 2, proc.stderr
    assert lines[0] == notice and error in lines[1]


def test_the_real_generator_and_the_real_base_in_one_command(smollm2, tmp_path):
    """``make corpus-train CORPUS=<two pages of the libffi manual> MODEL=smollm2-135m-full`` at a
    tiny size: the real SmolLM2-135M-Instruct (make pretrained's folder) is served here as the
    default generator, writes the pairs with the few-shot prompt, and is the base fine-tuned;
    a rerun serves it again but sends nothing (its replies are cached by the model's name)."""
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "smollm2-135m").symlink_to(smollm2)
    docs = REPO / "tests" / "fixtures" / "documents" / "libffi"
    make = subprocess.run(
        ["make", "-n", "corpus-train", f"CORPUS={docs}", "MODEL=smollm2-135m-full"],
        cwd=REPO,
        capture_output=True,
        text=True,
    ).stdout
    assert "engram_run.runs.pretrained" in make  # make pretrained first: the default generator
    line = next(x for x in make.splitlines() if " corpus-train " in x)
    assert "--generator" not in line and "--model smollm2-135m-full" in line
    cmd = [
        sys.executable,
        "-m",
        "engram_run",
        "corpus-train",
        "--corpus",
        str(docs),
        "--model",
        "smollm2-135m-full",
        # three low temperatures, short chunks (two pairs each, ~3 s a reply): 18 requests
        "--generate-args",
        "--temperatures 3 --temp-max 0.6 --heldout-temperatures 0 --styles simple --chunk-tokens 120",
        "--set",
        "max_steps=3",
        "sequence_len=128",
        "micro_batch_size=4",
        "engram_effective_batch=4",
        "engram_eval_samples=4",
        "save_strategy='no'",
        "val_set_size=0",
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, env=cli_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = tmp_path / "outputs" / "smollm2-135m-full-corpus-libffi"
    assert "Uvicorn running" in (run / "generator-serve.log").read_text()
    data = tmp_path / "data" / "corpus-libffi"
    manifest = json.loads((data / "manifest.json").read_text())
    c = manifest["counts"]
    assert (c["files_read"], c["chunks"], c["requests_sent"]) == (2, 6, 18)
    assert manifest["model"] == "openai:localhost#models/smollm2-135m" and manifest["prompt"] == "few-shot"
    kept = [g for g in read_jsonl(data / "generated.jsonl") if g["fate"] == "kept"]
    assert len(kept) == c["qa_train"] >= 4 and all(g["grounded"] and g["names_subject"] for g in kept)
    config = (run / "config.yml").read_text()
    assert "base_model: models/smollm2-135m" in config
    results = json.loads(
        next((tmp_path / "results").glob("smollm2-135m-full-corpus-libffi/**/results_*.json")).read_text()
    )
    assert {"corpus_qa", "corpus_qa_gen"} <= set(results["results"])
    again = subprocess.run(cmd, cwd=tmp_path, env=cli_env(), capture_output=True, text=True)
    assert again.returncode == 0 and "already trained on this data" in again.stdout, again.stderr[-2000:]
    c = json.loads((data / "manifest.json").read_text())["counts"]
    assert (c["requests_sent"], c["requests_cached"]) == (0, 18)


class ProseChat(JsonHandler):
    """A generator that never writes a pair: every reply is prose."""

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self._chat(body, "Aspirin is a fine drug, and I would rather talk about it than list questions.")


def test_replies_that_leave_nothing_to_train_stop_with_one_line_saying_why(tmp_path, tiny_llama):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("Aspirin thins the blood. Felix Hoffmann made it in 1897.\n")
    server = ThreadingHTTPServer(("127.0.0.1", 0), ProseChat)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    cmd = [
        *(sys.executable, "-m", "engram_run", "corpus-train", "--corpus", str(corpus)),
        *("--generator", f"openai:http://127.0.0.1:{server.server_address[1]}/v1", "--generator-model", "prose"),
        # one chunk, two temperatures, three styles: six replies
        *("--tokenizer", str(tiny_llama), "--generate-args", "--temperatures 2 --heldout-temperatures 0"),
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, env=cli_env(), capture_output=True, text=True)
    server.shutdown()
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    errors = [e for e in proc.stderr.splitlines() if ": error: " in e]
    assert errors == [
        "python -m engram_run: error: no question-answer pairs to train on in data/corpus-corpus: of 6 replies 6 "
        "were malformed (6 no_json); of 0 pairs 0 were ungrounded, 0 without their subject, 0 duplicates and 0 "
        "without three other answers to be their options (see its generated.jsonl); ask at more temperatures "
        '(--generate-args "--temperatures 9"), keep what was dropped (--keep-ungrounded), or use a larger generator'
    ], proc.stderr[-2000:]
    assert not (tmp_path / "outputs").exists()  # nothing trained
