"""Your documents, end to end (``make corpus-train``).

CORPUS -> ``engram-data corpus`` (question-answer pairs from a generator LLM, requests cached) ->
the documents recipe (MODEL's own recipe with the documents' chunks and trained pairs as its
datasets, a constant learning rate, and the plugin's recall on the documents' questions) ->
``axolotl train`` (resumes an interrupted run) -> lm-eval ``corpus_qa``, ``corpus_qa_heldout``,
``corpus_qa_gen`` -> the report (``make report``'s, with the documents' columns).

    DATA_DIR (default data/corpus-<name>)      the QA data; DATA_DIR.cache the generator's replies
    outputs/<model>-<method>-corpus-<name>/    config.yml, model/, train.log, as any run
    results/<model>-<method>-corpus-<name>/    lm-eval's own JSON

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
    RunError,
    derive_config,
    for_gpus,
    load_recipe,
    recipe_method,
    recipe_path,
    validate,
    write_config,
)

CORPUS_TASKS = ("corpus_qa", "corpus_qa_heldout", "corpus_qa_gen")
CHUNKS = "chunks"  # train/chunks.jsonl: the documents' text, cut as the generator read it
DATA_SUM = ".engram_data_sha256"  # the QA data a finished run trained on


@dataclass(frozen=True)
class CorpusSettings:
    corpus: tuple[str, ...]  # files or folders: .pdf .docx .html .md .txt
    generator: str  # hf:PATH or openai:URL
    generator_model: str | None = None  # the served model's name, for openai:
    tokenizer: str | None = None  # the tokenizer to chunk by, for openai:
    generate_args: tuple[str, ...] = ()  # more `engram-data corpus` flags, as it spells them
    model: str = "tiny"
    method: str | None = None
    hidden: int = 128  # MODEL=tiny: its width and depth
    layers: int = 4
    name: str | None = None  # default: the first input's name
    data_dir: Path | None = None  # default: data/corpus-<name>
    overrides: dict = field(default_factory=dict)
    force: bool = False
    gpus: int = 1
    outputs: Path = Path("outputs")
    results: Path = Path("results")

    @property
    def label(self) -> str:
        return self.name or Path(self.corpus[0]).stem

    @property
    def data(self) -> Path:
        return self.data_dir or Path("data") / f"corpus-{self.label}"


def generate(s: CorpusSettings) -> None:
    """``engram-data corpus`` into ``s.data``, its progress and its one error line shown as they
    come; a rerun sends only the requests not cached yet."""
    cmd = [
        launch.tool("engram-data"),
        "corpus",
        "--input",
        *s.corpus,
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
            if piece.startswith(b"generate_data.py corpus: error: "):
                error = piece.decode(errors="replace").split(": error: ", 1)[1].strip()  # ours to say, once
            else:
                sys.stderr.buffer.write(piece)
        sys.stderr.flush()
    sys.stderr.buffer.write(pending)
    if proc.wait() != 0:
        raise RunError(
            f"no QA data from {', '.join(s.corpus)}: {error or f'engram-data corpus exited {proc.returncode}'}"
        )


@dataclass(frozen=True)
class DataSummary:
    """What a run needs to know of its QA data, read once from its manifest."""

    sha256: str  # of the data files' own sha256s (the manifest's other counts, e.g. cached requests, vary)
    heldout: bool  # held-out temperatures: corpus_qa_heldout has questions

    @classmethod
    def read(cls, data_dir: Path) -> DataSummary:
        manifest = read_manifest(data_dir)
        files = json.dumps(manifest["files"], sort_keys=True)
        return cls(hashlib.sha256(files.encode()).hexdigest() + "\n", manifest["counts"].get("qa_heldout", 0) > 0)

    @property
    def tasks(self) -> tuple[str, ...]:
        """The corpus tasks the data has questions for (no corpus_qa_heldout without held-out temperatures)."""
        return tuple(t for t in CORPUS_TASKS if self.heldout or t != "corpus_qa_heldout")


def corpus_config(
    recipe: Path, data_dir: Path, model_dir: Path, overrides: dict | None = None, data: DataSummary | None = None
) -> dict:
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
        data = data or DataSummary.read(data_dir)
        cfg |= {"engram_eval_heldout": data.heldout, "engram_eval_reverse": False}
        if cfg.get("engram_post_eval"):
            cfg["engram_post_eval_tasks"] = list(data.tasks)
    return cfg | (overrides or {})


@dataclass(frozen=True)
class CorpusPlan:
    """A documents run, decided once from the settings and the generated data, and passed down."""

    recipe: Path
    run: str  # <model>-<method>-corpus-<name>
    run_dir: Path
    results_dir: Path
    data: DataSummary
    same_data: bool  # the run folder last trained on this same data (an interrupted run resumes)
    trained: bool  # a finished model trained on this same data (and no FORCE=1)
    scored: bool  # and evaluated on it

    @property
    def model_dir(self) -> Path:
        return self.run_dir / "model"

    @classmethod
    def make(cls, s: CorpusSettings, recipe: Path, run: str) -> CorpusPlan:
        run_dir, results_dir = s.outputs / run, s.results / run
        data = DataSummary.read(s.data)
        same_data = (run_dir / DATA_SUM).exists() and (run_dir / DATA_SUM).read_text() == data.sha256
        trained = same_data and not s.force and launch.is_trained(run_dir / "model")
        scored = trained and (results_dir / DATA_SUM).exists() and (results_dir / DATA_SUM).read_text() == data.sha256
        return cls(recipe, run, run_dir, results_dir, data, same_data, trained, scored)


def corpus_train(s: CorpusSettings, step=print) -> dict:
    """Documents -> QA data -> trained model -> lm-eval scores; returns lm-eval's results."""
    recipe = recipe_path(s.model, s.method)
    run = f"{s.model}-{recipe_method(load_recipe(recipe))}-corpus-{s.label}"
    missing = [d for d in s.corpus if not Path(d).exists()]
    if missing:  # before the generator is loaded
        raise RunError(f"{missing[0]} does not exist; pass files or folders of documents (CORPUS=...)")
    step(f"[engram] {run}: question-answer pairs from {', '.join(s.corpus)} into {s.data}")
    generate(s)
    plan = CorpusPlan.make(s, recipe, run)
    if plan.trained:
        step(f"[engram] {run}: already trained on this data (FORCE=1 retrains)")
    else:
        train(s, plan, step)
    if plan.scored:
        step(f"[engram] {run}: already evaluated ({plan.results_dir})")
    else:
        score(s, plan, step)
    return evaluation.read_results(evaluation.latest_results(plan.results_dir))["results"]


