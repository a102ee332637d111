"""Recall under 2 processes on a model that behaves like a sharded one: every forward call
is a collective (as ZeRO-3 / FSDP gather parameters), so a rank that makes one call more
than another waits forever (here: until the process group's timeout).

`torchrun --nproc_per_node 2 recall_sharded.py MODEL DATA LIMIT BATCH OUT`
"""

import datetime
import json
import sys

import torch
import torch.distributed as dist
from transformers import AutoModelForCausalLM, AutoTokenizer

from engram_plugin.recall import RecallEvaluator


class GatheringModel(torch.nn.Module):
    """The model, with an all-reduce before each forward call, counting the calls."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.calls = 0

    def forward(self, **kwargs):
        dist.all_reduce(torch.ones(1))
        self.calls += 1
        return self.inner(**kwargs)


model_dir, data_dir, limit, batch, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
tokenizer = AutoTokenizer.from_pretrained(model_dir)
model = GatheringModel(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32))
evaluator = RecallEvaluator(data_dir, tokenizer, sets=["train", "reverse"], limit=limit, batch_size=batch)
results = evaluator.evaluate(model, device=torch.device("cpu"))
calls = [None, None]
dist.all_gather_object(calls, model.calls)
if dist.get_rank() == 0:
    shards = [len(evaluator.questions[r::2]) for r in range(2)]
    with open(out, "w") as f:
        json.dump({"results": results, "calls": calls, "shards": shards}, f)
dist.destroy_process_group()
