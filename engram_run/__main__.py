"""The glue behind the Makefile: train and evaluate many models, report, compare, demo.

Usage:
    python -m engram_run demo
    python -m engram_run train-all --models "gpt2 llama1b" --method lora --variant bioS
    python -m engram_run eval-all --models "gpt2 llama1b" --method lora
    python -m engram_run report --results results --outputs outputs --out results/report
    python -m engram_run compare --model llama3b
    python -m engram_run reproduce [--model llama1b]
    python -m engram_run localize --model demo
    python -m engram_run capacity [--people 1000 --hidden 16,32,64 --epochs 20]
    python -m engram_run reversal [--people 100 --arms baseline,reverse_qa]
    python -m engram_run probe [--people 240 --values-per-field 8]
    python -m engram_run corpus-train --corpus DIR --generator openai:URL --generator-model NAME [--model llama3b]
    python -m engram_run pick-base --models "llama1b gpt2" --data-dir data/corpus-DIR
    python -m engram_run corpus-study [--people 60 --arms chunks,qa9]
    python -m engram_run lr-find --model tiny --lrs "1e-4 2e-4 5e-4 1e-3"
    python -m engram_run epoch-find --model tiny --lr 5e-4
    python -m engram_run sweep --model tiny --grid "learning_rate=1e-4,3e-4 weight_decay=0,0.1" [--executor slurm]

Runs live in ``outputs/<run>/`` (config.yml, model/, train.log) and ``results/<run>/``
(lm-eval's own JSON), a run being ``<model>-<method>-<variant>`` (engram_run.runs.settings).
"""

from __future__ import annotations

import sys
from pathlib import Path

from engram_data.contract import VARIANTS, DataError
from engram_data.errors import OneLineParser, number, run_cli
from engram_eval.lm_eval_args import BACKENDS
from engram_run.demo import DemoSettings, demo
from engram_run.reports.compare import SUITES, CompareOptions, compare, suite_tasks
from engram_run.reports.report import report
from engram_run.runs import sequence
from engram_run.runs.evaluation import EVAL_TASKS
from engram_run.runs.recipes import DEFAULT_DATA_DIR, RunError, parse_overrides
from engram_run.runs.settings import DEFAULT_VARIANT, Run
from engram_run.studies.cli import (
    PATH_FIELDS,
    STUDY_COMMANDS,
    TINY_MODEL_FIELDS,
    add_settings,
    add_study_parsers,
    study_command,
)
from engram_run.studies.corpus_cli import COMMANDS as CORPUS_COMMANDS
from engram_run.studies.corpus_cli import DEPRECATED as OLD_CORPUS_COMMANDS
from engram_run.studies.corpus_cli import add_corpus_parsers, corpus_command
from engram_run.tuning.sweep_cli import add_sweep_parsers, sweep_command

PROG = "python -m engram_run"