def train(s: CorpusSettings, plan: CorpusPlan, step) -> None:
    run_dir = plan.run_dir
    launch.claim(run_dir)
    base = None
    if s.model == "tiny":  # a tokenizer of the documents' own text, and random weights
        step(f"[engram] {plan.run}: building a small Llama from the documents' text")
        launch.remove_own(run_dir / "init")
        base = launch.build_model(s.data, run_dir / "init", run_dir / "build.log", hidden=s.hidden, layers=s.layers)
    overrides = {**({"base_model": str(base)} if base else {}), **s.overrides}
    cfg = for_gpus(corpus_config(plan.recipe, s.data, plan.model_dir, overrides, plan.data), s.gpus)
    validate(cfg)
    write_config(cfg, run_dir / "config.yml")
    # An interrupted run on this same data resumes; new data (or FORCE=1) starts over.
    launch.start_over_unless_resumable(run_dir / "config.yml", plan.model_dir, s.force or not plan.same_data)
    (run_dir / DATA_SUM).write_text(plan.data.sha256)
    step(f"[engram] {plan.run}: axolotl train (log: {run_dir / 'train.log'})")
    if not launch.train(run_dir / "config.yml", plan.model_dir, run_dir / "train.log", launch.gpu_args(s.gpus)):
        raise RunError(f"training {plan.run} failed; see {run_dir / 'train.log'}")


def score(s: CorpusSettings, plan: CorpusPlan, step) -> None:
    tasks = plan.data.tasks
    step(f"[engram] {plan.run}: lm-eval {', '.join(tasks)} into {plan.results_dir}")
    launch.remove_own(plan.results_dir)
    base = load_recipe(plan.run_dir / "config.yml")["base_model"]
    if not evaluation.evaluate(model_args(plan.model_dir, base), s.data, plan.results_dir, tasks):
        raise RunError(f"evaluating {plan.run} failed; see {plan.results_dir / 'eval.log'}")
    (plan.results_dir / DATA_SUM).write_text(plan.data.sha256)
