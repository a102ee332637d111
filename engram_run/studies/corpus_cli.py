"""The documents commands of ``python -m engram_run``: ``corpus-train``, ``pick-base``, ``corpus-study``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engram_data.errors import number
from engram_run.reports.pick_base import pick_base
from engram_run.reports.report import report
from engram_run.runs.corpus import DEFAULT_GENERATOR, CorpusSettings, corpus_train
from engram_run.runs.recipes import parse_overrides
from engram_run.studies.cli import PATH_FIELDS, TINY_MODEL_FIELDS, add_settings
from engram_run.studies.corpus_study import ARMS, CorpusStudySettings, corpus_study

COMMANDS = ("corpus-train", "pick-base", "corpus-study")
# The names before data version 2.3 called the feature "docs" (the word of the docs site): kept until 0.2.
DEPRECATED = {"docs-train": "corpus-train", "docs-study": "corpus-study"}


def _generator_options(p) -> None:
    p.add_argument(
        "--generator",
        default=DEFAULT_GENERATOR,
        help=f"a local model folder, served here (default: {DEFAULT_GENERATOR}, make pretrained's), "
        "hf:PATH (the same, loaded in this process) or openai:URL (a served one; with --generator-model)",
    )
    p.add_argument("--generator-model", default=None, help="the served model's name, for openai:")
    p.add_argument("--tokenizer", default=None, help="the tokenizer to chunk by, for openai: (a local folder)")


def add_corpus_parsers(sub) -> None:
    t = sub.add_parser(
        "corpus-train",
        aliases=["docs-train"],
        help="your documents -> QA pairs -> axolotl train -> lm-eval corpus_qa -> report",
    )
    t.add_argument(
        "--corpus",
        "--docs",
        dest="corpus",
        nargs="+",
        required=True,
        help="files or folders: .pdf .docx .html .md .txt",
    )
    _generator_options(t)
    t.add_argument("--model", default="tiny", help="tiny (a CPU, from scratch) or a recipe: llama1b, llama3b, ...")
    t.add_argument("--method", default=None, help="full, lora or qlora (default: the recipe's own)")
    t.add_argument("--hidden", type=number(int, 1), default=128, help="--model tiny: its width (default: 128)")
    t.add_argument("--layers", type=number(int, 1), default=4, help="--model tiny: its layers (default: 4)")
    t.add_argument("--name", default=None, help="names the run and its data (default: the first input's name)")
    t.add_argument("--data-dir", type=Path, default=None, help="the QA data (default: data/corpus-<name>)")
    t.add_argument("--generate-args", default="", help='more engram-data corpus flags, e.g. "--temperatures 3"')
    t.add_argument("--set", nargs="*", default=[], help="KEY=VALUE config overrides")
    t.add_argument("--force", action="store_true", help="retrain a finished run")
    t.add_argument("--gpus", type=number(int, 1), default=1)
    t.add_argument("--outputs", default="outputs", type=Path)
    t.add_argument("--results", default="results", type=Path)

    b = sub.add_parser("pick-base", help="rank base models un-tuned on a sample of the documents' questions")
    b.add_argument("--models", required=True, help='recipes or local model folders, e.g. "llama1b gpt2"')
    b.add_argument("--data-dir", type=Path, required=True, help="a documents dataset (make corpus-train's DATA_DIR)")
    b.add_argument("--sample", type=number(int, 1), default=200, help="questions scored (default: 200)")
    b.add_argument("--seed", type=number(int), default=0)
    b.add_argument("--out", type=Path, default=Path("results/pick-base"))

    d = sub.add_parser(
        "corpus-study",
        aliases=["docs-study"],
        help="does the recipe work? chunks vs QA at 1 or 9 temperatures vs + reverse",
    )
    defaults = CorpusStudySettings()
    add_settings(
        d,
        defaults,
        (
            "people",
            "teach_people",
            "generator_steps",
            "steps",
            "epochs",
            *TINY_MODEL_FIELDS,
            *PATH_FIELDS,
        ),
    )
    d.add_argument(
        "--model",
        default=defaults.model,
        help="what each arm trains: tiny (a random Llama, from scratch, --steps) or a recipe: smollm2-135m "
        "(its pretrained base, fine-tuned: --epochs over each arm's texts, one a step, at the recipe's rate)",
    )
    d.add_argument(
        "--generator",
        default=defaults.generator,
        help="a local model folder, served here (default: models/smollm2-135m, make pretrained's), "
        "taught (a small model taught here the answer format), or openai:URL (with --generator-model)",
    )
    d.add_argument("--generator-model", default=None, help="the served model's name, for openai:")
    d.add_argument("--tokenizer", default=None, help="the tokenizer to chunk by, for openai: (a local folder)")

    def arms(text: str) -> tuple[str, ...]:
        names = [a.strip() for a in text.split(",") if a.strip()]
        if not names or any(a not in ARMS for a in names):
            raise argparse.ArgumentTypeError(f"unknown arm in {text!r}; choose from {', '.join(ARMS)}")
        return tuple(a for a in ARMS if a in names)

    d.add_argument("--arms", type=arms, default=defaults.arms, help=f"comma-separated, from {','.join(ARMS)}")


def corpus_command(args) -> int:
    if args.command in DEPRECATED:
        new = DEPRECATED[args.command]
        print(f"{args.command} is deprecated and goes in 0.2: use {new} (--corpus for --docs)", file=sys.stderr)
        args.command = new
    if args.command == "corpus-train":
        overrides = parse_overrides(args.set)
        s = CorpusSettings(
            tuple(args.corpus),
            args.generator,
            args.generator_model,
            args.tokenizer,
            tuple(args.generate_args.split()),
            args.model,
            args.method,
            args.hidden,
            args.layers,
            args.name,
            args.data_dir,
            overrides,
            args.force,
            args.gpus,
            args.outputs,
            args.results,
        )
        results = corpus_train(s)
        line = ", ".join(
            f"{task} {res.get('acc,none', res.get('exact_match,none')):.3f}" for task, res in sorted(results.items())
        )
        print(f"[engram] {line}")
        print(f"report: {report(s.results, s.outputs, s.results / 'report')}")
    elif args.command == "pick-base":
        pick_base(args.models.replace(",", " ").split(), args.data_dir, args.out, args.sample, args.seed)
    else:
        fields = CorpusStudySettings.__dataclass_fields__
        corpus_study(CorpusStudySettings(**{k: v for k, v in vars(args).items() if k in fields}))
    return 0