def _add_run_options(p: OneLineParser) -> None:
    p.add_argument("--method", default=None, help="full, lora or qlora (default: each recipe's own)")
    p.add_argument(
        "--variant",
        "--bio-field",
        dest="variant",
        default=DEFAULT_VARIANT,
        choices=VARIANTS,
        help=f"text variant to train on (default: {DEFAULT_VARIANT})",
    )
    p.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    p.add_argument("--outputs", default="outputs", type=Path)
    p.add_argument("--results", default="results", type=Path)


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog=PROG, description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, helptext in (("train-all", "train models in sequence"), ("eval-all", "evaluate trained models")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--models", required=True, help='space- or comma-separated, e.g. "gpt2 llama1b"')
        _add_run_options(p)
        p.add_argument("--force", action="store_true", help="retrain finished runs")
        p.add_argument("--tasks", default=",".join(EVAL_TASKS))
        p.add_argument("--limit", type=number(int, 1), default=None)
        p.add_argument("--set", nargs="*", default=[], help="KEY=VALUE config overrides for every model")
        p.add_argument("--backend", default="hf", choices=BACKENDS, help="lm-eval's --model (default: hf)")
        p.add_argument("--model-args", default="", help="more lm-eval --model_args, e.g. tensor_parallel_size=4")
        p.add_argument("--merge-lora", action="store_true", help="merge an adapter into its base first")
        p.add_argument(
            "--gpus",
            type=number(int, 1),
            default=1,
            help="processes (GPUs) per run, at the recipe's effective batch (default: 1)",
        )

    r = sub.add_parser("report", help="collect every run into report.{md,csv,json} and PNG plots")
    r.add_argument("--results", default="results", type=Path)
    r.add_argument("--outputs", default="outputs", type=Path)
    r.add_argument("--out", default="results/report", type=Path)

    k = sub.add_parser("compare", help="base vs fine-tuned on lm-eval's benchmark groups and bios_qa, with p-values")
    k.add_argument("--model", required=False)
    _add_run_options(k)
    k.add_argument(
        "--suite",
        default="tiny",
        choices=SUITES,
        help="tiny (tinyBenchmarks), openllm (Open LLM Leaderboard v1), leaderboard (v2), bios",
    )
    k.add_argument("--tasks", default=None, help="comma-separated lm-eval tasks or groups instead of the suite")
    k.add_argument("--limit", type=number(int, 1), default=None)
    k.add_argument("--no-log-samples", action="store_true", help="no per-item samples (p-values from stderrs)")
    k.add_argument("--apply-chat-template", action="store_true", help="lm-eval's --apply_chat_template")
    k.add_argument("--fewshot-as-multiturn", action="store_true", help="lm-eval's --fewshot_as_multiturn")
    k.add_argument("--hf-hub-log-args", default="", help="lm-eval's --hf_hub_log_args, e.g. hub_results_org=ORG,...")
    k.add_argument("--base-results", type=Path, help="compare two existing lm-eval outputs (result file or folder)")
    k.add_argument("--tuned-results", type=Path)

    d = sub.add_parser("demo", help="the main job end to end on a CPU")
    defaults = DemoSettings()
    add_settings(
        d,
        defaults,
        (
            "people",
            "epochs",
            *TINY_MODEL_FIELDS,
            *PATH_FIELDS,
            "eval_limit",
        ),
        people=number(int, 4),
    )
    add_study_parsers(sub)
    add_sweep_parsers(sub, _add_run_options)
    add_corpus_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(PROG, lambda: command(args), (RunError, DataError))


def command(args) -> int:
    if args.command in ("train-all", "eval-all"):
        models = args.models.replace(",", " ").split()
        overrides = parse_overrides(args.set)  # a malformed --set fails before any run
        status: dict[str, str] = {}
        runs = sequence.resolve_runs(
            models, args.method, args.variant, status, outputs=args.outputs, results=args.results
        )
        if args.command == "train-all":
            sequence.train_all(runs, args.data_dir, args.force, overrides, status, args.gpus)
        else:
            sequence.eval_all(
                runs,
                args.data_dir,
                args.tasks.split(","),
                args.limit,
                status,
                args.backend,
                args.model_args,
                args.merge_lora,
            )
        return sequence.summary(status)
    if args.command in ("sweep", "lr-find", "epoch-find"):
        return sweep_command(args)
    if args.command in CORPUS_COMMANDS or args.command in OLD_CORPUS_COMMANDS:
        return corpus_command(args)
    if args.command in STUDY_COMMANDS:
        return study_command(args)
    if args.command == "report":
        print(f"report: {report(args.results, args.outputs, args.out)}")
    elif args.command == "compare":
        files = (args.base_results, args.tuned_results)
        if not all(files) and not args.model:
            raise RunError("compare needs --model (or both --base-results and --tuned-results)")
        run = (
            None
            if all(files)
            else Run.resolve(args.model, args.method, args.variant, outputs=args.outputs, results=args.results)
        )
        tasks = suite_tasks(args.suite, [t for t in (args.tasks or "").split(",") if t.strip()])
        options = CompareOptions(
            tuple(tasks),
            args.limit,
            not args.no_log_samples,
            args.apply_chat_template,
            args.fewshot_as_multiturn,
            args.hf_hub_log_args,
        )
        print(f"comparison: {compare(run, args.data_dir, options, *files)}")
    elif args.command == "demo":
        demo(DemoSettings(**{k: v for k, v in vars(args).items() if k in DemoSettings.__dataclass_fields__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
