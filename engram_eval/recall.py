"""Fast four-option recall evaluation, with the same numbers as ``lm_eval --tasks bios_qa``.

lm-eval scores each (question, option) pair as its own sequence. Here the question is
run once, its key/value cache is repeated for the four options, and only the option
tokens are run again (a shared prefix), with many questions in one batch. Tokenization,
prompt, scoring and tie-breaking follow lm-eval's ``hf`` backend exactly: the context
is ``Question: {q}\\nAnswer:``, an option is `` {choice}``, its tokens are
``encode(context + option)[len(encode(context)):]``, ``acc`` is the argmax of the summed
log-likelihood and ``acc_norm`` that of the sum divided by the option's length in
characters. Under torch.distributed each rank scores a shard and the counts are summed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from engram_data.contract import CORPUS_QA_KEYS, FIELDS, REVERSE, corpus_qa_name, qa_file, qa_prompt, read_qa_file

QUESTION_SETS = ("train", "heldout", "reverse")


@dataclass(frozen=True)
class Question:
    qset: str  # "train", "heldout" or "reverse"
    field: str
    context: list[int]
    options: tuple[list[int], ...]
    option_chars: tuple[int, ...]
    label: int


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """lm-eval's ``_encode_pair`` for causal models (trailing spaces move to the option)."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = tokenizer.encode(context + continuation)
    ctx = tokenizer.encode(context)
    return ctx, whole[len(ctx) :]


def load_questions(
    data_dir: str | Path,
    tokenizer,
    sets: Sequence[str] = ("train",),
    limit: int | None = None,
) -> list[Question]:
    """The first ``limit`` questions of each field and set, in file order (lm-eval's --limit).
    Every file is read and checked (engram_data.contract.read_qa_file) before any is tokenized."""
    unknown = [s for s in sets if s not in QUESTION_SETS]
    if unknown:
        raise ValueError(f"unknown question set {unknown[0]!r}; choose from {', '.join(QUESTION_SETS)}")
    questions = []
    for qset, field, rows in question_rows(data_dir, sets):
        for row in rows[:limit]:
            context = qa_prompt(row["question"])
            pairs = [encode_pair(tokenizer, context, " " + c) for c in row["choices"]]
            questions.append(
                Question(
                    qset=qset,
                    field=field,
                    context=pairs[0][0],
                    options=tuple(p[1] for p in pairs),
                    option_chars=tuple(len(c) for c in row["choices"]),
                    label=row["label"],
                )
            )
    return questions


def question_rows(data_dir: str | Path, sets: Sequence[str]) -> list[tuple[str, str, list[dict]]]:
    """(set, field, rows) in scoring order. A bioS dataset: ``qa/<field>.jsonl`` split by
    people, ``qa/reverse.jsonl`` for ``reverse``. A documents dataset (``generate_data.py corpus``,
    ``qa/corpus.jsonl``): its questions by style as the fields, ``train`` the trained
    temperatures and ``heldout`` the held-out ones; it has no ``reverse`` set (its reverse
    questions are the ``reverse`` style of the other two)."""
    corpus = corpus_qa_name(data_dir)
    if qa_file(data_dir, corpus).is_file() and not qa_file(data_dir, FIELDS[0]).is_file():
        if REVERSE in sets:
            raise ValueError(
                f"{data_dir} holds documents' questions, which have no reverse set (the reverse style is scored "
                "with the others); set engram_eval_reverse: false"
            )
        rows = read_qa_file(data_dir, corpus, CORPUS_QA_KEYS)
        styles = list(dict.fromkeys(r["field"] for r in rows))
        return [
            (qset, style, [r for r in rows if r["split"] == qset and r["field"] == style])
            for qset in sets
            for style in styles
        ]
    files = {
        name: read_qa_file(data_dir, name)
        for name in dict.fromkeys(REVERSE if qset == REVERSE else field for qset in sets for field in FIELDS)
    }
    return [
        (qset, field, files[field] if qset == REVERSE else [r for r in files[field] if r["split"] == qset])
        for qset in sets
        for field in ((REVERSE,) if qset == REVERSE else FIELDS)
    ]


def _left_pad(seqs: Sequence[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.tensor([[pad] * (width - len(s)) + s for s in seqs], dtype=torch.long)
    mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs], dtype=torch.long)
    return ids, mask


