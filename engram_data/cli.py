"""Command line of ``generate_data.py`` (and ``engram-data``): a thin argparse layer over
:mod:`engram_data` (bioS) and :mod:`engram_data.documents` (``corpus``). Every argument is
checked before any work; bad input is one line (engram_data.errors)."""

from __future__ import annotations

import gc
import sys
import time

from engram_data.contract import DEFAULT_DATA_DIR, DEFAULT_VARIANTS, VARIANTS, DataError, canonical_variant
from engram_data.errors import OneLineParser, number, run_cli

PROG = "generate_data.py"


def build_parser() -> OneLineParser:
    parser = OneLineParser(
        prog=PROG,
        description="Synthesize a bioS population (default) or import bioS_v1, and write the "
        "train/QA layout that the recipes, lm-eval tasks and plugin read.",
    )
    parser.add_argument(
        "--num-people", type=number(int, 1), default=10_000, help="people to synthesize (default: 10000)"
    )
    parser.add_argument("--seed", type=number(int), default=0, help="seed of every random choice (default: 0)")
    parser.add_argument("--out", default=DEFAULT_DATA_DIR, help=f"output directory (default: {DEFAULT_DATA_DIR})")
    parser.add_argument(
        "--heldout-fraction",
        type=number(float),
        default=0.5,
        help="fraction of people in the 'heldout' split, whose QA is never trained, in [0, 1) (default: 0.5)",
    )
    parser.add_argument(
        "--variants",
        default=",".join(DEFAULT_VARIANTS),
        help=f"comma-separated text variants to write, from {','.join(VARIANTS)} (default: bioS_v1's three, "
        f"{','.join(DEFAULT_VARIANTS)})",
    )
    parser.add_argument(
        "--gender",
        choices=("by-name", "independent"),  # population.GENDER_MODES
        default=None,
        help="by-name: pronouns follow the first name's usual gender (default); independent: names from both "
        "lists, gender drawn on its own, as the authors' generator does (one more fact per person)",
    )
    parser.add_argument(
        "--fields-dir",
        default=None,
        help="draw names and attributes from field lists in the authors' layout (PhysicsLM4's "
        "Capo-bioS-bioR/fields/: first_name.txt, middle_name.txt, last_name.txt, city.txt, university.txt, "
        "field.txt, company.txt); their names have no gender, so gender is independent",
    )
    parser.add_argument(
        "--values-per-field",
        type=number(int, 4),
        default=None,
        help="draw each attribute from only this many values (a seeded subset of its list; as many dates), so "
        "that every value recurs: what a per-value probe needs (engram-localize probe); default: the whole lists",
    )
    parser.add_argument(
        "--source",
        default=None,
        help="import instead of synthesizing: a hub id (minsungkim/bioS_v1), a save_to_disk folder, "
        "or a .jsonl/.parquet/.csv file in the bioS_v1 schema",
    )
    parser.add_argument(
        "--drop-duplicates", action="store_true", help="--source: keep the first of rows that repeat a name"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a previous output in --out")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return parser


def build_corpus_parser() -> OneLineParser:
    from engram_data.documents.qa import PROMPTS, STYLES

    p = OneLineParser(
        prog=f"{PROG} corpus",
        description="Expand your own documents into QA training and evaluation data with a generator LLM.",
    )
    p.add_argument(
        "--input", nargs="+", required=True, help="files or folders of documents: .pdf, .docx, .html, .md, .txt"
    )
    p.add_argument("--out", default="data/mydocs", help="output directory (default: data/mydocs)")
    p.add_argument(
        "--generator", required=True, help="hf:PATH (local transformers model) or openai:URL (chat completions)"
    )
    p.add_argument("--model", default=None, help="model name for openai: endpoints")
    p.add_argument("--tokenizer", default=None, help="tokenizer to chunk by, for openai: (a local folder)")
    p.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key")
    p.add_argument("--concurrency", type=number(int, 1), default=4, help="requests at a time (>= 1)")
    p.add_argument("--timeout", type=number(float, 0, low_open=True), default=60.0, help="seconds per request")
    p.add_argument("--retries", type=number(int, 0), default=5, help="retries with exponential backoff (>= 0)")
    p.add_argument("--chunk-tokens", type=number(int, 1), default=300, help="chunk size in tokens (default: 300)")
    p.add_argument(
        "--tokens-per-question", type=number(int, 1), default=60, help="about one question per N tokens (default: 60)"
    )
    p.add_argument("--temperatures", type=number(int, 1), default=9, help="how many temperatures (default: 9)")
    p.add_argument("--temp-min", type=number(float, 0), default=0.01)
    p.add_argument("--temp-max", type=number(float, 0), default=1.2)
    p.add_argument(
        "--heldout-temperatures",
        type=number(int, 0),
        default=2,
        help="temperatures kept out of training: paraphrase test",
    )
    p.add_argument("--styles", default=",".join(STYLES), help=f"comma-separated (default: {','.join(STYLES)})")
    p.add_argument(
        "--prompt",
        choices=PROMPTS,
        default="few-shot",
        help="few-shot: a conversation whose earlier turn is one fixed worked example of the style (default); "
        "plain: the instruction and the chunk alone, one message",
    )
    p.add_argument(
        "--json-schema",
        action="store_true",
        help="openai: ask for the pairs' JSON schema (response_format json_schema): constrained decoding on "
        "a server that has it (vLLM, OpenAI; transformers serve refuses it)",
    )
    p.add_argument(
        "--keep-ungrounded",
        action="store_true",
        help="train pairs whose answer the chunk does not support and forward questions that never name "
        "their subject (default: counted in manifest.json and generated.jsonl, not trained)",
    )
    p.add_argument("--seed", type=number(int), default=0)
    p.add_argument("--cache", default=None, help="request cache (default: OUT.cache)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    return p


def skipped_line(counts: dict) -> str:
    """``2 (1 encrypted, 1 no text layer)`` or ``none`` from the manifest's files_skipped_* counts."""
    from engram_data.documents.formats import SKIP_KINDS, describe_skips, skip_key

    skipped = {kind: counts.get(skip_key(kind), 0) for kind in SKIP_KINDS}
    return f"{sum(skipped.values())} ({describe_skips(skipped)})" if any(skipped.values()) else "none"


def corpus_main(argv: list[str]) -> int:
    from engram_data.documents.generators import make_generator
    from engram_data.documents.qa import temperature_schedule
    from engram_data.documents.run import generate_corpus

    args = build_corpus_parser().parse_args(argv)

    def body() -> int:
        schedule = temperature_schedule(args.temperatures, args.temp_min, args.temp_max)
        gen = make_generator(
            args.generator,
            args.model,
            args.tokenizer,
            api_key_env=args.api_key_env,
            concurrency=args.concurrency,
            timeout=args.timeout,
            retries=args.retries,
            **({"json_schema": True} if args.json_schema else {}),
        )
        manifest = generate_corpus(
            args.input,
            args.out,
            gen,
            args.chunk_tokens,
            args.tokens_per_question,
            schedule,
            args.heldout_temperatures,
            [s.strip() for s in args.styles.split(",") if s.strip()],
            args.seed,
            args.overwrite,
            not args.no_progress,
            args.cache,
            prompt=args.prompt,
            keep_ungrounded=args.keep_ungrounded,
        )
        c = manifest["counts"]
        held = "kept" if args.keep_ungrounded else "dropped"
        print(
            f"wrote {c['qa_rows']} questions ({c['qa_train']} train, {c['qa_heldout']} heldout) from {c['chunks']} "
            f"chunks to {args.out}; dropped {c.get('generations_malformed', 0)} malformed generations, "
            f"{c.get('items_invalid', 0)} invalid items, {c.get('pairs_duplicate', 0)} duplicates; {held} "
            f"{c.get('pairs_ungrounded', 0)} ungrounded pairs and {c.get('pairs_no_subject', 0)} without "
            f"their subject; read "
            f"{c['files_read']} files, skipped {skipped_line(c)}"
        )
        return 0

    return run_cli(f"{PROG} corpus", body, (DataError,))


def bios_main(argv: list[str]) -> int:
    from engram_data.bios_v1 import from_records, load_bios_v1
    from engram_data.pools import load_author_pools
    from engram_data.population import synthesize
    from engram_data.write import write_dataset

    args = build_parser().parse_args(argv)
    progress = not args.no_progress
    variants = [canonical_variant(v.strip()) for v in args.variants.split(",") if v.strip()]
    # What made the data (in its manifest); the newer options only where they were given.
    recorded = {k: v for k, v in vars(args).items() if k not in ("out", "overwrite", "no_progress")}
    optional = ("gender", "fields_dir", "values_per_field")
    recorded = {k: v for k, v in recorded.items() if v is not None or k not in optional}

    def body() -> int:
        start = time.perf_counter()
        # Hundreds of thousands of small acyclic dicts: the cyclic GC would rescan them over
        # and over (a third of the run time at 100k people) and can free nothing.
        gc.disable()
        if args.source and (args.gender or args.fields_dir or args.values_per_field):
            flag = "--gender" if args.gender else "--fields-dir" if args.fields_dir else "--values-per-field"
            raise DataError(f"{flag} applies to synthesized people, not to --source imports; drop one of the two")
        if args.source:
            pop = from_records(
                load_bios_v1(args.source),
                seed=args.seed,
                heldout_fraction=args.heldout_fraction,
                variants=variants,
                source=args.source,
                progress=progress,
                drop_duplicates=args.drop_duplicates,
            )
            recorded.pop("num_people")
        else:
            if args.fields_dir and args.gender == "by-name":
                raise DataError("--fields-dir lists have no gender: drop --gender by-name (gender is independent)")
            pools = load_author_pools(args.fields_dir) if args.fields_dir else None
            gender = "independent" if args.fields_dir else args.gender or "by-name"
            pop = synthesize(
                args.num_people,
                args.seed,
                args.heldout_fraction,
                variants,
                pools,
                progress,
                gender,
                args.values_per_field,
            )
        warn_empty_split(pop)
        manifest = write_dataset(pop, args.out, overwrite=args.overwrite, progress=progress, args=recorded)
        splits = manifest["splits"]
        dropped = pop.extra.get("duplicate_names_dropped")
        print(
            f"wrote {manifest['num_people']} people ({splits['train']} train, {splits['heldout']} heldout) "
            f"to {args.out} in {time.perf_counter() - start:.1f} s"
            + (f"; dropped {dropped} rows that repeated a name" if dropped else "")
        )
        return 0

    return run_cli(PROG, body, (DataError,))


# What has no questions when a split is empty (lm-eval tasks and training files).
EMPTY_SPLIT = {
    "train": "bios_qa, bios_qa_gen, bios_qa_letters, bios_qa_engram, bios_qa_reverse_train, bios_qa_reverse_gen "
    "(and the QA training files)",
    "heldout": "bios_qa_heldout, bios_qa_gen_heldout, bios_qa_reverse_heldout, bios_qa_reverse_gen_heldout",
}


def warn_empty_split(pop) -> None:
    """One line on stderr when a split has nobody: the tasks it names would have no questions."""
    from collections import Counter

    counts = Counter(p["split"] for p in pop.people)
    for split, tasks in EMPTY_SPLIT.items():
        if not counts.get(split):
            fix = "lower --heldout-fraction" if split == "train" else "raise --heldout-fraction above 0"
            print(
                f"{PROG}: warning: no {split} people of {len(pop.people)}, so {tasks} have no questions; "
                f"{fix} or add people",
                file=sys.stderr,
            )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["docs"]:  # the name before data version 2.3 (the word of the docs site): kept until 0.2
        print(f"{PROG} docs is deprecated and goes in 0.2: use {PROG} corpus", file=sys.stderr)
        argv = ["corpus", *argv[1:]]
    return corpus_main(argv[1:]) if argv[:1] == ["corpus"] else bios_main(argv)
