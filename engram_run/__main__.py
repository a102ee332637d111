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
    python -m engram_run docs-train --docs DIR --generator openai:URL --generator-model NAME [--model llama3b]
    python -m engram_run pick-base --models "llama1b gpt2" --data-dir data/docs-DIR
    python -m engram_run docs-study [--people 60 --arms chunks,qa9]
    python -m engram_run lr-find --model tiny --lrs "1e-4 2e-4 5e-4 1e-3"
    python -m engram_run epoch-find --model tiny --lr 5e-4
    python -m engram_run sweep --model tiny --grid "learning_rate=1e-4,3e-4 weight_decay=0,0.1" [--executor slurm]

Runs live in ``outputs/<run>/`` (config.yml, model/, train.log) and ``results/<run>/``
(lm-eval's own JSON), a run being ``<model>-<method>-<variant>`` (engram_run.runs.settings).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engram_data.contract import VARIANTS, DataError
from engram_data.errors import OneLineParser, number, run_cli
from engram_run.demo import DemoSettings, demo
from engram_run.reports.compare import SUITES, CompareOptions, compare, suite_tasks
from engram_run.reports.report import report
from engram_run.runs import batch
from engram_run.runs.launch import EVAL_TASKS
from engram_run.runs.recipes import DEFAULT_DATA_DIR, RunError, parse_overrides
from engram_run.runs.settings import DEFAULT_VARIANT, Run
from engram_run.studies.capacity import CapacitySettings, study
from engram_run.studies.docs_cli import COMMANDS as DOCS_COMMANDS
from engram_run.studies.docs_cli import add_docs_parsers, docs_command
from engram_run.studies.localize import STEPS, LocalizeSettings, endpoints, localize
from engram_run.studies.probes import ProbeSettings, probes
from engram_run.studies.reproduce import PROTOCOLS, ReproduceSettings, reproduce
from engram_run.studies.reversal import ARMS, ReversalSettings, reversal
from engram_run.tuning.sweep_cli import add_sweep_parsers, sweep_command
from lm_eval_tasks import BACKENDS

PROG = "python -m engram_run"


def known_list(known: tuple[str, ...], what: str):
    """An argparse type: ``a,b`` of ``known`` names (text variants, protocols), each once, in
    ``known``'s order; an unknown or empty one is argparse's one-line error."""

    def parse(text: str) -> tuple[str, ...]:
        names = [n.strip() for n in text.split(",") if n.strip()]
        unknown = [n for n in names if n not in known]
        if unknown or not names:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {', '.join(unknown) or repr(text)}; choose from {', '.join(known)}"
            )
        return tuple(k for k in known if k in names)

    return parse


