"""The documents study's generator: a small model taught here to write question-answer pairs
about a biography, in the documents pipeline's own prompt and JSON reply, then served by
``transformers serve`` like any instruct model; and the judge of its pairs against the truth.

It learns from a population of its own (no person of the study's): each of its people's
``bioS`` biography (the study's documents are ``bioS``) as a passage, in the prompt the
pipeline sends (``engram_data.documents.qa.build_prompt``, with as many pairs asked for as the
pipeline asks), and as the reply a JSON list of that many pairs on randomly chosen facts of the
passage: forward (``simple``: the data's own question for the field, the value as the answer)
and ``reverse`` (a question that gives two values, the full name as the answer). To answer it
must copy the person's name and values out of the passage; sampled hot, it copies the wrong
one, garbles the JSON or stops early: the errors a larger model makes more rarely.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from engram_data.contract import FIELDS, PEOPLE, qa_file, read_jsonl, write_jsonl
from engram_data.documents.checks import normalize, states
from engram_data.documents.chunks import chunk_text
from engram_data.documents.qa import build_prompt

STYLES = ("simple", "reverse")  # the pipeline's styles the study's generator knows
# The generator's reverse questions: two values given, the person asked for. The first is the
# data's own reverse question (bios_qa_reverse asks it).
REVERSE_QUESTIONS = {
    ("birth_date", "birth_city"): "Who was born on {birth_date} in {birth_city}?",
    ("university", "major"): "Who studied {major} at {university}?",
    ("employer", "company_city"): "Who worked for {employer} in {company_city}?",
}
CHAT_TEMPLATE = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}Reply:{% endif %}"
PASSAGES_PER_PERSON = 1  # bioS (the study's documents); more: bioS_multi5_permutes biographies too
VOCAB = 8192
LEARNING_RATE = 3e-3
MICRO_BATCH = 16


def render_chat(prompt: str) -> str:
    """What ``CHAT_TEMPLATE`` makes of one user message (the server applies the template). It
    ends without a space: the reply's first token carries it, as byte-level BPE cuts text."""
    return f"{prompt}\nReply:"


def forward_questions(data_dir: Path) -> dict[tuple[int, str], str]:
    """The data's own forward question about each person and field."""
    return {(r["person_id"], field): r["question"] for field in FIELDS for r in read_jsonl(qa_file(data_dir, field))}


def true_pairs(person: dict, questions: dict, style: str) -> list[dict]:
    """Every true pair of ``style`` about ``person``."""
    if style == "simple":
        return [{"question": questions[(person["id"], f)], "answer": person[f]} for f in FIELDS]
    return [{"question": q.format(**person), "answer": person["name"]} for q in REVERSE_QUESTIONS.values()]


def passages(person: dict, rng: random.Random) -> list[str]:
    multi = person.get("bioS_multi5_permutes") or []
    return [person["bioS"], *rng.sample(multi, min(len(multi), PASSAGES_PER_PERSON - 1))]


def teaching_rows(data_dir: Path, tokenizer, seed: int = 0) -> list[dict]:
    """The generator's training rows (segments, as Axolotl's ``input_output``): for each person,
    passage and style, the pipeline's prompt through the chat template (not trained on: all the
    loss goes to the reply), then the reply, a JSON list of the pairs asked for, and EOS. The number asked
    for is drawn from 1 to all the passage's pairs of the style: the pipeline asks a bioS
    passage (~70 tokens) for one, but a reply of several pairs gives more to copy per prompt,
    and the generator must count to what it is asked."""
    rng = random.Random(f"{seed}:teach")
    questions = forward_questions(data_dir)
    rows = []
    for person in read_jsonl(data_dir / PEOPLE):
        for text in passages(person, rng):
            source = f"person-{person['id']:04d}{rng.choice(('.txt', '.pdf'))}"
            chunk = chunk_text(source, text, tokenizer, 10**6)[0]  # one passage, one chunk
            for style in STYLES:
                pairs = true_pairs(person, questions, style)
                n = rng.randint(1, len(pairs))
                reply = json.dumps(rng.sample(pairs, n))
                rows.append(
                    {
                        "segments": [
                            {"label": False, "text": render_chat(build_prompt(chunk, style, n, prompt="plain"))},
                            {"label": True, "text": f" {reply}{tokenizer.eos_token}"},
                        ]
                    }
                )
    rng.shuffle(rows)
    return rows


def judge(row: dict, person: dict, questions: dict, values: frozenset | None = None) -> str:
    """A generated pair about ``person`` (the passage's): ``true`` where it is one of the true
    pairs of its style (the answer exactly right), ``wrong`` where its question is one the
    generator was taught but the answer is not the person's, else ``other`` (a question of no
    known form: a garbled name or value, or a fact the passage does not hold).

    With ``values`` (``population_values``: every person's names and values, normalized), a
    question in other words (a paraphrase; ``paraphrased``) is judged by its answer: ``true``
    where the answer is, or holds, one of the person's own values or their name; ``wrong``
    where it is a value or name of the population that is not theirs; else ``other``."""
    style = "reverse" if row["field"] == "reverse" else "simple"
    truth = {p["question"]: p["answer"] for p in true_pairs(person, questions, style)}
    if row["question"] in truth:
        return "true" if truth[row["question"]] == row["answer"] else "wrong"
    if values is None:
        return "other"
    if any(states(row["answer"], person[f]) for f in (*FIELDS, "name")):
        return "true"
    return "wrong" if " ".join(normalize(row["answer"])) in values else "other"