@torch.no_grad()
def score_batch(model, questions: Sequence[Question], pad_id: int = 0, device=None) -> torch.Tensor:
    """Summed log-likelihood of every option: a (questions, options) tensor.

    Always two forward calls, even when every option is one token: under a sharded model
    (ZeRO-3, FSDP) each call gathers parameters with every other rank, which must make
    the same calls. ``device``: where the inputs go (the trainer's device; with CPU
    offload the first parameter's device is not it).
    """
    device = device if device is not None else next(model.parameters()).device
    n_opt = len(questions[0].options)
    ctx_ids, ctx_mask = _left_pad([q.context for q in questions], pad_id)
    ctx_ids, ctx_mask = ctx_ids.to(device), ctx_mask.to(device)
    positions = (ctx_mask.cumsum(-1) - 1).clamp(min=0)
    # Only the last context position's logits are needed: skip the output layer elsewhere.
    out = model(input_ids=ctx_ids, attention_mask=ctx_mask, position_ids=positions, use_cache=True, logits_to_keep=1)
    first = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)  # predicts each option's first token

    options = [opt for q in questions for opt in q.options]
    owner = torch.arange(len(options), device=device) // n_opt
    heads = torch.tensor([opt[0] for opt in options], device=device)
    scores = first[owner, heads].double()
    rest = max(max(len(o) for o in options) - 1, 1)  # a masked pad when every option is one token
    # The second call always runs (see the docstring).
    cache = out.past_key_values
    cache.batch_repeat_interleave(n_opt)
    # Feed each option but its last token; predict each option but its first.
    ids = torch.tensor([o[:-1] + [pad_id] * (rest + 1 - len(o)) for o in options], device=device)
    targets = torch.tensor([o[1:] + [0] * (rest + 1 - len(o)) for o in options], device=device)
    mask = torch.tensor([[1] * (len(o) - 1) + [0] * (rest + 1 - len(o)) for o in options], device=device)
    full_mask = torch.cat([ctx_mask.repeat_interleave(n_opt, dim=0), mask], dim=1)
    start = ctx_mask.sum(-1).repeat_interleave(n_opt).unsqueeze(1)
    pos = start + torch.arange(rest, device=device).unsqueeze(0)
    logits = model(
        input_ids=ids, attention_mask=full_mask, position_ids=pos, past_key_values=cache, use_cache=True
    ).logits
    logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    scores += (logp * mask).double().sum(-1)
    return scores.view(len(questions), n_opt)


class RecallEvaluator:
    """Per-field four-option accuracy of a model on a generated dataset's questions."""

    def __init__(
        self,
        data_dir: str | Path,
        tokenizer,
        sets: Sequence[str] = ("train",),
        limit: int | None = None,
        batch_size: int = 32,
    ):
        self.questions = load_questions(data_dir, tokenizer, sets, limit)
        self.sets = tuple(sets)
        self.batch_size = batch_size
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def evaluate(self, model, device=None) -> dict[str, dict[str, float]]:
        """``{set: {field: acc, ..., "overall": acc, "overall_norm": acc_norm}}``, exact totals
        across ranks when torch.distributed is initialized.

        Each rank scores ``questions[rank::world]`` and every rank runs the same number of
        batches (a rank with one question fewer scores a padding batch that is not counted):
        a sharded model hangs if one rank makes a forward call the others do not.
        """
        rank, world = 0, 1
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            rank, world = dist.get_rank(), dist.get_world_size()
        keys = sorted({(q.qset, q.field) for q in self.questions})
        index = {k: i for i, k in enumerate(keys)}
        # counts[k] = (correct, correct by acc_norm, total)
        counts = torch.zeros((len(keys), 3), dtype=torch.float64)
        mine = self.questions[rank::world]
        num_batches = -(-len(self.questions[0::world]) // self.batch_size)  # rank 0 has the most
        was_training = model.training
        model.eval()
        try:
            # Similar lengths in a batch (options first: they are run four times over)
            # means less padding; the scores are the same in any order.
            order = sorted(range(len(mine)), key=lambda i: (max(map(len, mine[i].options)), len(mine[i].context)))
            for b in range(num_batches):
                batch = [mine[i] for i in order[b * self.batch_size : (b + 1) * self.batch_size]]
                weight = 1.0 if batch else 0.0
                batch = batch or self.questions[:1]  # padding: same calls as the other ranks, not counted
                scores = score_batch(model, batch, self.pad_id, device)
                chars = torch.tensor([q.option_chars for q in batch], dtype=torch.float64)
                labels = torch.tensor([q.label for q in batch])
                hit = (scores.argmax(-1).cpu() == labels).double() * weight
                hit_norm = ((scores.cpu() / chars).argmax(-1) == labels).double() * weight
                rows = torch.tensor([index[(q.qset, q.field)] for q in batch])
                counts[:, 0].index_add_(0, rows, hit)
                counts[:, 1].index_add_(0, rows, hit_norm)
                counts[:, 2].index_add_(0, rows, torch.full_like(hit, weight))
        finally:
            model.train(was_training)
        if world > 1:
            backend_device = device if device is not None else next(model.parameters()).device
            counts = counts.to(backend_device if dist.get_backend() == "nccl" else "cpu")
            dist.all_reduce(counts, op=dist.ReduceOp.SUM)
            counts = counts.cpu()
        results: dict[str, dict[str, float]] = {}
        for qset in self.sets:
            rows = [(field, counts[index[(s, field)]]) for (s, field) in keys if s == qset]
            total = sum(c[2].item() for _, c in rows)
            res = {field: c[0].item() / c[2].item() for field, c in rows}
            res["overall"] = sum(c[0].item() for _, c in rows) / total
            res["overall_norm"] = sum(c[1].item() for _, c in rows) / total
            res["num_questions"] = total
            results[qset] = res
        return results