def _add_run_options(p: OneLineParser) -> None:
    p.add_argument("--method", default=None, help="full, lora or qlora (default: each recipe's own)")
    p.add_argument("--variant", "--bio-field", dest="variant", default=DEFAULT_VARIANT, choices=VARIANTS,
                   help=f"text variant to train on (default: {DEFAULT_VARIANT})")  # fmt: skip
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
        p.add_argument("--gpus", type=number(int, 1), default=1,
                       help="processes (GPUs) per run, at the recipe's effective batch (default: 1)")  # fmt: skip

    r = sub.add_parser("report", help="collect every run into report.{md,csv,json} and PNG plots")
    r.add_argument("--results", default="results", type=Path)
    r.add_argument("--outputs", default="outputs", type=Path)
    r.add_argument("--out", default="results/report", type=Path)

    k = sub.add_parser("compare", help="base vs fine-tuned on lm-eval's benchmark groups and bios_qa, with p-values")
    k.add_argument("--model", required=False)
    _add_run_options(k)
    k.add_argument("--suite", default="tiny", choices=SUITES,
                   help="tiny (tinyBenchmarks), openllm (Open LLM Leaderboard v1), leaderboard (v2), bios")  # fmt: skip
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
    for field, kind in (("people", number(int, 4)), ("epochs", number(int, 1)), ("hidden", number(int, 1)),
                        ("layers", number(int, 1)), ("vocab_size", number(int, 300)),
                        ("learning_rate", number(float, 0, low_open=True)), ("micro_batch", number(int, 1)),
                        ("data_dir", Path), ("outputs", Path), ("results", Path), ("eval_limit", number(int, 1))):  # fmt: skip
        d.add_argument(f"--{field.replace('_', '-')}", type=kind, default=getattr(defaults, field))
    rp = sub.add_parser("reproduce", help="Physics of LM 3.1's two findings: every text variant, one budget")
    rdefaults = ReproduceSettings()
    rp.add_argument("--model", default=rdefaults.model, help="tiny (a CPU, from scratch) or a recipe: llama1b, ...")
    for field, kind in (("people", number(int, 8)), ("multi5_epochs", number(int, 1)), ("qa_epochs", number(int, 1)),
                        ("hidden", number(int, 1)),
                        ("layers", number(int, 1)), ("vocab_size", number(int, 300)),
                        ("learning_rate", number(float, 0, low_open=True)), ("micro_batch", number(int, 1)),
                        ("data_dir", Path), ("outputs", Path), ("results", Path)):  # fmt: skip
        rp.add_argument(f"--{field.replace('_', '-')}", type=kind, default=getattr(rdefaults, field))
    rp.add_argument("--variants", type=known_list(VARIANTS, "variant"), default=rdefaults.variants,
                    help=f"comma-separated, from {','.join(VARIANTS)} (default: all)")  # fmt: skip
    rp.add_argument("--protocols", type=known_list(PROTOCOLS, "protocol"), default=rdefaults.protocols,
                    help="comma-separated: mixed (biographies + QA in one run), bio_then_qa (biographies, then a "
                    "QA fine-tune); default: both")  # fmt: skip
    rv = sub.add_parser("reversal", help="reversal remedies on one budget: reverse recall of heldout and train people")
    vdefaults = ReversalSettings()
    for field, kind in (("people", number(int, 8)), ("multi5_epochs", number(int, 1)), ("hidden", number(int, 1)),
                        ("layers", number(int, 1)), ("vocab_size", number(int, 300)),
                        ("learning_rate", number(float, 0, low_open=True)), ("micro_batch", number(int, 1)),
                        ("data_dir", Path), ("outputs", Path), ("results", Path)):  # fmt: skip
        rv.add_argument(f"--{field.replace('_', '-')}", type=kind, default=getattr(vdefaults, field))
    rv.add_argument("--arms", type=known_list(tuple(ARMS), "arm"), default=vdefaults.arms,
                    help=f"comma-separated, from {','.join(ARMS)} (default: all)")  # fmt: skip
    pb = sub.add_parser("probe", help="P- and Q-probes of bioS vs bioS_multi5_permutes models (Physics of LM 3.1)")
    pdefaults = ProbeSettings()
    for field, kind in (("people", number(int, 8)), ("values_per_field", number(int, 4)),
                        ("multi5_epochs", number(int, 1)), ("hidden", number(int, 1)),
                        ("layers", number(int, 1)), ("vocab_size", number(int, 300)),
                        ("learning_rate", number(float, 0, low_open=True)), ("micro_batch", number(int, 1)),
                        ("data_dir", Path), ("outputs", Path), ("results", Path)):  # fmt: skip
        pb.add_argument(f"--{field.replace('_', '-')}", type=kind, default=getattr(pdefaults, field))
    pb.add_argument("--variants", type=known_list(VARIANTS, "variant"), default=pdefaults.variants)
    ca = sub.add_parser("capacity", help="knowledge capacity of tiny models of a few sizes (Physics of LM 3.3)")
    cdefaults = CapacitySettings()

    def int_list(text: str) -> tuple[int, ...]:
        values = tuple(number(int, 1)(t) for t in text.split(",") if t.strip())
        if not values:
            raise argparse.ArgumentTypeError("give comma-separated positive integers, e.g. 50,200")
        return values

    ca.add_argument("--people", type=int_list, default=cdefaults.people, help="population sizes, e.g. 50,200")
    ca.add_argument("--hidden", type=int_list, default=cdefaults.hidden, help="model widths, e.g. 32,64,128")
    for field, kind in (("layers", number(int, 1)), ("epochs", number(int, 1)),
                        ("learning_rate", number(float, 0, low_open=True)), ("micro_batch", number(int, 1)),
                        ("vocab_size", number(int, 300)), ("qa_people", number(int, 1)), ("data_dir", Path),
                        ("outputs", Path), ("results", Path)):  # fmt: skip
        ca.add_argument(f"--{field.replace('_', '-')}", type=kind, default=getattr(cdefaults, field))
    lo = sub.add_parser("localize", help="engram-localize diff, graft, prune and trace on a trained run")
    lo.add_argument("--model", required=True, help="demo (make demo's run) or a recipe name")
    lo.add_argument("--method", default=None)
    lo.add_argument("--variant", default=DEFAULT_VARIANT, choices=VARIANTS)
    lo.add_argument("--data-dir", default=None, help="default: the run's data (data/demo for the demo, else data/bios)")
    lo.add_argument("--outputs", default="outputs", type=Path)
    lo.add_argument("--results", default="results", type=Path)
    ldefaults = LocalizeSettings()
    lo.add_argument("--fractions", default=ldefaults.fractions)
    lo.add_argument("--scope", default=ldefaults.scope, choices=("global", "layer", "module"))
    lo.add_argument("--trace-limit", type=number(int, 1), default=ldefaults.trace_limit)
    lo.add_argument("--eval-limit", type=number(int, 1), default=None)
    lo.add_argument("--steps", type=lambda t: tuple(x for x in STEPS if x in t.split(",")), default=STEPS,
                    help=f"comma-separated, from {','.join(STEPS)}")  # fmt: skip
    add_sweep_parsers(sub, _add_run_options)
    add_docs_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(PROG, lambda: command(args), (RunError, DataError))


