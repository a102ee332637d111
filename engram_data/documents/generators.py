"""Generator backends: a local transformers model (``hf:PATH``) or any OpenAI-compatible
chat-completions endpoint (``openai:URL``).

Every request carries its own seed and its own token cap, and every reply comes back with why
it ended: ``stop`` (the model ended it), ``length`` (the cap cut it), ``repetition`` (stopped
on runaway repetition, ``qa.runaway``).

What is reproducible: in-process (``hf:``) a request's reply depends on its prompt, seed and
temperature only (each row samples from its own generator, so the other prompts of its batch
do not change it, up to float rounding of the padded batch). Through a server, the seed is sent
with each request; ``transformers serve`` seeds torch's global generator with it, so replies
repeat when requests go one at a time (``--concurrency 1``) on the same server build and
device, and not when concurrent requests share the generator (continuous batching). Replies
are cached by prompt, temperature and seed, so a rerun of the same data reads them back
exactly in any case."""

from __future__ import annotations

import os
import urllib.parse
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from engram_data.contract import DataError
from engram_data.documents.qa import messages, runaway
from engram_data.errors import one_line, redact

FINISH = ("stop", "length", "repetition")
# --json-schema: the reply's shape for a server with constrained decoding (vLLM's structured
# outputs, OpenAI's response_format); an object, as OpenAI's strict mode requires at the top
PAIRS_SCHEMA = {
    "type": "object",
    "properties": {
        "pairs": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"question": {"type": "string"}, "answer": {"type": "string"}},
                "required": ["question", "answer"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["pairs"],
    "additionalProperties": False,
}


def _load(what: str, path: str, loader):
    """A transformers ``from_pretrained``, with a failure as one DataError line."""
    try:
        return loader(path)
    except Exception as exc:  # OSError, ValueError, ...: transformers raises many kinds
        reason = one_line(exc)[:200]
        raise DataError(
            f"cannot load the {what} {path} ({type(exc).__name__}: {reason}); pass a local model folder"
        ) from None


class Generator:
    """Answers prompts at a temperature, each with its seed and at most its ``max_tokens``;
    ``on_reply(i, text, finish)`` is called as each one finishes (``finish`` in ``FINISH``),
    so finished work is kept even when a later request fails."""

    spec: str
    tokenizer = None

    def generate(
        self, prompts: list[str], temperature: float, seeds: list[int], on_reply, max_tokens: list[int] | None = None
    ) -> None:
        raise NotImplementedError


def _seeded_sampling(seeds: list[int], temperature: float):
    """A logits processor that samples each row from its own seeded generator and leaves only
    that token possible: greedy decoding then emits it. Temperature 0 stays greedy."""
    import torch
    from transformers import LogitsProcessor

    class SeededSampling(LogitsProcessor):
        def __init__(self):
            self.gens = [torch.Generator().manual_seed(s) for s in seeds]

        def __call__(self, input_ids, scores):
            if temperature <= 0:
                return scores
            probs = torch.softmax(scores.float() / temperature, dim=-1).cpu()
            picks = torch.cat([torch.multinomial(p, 1, generator=g) for p, g in zip(probs, self.gens)])
            out = torch.full_like(scores, float("-inf"))
            return out.scatter_(1, picks.to(scores.device)[:, None], 0.0)

    return SeededSampling()


def _repetition_stop(tokenizer, start: int):
    """A stopping criterion per row: its reply so far ends in runaway repetition."""
    import torch
    from transformers import StoppingCriteria

    class RepetitionStop(StoppingCriteria):
        def __init__(self):
            self.hit: set[int] = set()

        def __call__(self, input_ids, scores, **kwargs):
            done = []
            for i, row in enumerate(input_ids):
                stop = input_ids.shape[1] - start >= 16 and runaway(tokenizer.decode(row[start:][-120:]))
                if stop:
                    self.hit.add(i)
                done.append(stop)
            return torch.tensor(done, device=input_ids.device)

    return RepetitionStop()


class HFGenerator(Generator):
    """``hf:PATH``: a local transformers model, batched sampling on the best device."""

    def __init__(self, path: str, batch_size: int = 8, max_new_tokens: int = 256):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if not Path(path).exists():
            raise DataError(f"generator model {path} does not exist; pass hf:PATH to a local model folder")
        self.spec = f"hf:{path}"
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.tokenizer = _load("generator's tokenizer", path, AutoTokenizer.from_pretrained)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = _load("generator model", path, AutoModelForCausalLM.from_pretrained).to(self.device).eval()
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens

    def _render(self, prompt: str | list[dict]) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages(prompt), tokenize=False, add_generation_prompt=True)
        return "\n".join(m["content"] for m in messages(prompt)) + "\n"

    def generate(self, prompts, temperature, seeds, on_reply, max_tokens=None) -> None:
        import torch

        caps = max_tokens or [self.max_new_tokens] * len(prompts)
        eos = self.tokenizer.eos_token_id
        for i in range(0, len(prompts), self.batch_size):
            batch = [self._render(p) for p in prompts[i : i + self.batch_size]]
            enc = self.tokenizer(batch, return_tensors="pt", padding=True).to(self.device)
            start = enc["input_ids"].shape[1]
            stop = _repetition_stop(self.tokenizer, start)
            with torch.no_grad():
                ids = self.model.generate(
                    **enc,
                    do_sample=False,  # the sampling is SeededSampling's, row by row
                    logits_processor=[_seeded_sampling(seeds[i : i + len(batch)], temperature)],
                    stopping_criteria=[stop],
                    max_new_tokens=max(caps[i : i + len(batch)]),
                    pad_token_id=self.tokenizer.pad_token_id,
                    temperature=None,
                    top_p=None,
                    top_k=None,
                )
            for j, row in enumerate(ids[:, start:].tolist()):
                cap = caps[i + j]
                ended = eos in row[:cap]
                row = row[: row.index(eos)] if ended else row[:cap]
                finish = "repetition" if j in stop.hit and not ended else ("stop" if ended else "length")
                on_reply(i + j, self.tokenizer.decode(row, skip_special_tokens=True), finish)


