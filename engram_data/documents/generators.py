"""Generator backends: a local transformers model (``hf:PATH``) or any OpenAI-compatible
chat-completions endpoint (``openai:URL``)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from engram_data.contract import DataError
from engram_data.errors import one_line, redact


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
    """Answers prompts at a temperature; ``on_reply(i, text)`` is called as each one
    finishes, so finished work is kept even when a later request fails."""

    spec: str
    tokenizer = None

    def generate(self, prompts: list[str], temperature: float, seeds: list[int], on_reply) -> None:
        raise NotImplementedError


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

    def _render(self, prompt: str) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
        return prompt + "\n"

    def generate(self, prompts: list[str], temperature: float, seeds: list[int], on_reply) -> None:
        import torch

        for i in range(0, len(prompts), self.batch_size):
            batch = [self._render(p) for p in prompts[i : i + self.batch_size]]
            enc = self.tokenizer(batch, return_tensors="pt", padding=True).to(self.device)
            torch.manual_seed(seeds[i])
            with torch.no_grad():
                ids = self.model.generate(
                    **enc,
                    do_sample=temperature > 0,
                    temperature=max(temperature, 1e-5),
                    top_p=1.0,
                    max_new_tokens=self.max_new_tokens,
                    pad_token_id=self.tokenizer.pad_token_id,
                )
            texts = self.tokenizer.batch_decode(ids[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
            for j, text in enumerate(texts):
                on_reply(i + j, text)


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
    ):
        import openai

        self.spec = f"openai:{url}#{model}"
        self.base = url.rstrip("/").removesuffix("/chat/completions")
        self.url = f"{self.base}/chat/completions"
        self.model, self.key = model, os.environ.get(api_key_env, "")
        self.concurrency = concurrency
        self.tokenizer = tokenizer
        # A local server needs no key; the client insists on one ("unused" is sent then).
        self.client = openai.OpenAI(
            base_url=self.base, api_key=self.key or "unused", timeout=timeout, max_retries=retries
        )

    def _one(self, prompt: str, temperature: float, seed: int) -> str:
        import openai

        try:
            reply = self.client.chat.completions.create(
                model=self.model, messages=[{"role": "user", "content": prompt}], temperature=temperature, seed=seed
            )
        except openai.APIStatusError as exc:
            body = redact(exc.response.text[:300], [self.key])
            raise DataError(f"{self.url} answered HTTP {exc.status_code}: {one_line(body)}") from None
        except (openai.APITimeoutError, openai.APIConnectionError) as exc:
            raise DataError(f"cannot reach {self.url} ({one_line(exc)}); check --generator and the server") from None
        return reply.choices[0].message.content or ""

    def generate(self, prompts: list[str], temperature: float, seeds: list[int], on_reply) -> None:
        error = None
        with ThreadPoolExecutor(self.concurrency) as pool:
            futures = {pool.submit(self._one, p, temperature, s): i for i, (p, s) in enumerate(zip(prompts, seeds))}
            for future in as_completed(futures):
                try:
                    on_reply(futures[future], future.result())
                except DataError as exc:  # keep collecting what did finish, then report
                    error = error or exc
        if error:
            raise error


def make_generator(spec: str, model: str | None = None, tokenizer: str | None = None, **kwargs) -> Generator:
    kind, _, target = spec.partition(":")
    if kind == "hf" and target:
        return HFGenerator(target)
    if kind == "openai" and target:
        tok = None
        if tokenizer:
            from transformers import AutoTokenizer

            tok = _load("tokenizer", tokenizer, AutoTokenizer.from_pretrained)
        return OpenAIGenerator(target, model or "default", tokenizer=tok, **kwargs)
    raise DataError(f"unknown generator {spec!r}; use hf:PATH or openai:URL (with --model NAME)")