def command(args) -> int:
    if args.command in ("train-all", "eval-all"):
        models = args.models.replace(",", " ").split()
        overrides = parse_overrides(args.set)  # a malformed --set fails before any run
        status: dict[str, str] = {}
        runs = batch.resolve_runs(models, args.method, args.variant, status, outputs=args.outputs, results=args.results)
        if args.command == "train-all":
            batch.train_all(runs, args.data_dir, args.force, overrides, status, args.gpus)
        else:
            batch.eval_all(runs, args.data_dir, args.tasks.split(","), args.limit, status, args.backend,
                           args.model_args, args.merge_lora)  # fmt: skip
        return batch.summary(status)
    if args.command in ("sweep", "lr-find", "epoch-find"):
        return sweep_command(args)
    if args.command in DOCS_COMMANDS:
        return docs_command(args)
    if args.command == "report":
        print(f"report: {report(args.results, args.outputs, args.out)}")
    elif args.command == "compare":
        files = (args.base_results, args.tuned_results)
        if not all(files) and not args.model:
            raise RunError("compare needs --model (or both --base-results and --tuned-results)")
        run = None if all(files) else Run.resolve(args.model, args.method, args.variant, outputs=args.outputs,
                                                  results=args.results)  # fmt: skip
        tasks = suite_tasks(args.suite, [t for t in (args.tasks or "").split(",") if t.strip()])
        options = CompareOptions(tuple(tasks), args.limit, not args.no_log_samples, args.apply_chat_template,
                                 args.fewshot_as_multiturn, args.hf_hub_log_args)  # fmt: skip
        print(f"comparison: {compare(run, args.data_dir, options, *files)}")
    elif args.command == "capacity":
        settings = CapacitySettings(
            **{k: v for k, v in vars(args).items() if k in CapacitySettings.__dataclass_fields__}
        )
        print(f"capacity: {study(settings)}")
    elif args.command == "localize":
        base, tuned, data, out = endpoints(args.model, args.method, args.variant, args.data_dir, args.outputs,
                                           args.results)  # fmt: skip
        settings = LocalizeSettings(args.fractions, args.scope, args.trace_limit, args.eval_limit, args.steps,
                                    args.variant if args.model != "demo" else "bioS")  # fmt: skip
        print(f"localization: {localize(base, tuned, data, out, settings)}")
    elif args.command in ("demo", "reproduce", "reversal", "probe"):
        settings, job = {"demo": (DemoSettings, demo), "reproduce": (ReproduceSettings, reproduce),
                         "reversal": (ReversalSettings, reversal), "probe": (ProbeSettings, probes)}[args.command]  # fmt: skip
        job(settings(**{k: v for k, v in vars(args).items() if k in settings.__dataclass_fields__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