def paraphrased(row: dict, person: dict, questions: dict) -> bool:
    """Whether a pair's question is worded as none of the data's (or the taught reverse)
    questions about its person."""
    style = "reverse" if row["field"] == "reverse" else "simple"
    return row["question"] not in {p["question"] for p in true_pairs(person, questions, style)}


def population_values(people) -> frozenset:
    """Every name and attribute value of a population, normalized as the judge reads answers."""
    return frozenset(" ".join(normalize(str(p[f]))) for p in people for f in (*FIELDS, "name"))


def build_generator(teach_dir: Path, folder: Path, people: int, steps: int, seed: int = 0) -> Path:
    """The study's generator in ``folder/model``: a population of ``people`` of its own
    (``teach_dir``), a byte-level BPE tokenizer of its teaching text (prompts and replies), a
    random 128x4 LFM2 (short convolutions and attention in turn) and ``steps`` optimizer steps
    on the teaching rows (``teach``); then the chat template and sampling defaults ``transformers
    serve`` reads.

    Why LFM2 and not Llama: to write a true pair the model must copy a name and a value out of
    the passage, which a transformer learns abruptly, after a plateau (induction heads). A
    short convolution hands each position its previous tokens, so one attention layer can find
    "the token after these" at once. Measured on the same rows (batch 16, lr 3e-3): a 128x4
    LFM2 left the plateau at ~1,300 steps and wrote 68% true pairs greedily at 3,000; a 128x2
    Llama was still on it (token accuracy 0.74) at 1,250 steps."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    from engram_run.runs import launch
    from engram_run.runs.tiny import corpus, model_config, train_tokenizer

    launch.generate_data(
        teach_dir,
        people,
        seed=1000 + seed,
        variants=("bioS", "bioS_multi5_permutes"),
        extra=("--heldout-fraction", "0"),
    )
    launch.remove_own(folder)
    launch.claim(folder)
    # Rows need a tokenizer (how many pairs a passage asks for); the tokenizer is trained on rows.
    draft = train_tokenizer(corpus(teach_dir), 2048)
    # A vocabulary large enough that most names and values are one token each: copying one out
    # of the passage is then one attention lookup, learned in far fewer steps.
    text = (seg["text"] for r in teaching_rows(teach_dir, draft, seed) for seg in r["segments"])
    tok = train_tokenizer(text, VOCAB)
    tok.chat_template = CHAT_TEMPLATE
    rows = teaching_rows(teach_dir, tok, seed)
    write_jsonl(folder / "teach.jsonl", rows)
    torch.manual_seed(seed)
    init = folder / "init"
    AutoModelForCausalLM.from_config(model_config("lfm2", len(tok), 128, 4, 4, tok)).save_pretrained(init)
    tok.save_pretrained(init)
    teach(rows, init, folder / "model", steps, seed)
    model = folder / "model"
    tok.save_pretrained(model)  # with the chat template
    GenerationConfig(
        do_sample=True,
        max_new_tokens=160,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
    ).save_pretrained(model)
    return model


def teach(rows: list[dict], init: Path, out: Path, steps: int, seed: int) -> None:
    """``steps`` steps of the transformers ``Trainer`` on ``rows``, the loss on the replies only.

    Not ``axolotl train``: a model computes the logits of every position before its loss, and
    over an 8,192-token vocabulary those of the ~180 prompt tokens a row carries were half the
    step (0.85 s against 0.41 s a batch of 16 on 2 cores). Here the output layer sees only the
    reply's positions."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, Trainer, TrainingArguments

    class ReplyLossTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            return reply_loss(model, inputs)

    tok = AutoTokenizer.from_pretrained(init)

    args = TrainingArguments(
        output_dir=str(out),
        max_steps=steps,
        per_device_train_batch_size=MICRO_BATCH,
        learning_rate=LEARNING_RATE,
        lr_scheduler_type="constant_with_warmup",
        warmup_steps=100,
        adam_beta2=0.95,
        weight_decay=0.0,
        logging_steps=250,
        save_strategy="no",
        report_to=[],
        seed=seed,
        data_seed=seed,
        dataloader_pin_memory=False,
        use_cpu=not torch.cuda.is_available(),
    )
    model = AutoModelForCausalLM.from_pretrained(init)
    data = Dataset.from_list([encode(tok, r) for r in rows])
    trainer = ReplyLossTrainer(model=model, args=args, train_dataset=data, data_collator=DataCollatorForSeq2Seq(tok))
    trainer.train()
    trainer.save_model(str(out))


def encode(tok, row: dict) -> dict:
    """A teaching row as token ids, the prompt's labels -100 (no loss)."""
    prompt, reply = (tok(seg["text"], add_special_tokens=False)["input_ids"] for seg in row["segments"])
    return {
        "input_ids": prompt + reply,
        "attention_mask": [1] * (len(prompt) + len(reply)),
        "labels": [-100] * len(prompt) + reply,
    }


def reply_loss(model, inputs: dict):
    """The causal LM loss of ``model(**inputs)`` (the mean over labelled next tokens), computing
    the output layer at the labelled positions only."""
    import torch

    labels = inputs["labels"][:, 1:]
    keep = labels != -100
    hidden = model.model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).last_hidden_state
    return torch.nn.functional.cross_entropy(model.lm_head(hidden[:, :-1][keep]).float(), labels[keep])
