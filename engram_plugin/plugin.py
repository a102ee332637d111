"""The Axolotl plugin: ``plugins: [engram_plugin.EngramPlugin]``."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from axolotl.integrations.base import BasePlugin

from engram_data.contract import FIELDS, REVERSE, read_qa_file
from engram_plugin.callbacks import EngramCallback, best_dirs
from engram_plugin.freeze import apply_freezing

LOG = logging.getLogger("engram_plugin")
RESULTS_FILE = "lm_eval_results.json"


class EngramPlugin(BasePlugin):
    """Freezing, recall evaluation during training, best-checkpoint keeping, and an
    lm-eval run of the bios_qa family after training."""

    def get_input_args(self) -> str:
        return "engram_plugin.args.EngramArgs"

    def pre_model_load(self, cfg):
        if cfg.engram_recall_eval or cfg.engram_post_eval:
            qa = Path(cfg.engram_data_dir) / "qa"
            if not qa.is_dir():
                raise FileNotFoundError(
                    f"engram_data_dir {cfg.engram_data_dir} has no qa/ folder: run `make data` "
                    "or point engram_data_dir at a dataset written by generate_data.py"
                )
            for name in (*FIELDS, REVERSE):  # the version, counts and hashes, every row: before any work
                read_qa_file(cfg.engram_data_dir, name)

    def post_model_load(self, cfg, model):
        # Early, so that a bad layer index fails before any data is processed.
        apply_freezing(model, cfg.engram_freeze_embeddings, cfg.engram_freeze_layers)

    def post_trainer_create(self, cfg, trainer):
        # Again after Axolotl has applied `unfrozen_parameters`, which would undo it.
        frozen = apply_freezing(trainer.model, cfg.engram_freeze_embeddings, cfg.engram_freeze_layers)
        if frozen:
            LOG.info("engram: %d parameter tensors frozen", len(frozen))

    def add_callbacks_post_trainer(self, cfg, trainer):
        return [EngramCallback(cfg, trainer)]

    def post_train_unload(self, cfg):
        """After the final model is saved and unloaded: score it with lm-eval (rank 0)."""
        if not cfg.engram_post_eval or int(os.environ.get("RANK", "0")) != 0:
            return
        model_dir = Path(cfg.output_dir)
        if cfg.engram_post_eval_model == "best":
            found = best_dirs(model_dir)
            if not found:
                LOG.warning("engram: no best_model_qa_* to evaluate; scoring the final model")
            else:
                model_dir = found[-1]
        run_post_eval(cfg, model_dir)


def run_post_eval(cfg, model_dir: Path) -> dict:
    """lm-eval's bios_qa family on ``model_dir``; results written beside the model."""
    import torch
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager
    from lm_eval.utils import handle_non_serializable, make_table

    from lm_eval_tasks import TASKS_DIR, model_args

    tm = TaskManager(include_path=str(TASKS_DIR), metadata={"data_dir": str(cfg.engram_data_dir)})
    out = simple_evaluate(
        model="hf",
        model_args=model_args(model_dir, cfg.base_model),
        tasks=list(cfg.engram_post_eval_tasks),
        limit=cfg.engram_post_eval_limit,
        task_manager=tm,
        batch_size=cfg.engram_eval_batch_size,
        device="cuda" if torch.cuda.is_available() else "cpu",
    )
    out.pop("samples", None)
    (model_dir / RESULTS_FILE).write_text(json.dumps(out, indent=2, default=handle_non_serializable) + "\n")
    (model_dir / "lm_eval_results.md").write_text(make_table(out) + "\n")
    LOG.info("engram: lm-eval results written to %s", model_dir / RESULTS_FILE)
    return out
