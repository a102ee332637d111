"""Build a small model and its tokenizer locally from a generated bioS or documents dataset (no downloads).

Usage:
    python -m engram_run.runs.tiny --data data/bios --arch llama --out outputs/tiny-llama-init

Trains a byte-level BPE tokenizer with `tokenizers` on the data's sentences with their
facts left out and on every value an option can take, each equally often (see ``corpus``),
and saves a randomly initialized causal LM of the chosen architecture (llama, gpt2, gptj,
gpt_neox) with `save_pretrained`, ready for `axolotl train` (``base_model: OUT``) and for
`lm_eval --model hf --model_args pretrained=OUT`.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

from engram_data.contract import (
    DEFAULT_DATA_DIR,
    FIELDS,
    PEOPLE,
    QA_TRAIN,
    REVERSE,
    VARIANTS,
    DataError,
    corpus_qa_name,
    qa_file,
    qa_prompt,
    read_jsonl,
    read_manifest,
    train_file,
)
from engram_data.errors import OneLineParser, number, run_cli
from engram_run.runs.launch import MARKER, claim
from engram_run.runs.recipes import RunError

ARCHITECTURES = ("llama", "gpt2", "gptj", "gpt_neox", "olmo2")
SPECIAL_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
VALUE_REPEATS = 4  # how often each option value is seen: enough for BPE to merge its words
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def corpus(data_dir: Path) -> Iterator[str]:
    """The tokenizer's training text: the data's sentences and questions with every person's
    name and values left out (each distinct sentence once), and every value an option can
    take, each exactly ``VALUE_REPEATS`` times.

    Trained on the population's own text, the tokenizer would give frequent values fewer
    tokens than rare ones, and an untrained model, which prefers short options, would tell
    them apart. Here no value is seen more often than another.
    """
    if not (data_dir / PEOPLE).exists() and qa_file(data_dir, corpus_qa_name(data_dir)).exists():
        yield from corpus_texts(data_dir)
        return
    people = read_jsonl(data_dir / PEOPLE)
    facts = {p["id"]: sorted({p["name"], *(p[f] for f in FIELDS)}, key=len, reverse=True) for p in people}

    def without_facts(text: str, pid: int) -> str:
        for fact in facts[pid]:
            text = text.replace(fact, "")
        return text

    sentences: set[str] = set()
    for p in people:
        for v in VARIANTS:
            texts = p.get(v) or []
            for text in [texts] if isinstance(texts, str) else texts:
                sentences.update(_SENTENCE_END.split(without_facts(text, p["id"])))
    questions: set[str] = set()
    values: set[str] = set()
    for name in (*FIELDS, REVERSE):
        for row in read_jsonl(qa_file(data_dir, name)):
            questions.add(qa_prompt(without_facts(row["question"], row["person_id"])))
            values.update(row["choices"])
    # Sentences as they run on in a biography, so that words get their mid-text forms.
    ordered = sorted(sentences)
    for i in range(0, len(ordered), 50):
        yield " ".join(ordered[i : i + 50])
    yield from sorted(questions)
    for _ in range(VALUE_REPEATS):
        yield from (f" {v}" for v in sorted(values))  # as scored: " " + option


def corpus_texts(data_dir: Path) -> Iterator[str]:
    """A documents dataset's (``generate_data.py corpus``) tokenizer text: its chunks, its trained
    QA, every question as scored, and every option value ``VALUE_REPEATS`` times."""
    for name in ("chunks", QA_TRAIN):
        yield from (r["text"] for r in read_jsonl(train_file(data_dir, name)))
    rows = read_jsonl(qa_file(data_dir, corpus_qa_name(data_dir)))
    yield from sorted({qa_prompt(r["question"]) for r in rows})
    values = sorted({c for r in rows for c in r["choices"]})
    for _ in range(VALUE_REPEATS):
        yield from (f" {v}" for v in values)


def train_tokenizer(texts, vocab_size: int = 4096):
    """Byte-level BPE (as GPT-2 and Llama 3 use), wrapped as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk_token"]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=512, **SPECIAL_TOKENS)
    fast.padding_side = "right"
    return fast


