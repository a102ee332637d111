"""Score recall under torch.distributed (gloo, CPU): `torchrun --nproc_per_node 2 recall_dist.py MODEL DATA LIMIT OUT`."""

import json
import sys

import torch
import torch.distributed as dist
from transformers import AutoModelForCausalLM, AutoTokenizer

from engram_plugin.recall import RecallEvaluator

model_dir, data_dir, limit, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
dist.init_process_group("gloo")
tokenizer = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
evaluator = RecallEvaluator(data_dir, tokenizer, sets=["train", "heldout", "reverse"], limit=limit, batch_size=8)
results = evaluator.evaluate(model)
if dist.get_rank() == 0:
    with open(out, "w") as f:
        json.dump({"world": dist.get_world_size(), "shard": len(evaluator.questions[0::2]), "results": results}, f)
dist.destroy_process_group()