class OpenAIGenerator(Generator):
    """``openai:URL``: any OpenAI-compatible chat-completions endpoint (``transformers serve``,
    vLLM, llama.cpp, TGI, a hosted API) through the ``openai`` client library: its timeouts,
    and its retries with exponential backoff on connection errors, 408, 409, 429 and 5xx.
    The key comes from ``api_key_env`` and is never printed or stored (a server that echoes
    it back has it redacted from the error line)."""

    def __init__(
        self,
        url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 4,
        timeout: float = 60.0,
        retries: int = 5,
        tokenizer=None,
        json_schema: bool = False,
    ):
        import openai

        # A server on this machine is keyed by the model it serves, not by the port it was given
        # this time (make corpus-train serves a local folder on a free port): a rerun is cached.
        local = urllib.parse.urlsplit(url).hostname in ("127.0.0.1", "localhost", "::1")
        self.spec = f"openai:{'localhost' if local else url}#{model}"
        self.base = url.rstrip("/").removesuffix("/chat/completions")
        self.url = f"{self.base}/chat/completions"
        self.model, self.key = model, os.environ.get(api_key_env, "")
        self.concurrency = concurrency
        self.tokenizer = tokenizer
        self.json_schema = json_schema
        # A local server needs no key; the client insists on one ("unused" is sent then).
        self.client = openai.OpenAI(
            base_url=self.base, api_key=self.key or "unused", timeout=timeout, max_retries=retries
        )

    def _one(self, prompt: str | list[dict], temperature: float, seed: int, max_tokens: int | None) -> tuple[str, str]:
        """One request, streamed so that runaway repetition is cut where it starts."""
        import openai

        extra = {"max_tokens": max_tokens} if max_tokens else {}
        if self.json_schema:  # constrained decoding where the server has it (transformers serve has not)
            extra["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "qa_pairs", "schema": PAIRS_SCHEMA, "strict": True},
            }
        text, finish = "", "stop"
        try:
            stream = self.client.chat.completions.create(
                model=self.model,
                messages=messages(prompt),
                temperature=temperature,
                seed=seed,
                stream=True,
                **extra,
            )
            with stream:
                for event in stream:
                    if not event.choices:
                        continue
                    text += event.choices[0].delta.content or ""
                    finish = event.choices[0].finish_reason or finish
                    if runaway(text):
                        finish = "repetition"
                        break
        except openai.APIStatusError as exc:
            body = redact(exc.response.text[:300], [self.key])
            raise DataError(f"{self.url} answered HTTP {exc.status_code}: {one_line(body)}") from None
        except (openai.APITimeoutError, openai.APIConnectionError) as exc:
            raise DataError(f"cannot reach {self.url} ({one_line(exc)}); check --generator and the server") from None
        return text, finish if finish in FINISH else "stop"

    def generate(self, prompts, temperature, seeds, on_reply, max_tokens=None) -> None:
        caps = max_tokens or [None] * len(prompts)
        error = None
        with ThreadPoolExecutor(self.concurrency) as pool:
            futures = {
                pool.submit(self._one, p, temperature, s, c): i for i, (p, s, c) in enumerate(zip(prompts, seeds, caps))
            }
            for future in as_completed(futures):
                try:
                    on_reply(futures[future], *future.result())
                except DataError as exc:  # keep collecting what did finish, then report
                    error = error or exc
        if error:
            raise error


def make_generator(spec: str, model: str | None = None, tokenizer: str | None = None, **kwargs) -> Generator:
    kind, _, target = spec.partition(":")
    if kind == "hf" and target:
        if kwargs.get("json_schema"):
            raise DataError("--json-schema asks a server for constrained decoding; use it with openai:URL")
        return HFGenerator(target)
    if kind == "openai" and target:
        tok = None
        if tokenizer:
            from transformers import AutoTokenizer

            tok = _load("tokenizer", tokenizer, AutoTokenizer.from_pretrained)
        return OpenAIGenerator(target, model or "default", tokenizer=tok, **kwargs)
    raise DataError(f"unknown generator {spec!r}; use hf:PATH or openai:URL (with --model NAME)")