def model_config(arch: str, vocab_size: int, hidden: int, layers: int, heads: int, tok):
    """A small config of ``arch``; sizes are the same knobs for every architecture."""
    from transformers import GPT2Config, GPTJConfig, GPTNeoXConfig, Lfm2Config, LlamaConfig, Olmo2Config

    ids = {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id}
    # Llama's own names for the sizes, which OLMo 2 and LFM2 share
    llama_sizes = {
        "vocab_size": vocab_size,
        "hidden_size": hidden,
        "intermediate_size": 4 * hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": heads,
    }
    if arch == "llama":
        return LlamaConfig(**llama_sizes, max_position_embeddings=512, tie_word_embeddings=True, **ids)
    if arch == "gpt2":
        return GPT2Config(vocab_size=vocab_size, n_embd=hidden, n_layer=layers, n_head=heads, n_positions=512, **ids)
    if arch == "gptj":
        return GPTJConfig(
            vocab_size=vocab_size,
            n_embd=hidden,
            n_layer=layers,
            n_head=heads,
            n_positions=512,
            rotary_dim=hidden // heads // 2,
            tie_word_embeddings=False,
            **ids,
        )
    if arch == "gpt_neox":
        return GPTNeoXConfig(
            vocab_size=vocab_size,
            hidden_size=hidden,
            intermediate_size=4 * hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            max_position_embeddings=512,
            rotary_pct=0.25,
            **ids,
        )
    if arch == "olmo2":
        return Olmo2Config(
            **llama_sizes,
            max_position_embeddings=512,
            tie_word_embeddings=False,
            **ids,  # untied: as OLMo 2 7B and 13B
        )
    if arch == "lfm2":  # the documents study's generator: short convolutions, then attention, in turn
        return Lfm2Config(
            **llama_sizes,
            block_auto_adjust_ff_dim=False,  # keep intermediate_size as given
            layer_types=["conv" if i % 2 == 0 else "full_attention" for i in range(layers)],
            max_position_embeddings=1024,
            tie_word_embeddings=True,
            **ids,
        )
    raise ValueError(f"unknown architecture {arch!r}; choose from {', '.join(ARCHITECTURES)}")


def build_tiny_model(
    data_dir: str | Path,
    out: str | Path,
    arch: str = "llama",
    hidden: int = 128,
    layers: int = 4,
    heads: int = 4,
    vocab_size: int = 4096,
    seed: int = 0,
    tokenizer_from: str | Path | None = None,
) -> Path:
    """Tokenizer trained on ``data_dir`` (or loaded from ``tokenizer_from``) + random model,
    saved into ``out``: a new or empty folder, or one this builder wrote before."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    data_dir, out = Path(data_dir), Path(out)
    if arch not in ARCHITECTURES:
        raise RunError(f"unknown architecture {arch!r}; choose from {', '.join(ARCHITECTURES)}")
    if hidden % heads:
        raise RunError(f"--hidden {hidden} is not a multiple of --heads {heads}; e.g. --hidden 128 --heads 4")
    read_manifest(data_dir)  # a generated dataset, or one line that says so
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MARKER).exists())):
        raise RunError(f"{out} exists and was not written by this builder; choose a new --out")
    if tokenizer_from:
        try:
            tok = AutoTokenizer.from_pretrained(tokenizer_from)
        except Exception as exc:  # transformers raises OSError, ValueError, ...
            raise RunError(
                f"cannot load a tokenizer from {tokenizer_from} ({type(exc).__name__}); pass a model folder"
            ) from None
    else:
        tok = train_tokenizer(corpus(data_dir), vocab_size)
    torch.manual_seed(seed)
    config = model_config(arch, len(tok), hidden, layers, heads, tok)
    model = AutoModelForCausalLM.from_config(config)
    claim(out)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m engram_run.runs.tiny", description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DEFAULT_DATA_DIR, help="generated dataset to train the tokenizer on")
    parser.add_argument("--out", required=True, help="folder for the model and tokenizer")
    parser.add_argument("--arch", default="llama", choices=ARCHITECTURES)
    parser.add_argument("--hidden", type=number(int, 1), default=128)
    parser.add_argument("--layers", type=number(int, 1), default=4)
    parser.add_argument("--heads", type=number(int, 1), default=4)
    parser.add_argument("--vocab-size", type=number(int, 300), default=4096)
    parser.add_argument("--seed", type=number(int), default=0)
    parser.add_argument("--tokenizer-from", default=None, help="reuse this tokenizer instead of training one")
    args = parser.parse_args(argv)

    def body() -> int:
        out = build_tiny_model(
            args.data,
            args.out,
            args.arch,
            args.hidden,
            args.layers,
            args.heads,
            args.vocab_size,
            args.seed,
            args.tokenizer_from,
        )
        print(f"wrote a random {args.arch} model and its tokenizer to {out}")
        return 0

    return run_cli(parser.prog, body, (RunError, DataError))


if __name__ == "__main__":
    sys.exit(main())
