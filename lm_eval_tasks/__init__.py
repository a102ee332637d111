"""llm-engram's lm-evaluation-harness tasks (``bios_qa`` and its family, ``docs_qa``).

lm-eval finds them with ``--include_path lm_eval_tasks`` (from the repo root) or through
the ``engram-eval`` console script (:mod:`lm_eval_tasks.cli`), which adds
:data:`TASKS_DIR` itself. ``_generate_configs.py`` writes the per-field task files.
"""

from pathlib import Path

TASKS_DIR = Path(__file__).resolve().parent


def model_args(model_dir: str | Path, base_model: str) -> str:
    """lm-eval's ``--model_args`` for a trained output folder: the model itself, or the
    base model plus ``peft=`` when the folder holds a LoRA adapter."""
    model_dir = Path(model_dir)
    if (model_dir / "adapter_config.json").exists():
        return f"pretrained={base_model},peft={model_dir},dtype=auto"
    return f"pretrained={model_dir},dtype=auto"
