"""Your documents, end to end (``make docs-train``).

DOCS -> ``engram-data docs`` (question-answer pairs from a generator LLM, requests cached) ->
the documents recipe (MODEL's own recipe with the documents' chunks and trained pairs as its
datasets, a constant learning rate, and the plugin's recall on the documents' questions) ->
``axolotl train`` (resumes an interrupted run) -> lm-eval ``docs_qa``, ``docs_qa_heldout``,
``docs_qa_gen`` -> the report (``make report``'s, with the documents' columns).

    DATA_DIR (default data/docs-<name>)      the QA data; DATA_DIR.cache the generator's replies
    outputs/<model>-<method>-docs-<name>/    config.yml, model/, train.log, as any run
    results/<model>-<method>-docs-<name>/    lm-eval's own JSON

MODEL=tiny is a small Llama built from the documents' own text and trained from scratch (a
CPU); any other recipe fine-tunes its base model (a GPU).
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from engram_data.contract import QA_TRAIN, read_manifest, train_file
from engram_eval.lm_eval_args import model_args
from engram_run.runs import evaluation, launch
from engram_run.runs.recipes import (
    PLUGIN,
    RECIPES_DIR,
    RunError,
    derive_config,
    for_gpus,
    load_recipe,
    recipe_method,
    recipe_path,
    validate,
    write_config,
)

DOCS_TASKS = ("docs_qa", "docs_qa_heldout", "docs_qa_gen")
CHUNKS = "chunks"  # train/chunks.jsonl: the documents' text, cut as the generator read it
DATA_SUM = ".engram_data_sha256"  # the QA data a finished run trained on


@dataclass(frozen=True)
class DocsSettings:
    docs: tuple[str, ...]  # files or folders: .pdf .docx .html .md .txt
    generator: str  # hf:PATH or openai:URL
    generator_model: str | None = None  # the served model's name, for openai:
    tokenizer: str | None = None  # the tokenizer to chunk by, for openai:
    generate_args: tuple[str, ...] = ()  # more `engram-data docs` flags, as it spells them
    model: str = "tiny"
    method: str | None = None
    hidden: int = 128  # MODEL=tiny: its width and depth
    layers: int = 4
    name: str | None = None  # default: the first input's name
    data_dir: Path | None = None  # default: data/docs-<name>
    overrides: dict = field(default_factory=dict)
    force: bool = False
    gpus: int = 1
    outputs: Path = Path("outputs")
    results: Path = Path("results")

    @property
    def label(self) -> str:
        return self.name or Path(self.docs[0]).stem

    @property
    def data(self) -> Path:
        return self.data_dir or Path("data") / f"docs-{self.label}"


def generate(s: DocsSettings) -> None:
    """``engram-data docs`` into ``s.data``, its progress and its one error line shown as they
    come; a rerun sends only the requests not cached yet."""
    cmd = [
        launch.tool("engram-data"),
        "docs",
        "--input",
        *s.docs,
        "--out",
        str(s.data),
        "--generator",
        s.generator,
        "--overwrite",
        *(["--model", s.generator_model] if s.generator_model else []),
        *(["--tokenizer", s.tokenizer] if s.tokenizer else []),
        *s.generate_args,
    ]
    proc = subprocess.Popen(cmd, env=launch.tool_env(), stderr=subprocess.PIPE)
    error, pending = "", b""
    while chunk := proc.stderr.read1(4096):  # its progress bars and warnings, shown as they come
        pending += chunk
        *done, pending = re.split(rb"(?<=[\r\n])", pending)
        for piece in done:
            if piece.startswith(b"generate_data.py docs: error: "):
                error = piece.decode(errors="replace").split(": error: ", 1)[1].strip()  # ours to say, once
            else:
                sys.stderr.buffer.write(piece)
        sys.stderr.flush()
    sys.stderr.buffer.write(pending)
    if proc.wait() != 0:
        raise RunError(f"no QA data from {', '.join(s.docs)}: {error or f'engram-data docs exited {proc.returncode}'}")


def docs_config(recipe: Path, data_dir: Path, model_dir: Path, overrides: dict | None = None) -> dict:
    """The documents recipe: ``recipe`` trained on the documents' chunks and trained pairs, at
    a constant rate, with the plugin (where the recipe lists it) scoring the documents'
    questions: the trained temperatures, and the held-out ones where there are any."""
    cfg = derive_config(recipe, data_dir, model_dir)
    text = {"ds_type": "json", "type": "completion", "field": "text"}
    cfg["datasets"] = [{"path": str(train_file(data_dir, name)), **text} for name in (CHUNKS, QA_TRAIN)]
    cfg["lr_scheduler"] = "constant"  # the same rate for the last fact as for the first
    for key in ("warmup_steps", "warmup_ratio", "cosine_min_lr_ratio"):
        cfg.pop(key, None)
    if PLUGIN in (cfg.get("plugins") or []):
        heldout = read_manifest(data_dir)["counts"].get("qa_heldout", 0) > 0
        cfg |= {"engram_eval_heldout": heldout, "engram_eval_reverse": False}
        if cfg.get("engram_post_eval"):
            cfg["engram_post_eval_tasks"] = list(tasks_for(data_dir))
    return cfg | (overrides or {})


def tasks_for(data_dir: Path) -> tuple[str, ...]:
    """The docs tasks the data has questions for (no docs_qa_heldout without held-out temperatures)."""
    heldout = read_manifest(data_dir)["counts"].get("qa_heldout", 0) > 0
    return tuple(t for t in DOCS_TASKS if heldout or t != "docs_qa_heldout")


def data_sum(data_dir: Path) -> str:
    """The data files' own sha256s (the manifest's other counts, e.g. of cached requests, vary)."""
    files = json.dumps(read_manifest(data_dir)["files"], sort_keys=True)
    return hashlib.sha256(files.encode()).hexdigest() + "\n"


def docs_train(s: DocsSettings, step=print) -> dict:
    """Documents -> QA data -> trained model -> lm-eval scores; returns lm-eval's results."""
    recipe = RECIPES_DIR / "tiny.yml" if s.model == "tiny" else recipe_path(s.model, s.method)
    run = f"{s.model}-{recipe_method(load_recipe(recipe))}-docs-{s.label}"
    run_dir, results_dir = s.outputs / run, s.results / run
    missing = [d for d in s.docs if not Path(d).exists()]
    if missing:  # before the generator is loaded
        raise RunError(f"{missing[0]} does not exist; pass files or folders of documents (DOCS=...)")
    step(f"[engram] {run}: question-answer pairs from {', '.join(s.docs)} into {s.data}")
    generate(s)
    model_dir = run_dir / "model"
    same_data = (run_dir / DATA_SUM).exists() and (run_dir / DATA_SUM).read_text() == data_sum(s.data)
    if launch.is_trained(model_dir) and same_data and not s.force:
        step(f"[engram] {run}: already trained on this data (FORCE=1 retrains)")
    else:
        launch.claim(run_dir)
        base = None
        if s.model == "tiny":  # a tokenizer of the documents' own text, and random weights
            step(f"[engram] {run}: building a small Llama from the documents' text")
            launch.remove_own(run_dir / "init")
            base = launch.build_model(s.data, run_dir / "init", run_dir / "build.log", hidden=s.hidden, layers=s.layers)
        overrides = {**({"base_model": str(base)} if base else {}), **s.overrides}
        cfg = for_gpus(docs_config(recipe, s.data, model_dir, overrides), s.gpus)
        validate(cfg)
        write_config(cfg, run_dir / "config.yml")
        # An interrupted run on this same data resumes; new data (or FORCE=1) starts over.
        launch.start_over_unless_resumable(run_dir / "config.yml", model_dir, s.force or not same_data)
        (run_dir / DATA_SUM).write_text(data_sum(s.data))
        step(f"[engram] {run}: axolotl train (log: {run_dir / 'train.log'})")
        if not launch.train(run_dir / "config.yml", model_dir, run_dir / "train.log", launch.gpu_args(s.gpus)):
            raise RunError(f"training {run} failed; see {run_dir / 'train.log'}")
    scored = results_dir / DATA_SUM
    if scored.exists() and scored.read_text() == data_sum(s.data) and same_data and not s.force:
        step(f"[engram] {run}: already evaluated ({results_dir})")
    else:
        tasks = tasks_for(s.data)
        step(f"[engram] {run}: lm-eval {', '.join(tasks)} into {results_dir}")
        launch.remove_own(results_dir)
        base = load_recipe(run_dir / "config.yml")["base_model"]
        if not evaluation.evaluate(model_args(model_dir, base), s.data, results_dir, tasks):
            raise RunError(f"evaluating {run} failed; see {results_dir / 'eval.log'}")
        scored.write_text(data_sum(s.data))
    return evaluation.read_results(evaluation.latest_results(results_dir))["results"]
