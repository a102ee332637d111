"""Recall scored by 2 processes (gloo, CPU), two ways in one launch:

- ``plain``: the model as it is; each rank scores its share of the questions;
- ``sharded``: the model behind an all-reduce before each forward call, counting the calls,
  as ZeRO-3 / FSDP gather parameters: a rank that made one call more than another would wait
  forever (here: until the process group's timeout).

`torchrun --nproc_per_node 2 recall_ranks.py MODEL DATA PLAIN_LIMIT SHARDED_LIMIT SHARDED_BATCH OUT`
"""

import datetime
import json
import sys

import torch
import torch.distributed as dist
from transformers import AutoModelForCausalLM, AutoTokenizer

from engram_eval.recall import RecallEvaluator


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


model_dir, data_dir, out = sys.argv[1], sys.argv[2], sys.argv[6]
plain_limit, sharded_limit, sharded_batch = (int(a) for a in sys.argv[3:6])
dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
tokenizer = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)

plain = RecallEvaluator(data_dir, tokenizer, sets=["train", "heldout", "reverse"], limit=plain_limit, batch_size=8)
plain_results = plain.evaluate(model)

gathering = GatheringModel(model)
sharded = RecallEvaluator(data_dir, tokenizer, sets=["train", "reverse"], limit=sharded_limit, batch_size=sharded_batch)
sharded_results = sharded.evaluate(gathering, device=torch.device("cpu"))
calls = [None, None]
dist.all_gather_object(calls, gathering.calls)

if dist.get_rank() == 0:
    with open(out, "w") as f:
        json.dump(
            {
                "plain": {
                    "world": dist.get_world_size(),
                    "shard": len(plain.questions[0::2]),
                    "results": plain_results,
                },
                "sharded": {
                    "results": sharded_results,
                    "calls": calls,
                    "shards": [len(sharded.questions[r::2]) for r in range(2)],
                },
            },
            f,
        )
dist.destroy_process_group()
