"""``engram-eval``: `lm_eval` with llm-engram's tasks added, from any working directory.

Usage:
    engram-eval --model hf --model_args pretrained=PATH --tasks bios_qa
    engram-eval --model hf --model_args pretrained=BASE,peft=ADAPTER --tasks bios_qa --metadata '{"data_dir": "data/bios"}'

Takes exactly `lm_eval`'s arguments. The task folder is added to every lm-eval
``TaskManager``, so a ``--include_path`` of your own still works beside it.
"""

from __future__ import annotations

import functools
import sys


def add_engram_tasks() -> None:
    """Make every ``TaskManager`` also index llm-engram's task folder."""
    from lm_eval.tasks import TaskManager

    from lm_eval_tasks import TASKS_DIR

    init = TaskManager.__init__
    if getattr(init, "_engram_tasks", False):
        return

    @functools.wraps(init)
    def __init__(self, verbosity=None, include_path=None, *args, **kwargs):
        paths = [] if include_path is None else [include_path] if isinstance(include_path, str) else list(include_path)
        if str(TASKS_DIR) not in map(str, paths):
            paths.append(str(TASKS_DIR))
        init(self, verbosity, paths, *args, **kwargs)

    __init__._engram_tasks = True
    TaskManager.__init__ = __init__


BNB_4BIT_KEYS = ("load_in_4bit", "bnb_4bit_quant_type", "bnb_4bit_use_double_quant", "bnb_4bit_compute_dtype")


def add_4bit_loading() -> None:
    """lm-eval's ``load_in_4bit=True`` (and ``bnb_4bit_*``) model args as a ``BitsAndBytesConfig``:
    lm-eval 0.4.11 passes them to ``from_pretrained`` as keywords, which transformers 5 rejects."""
    from lm_eval.models.huggingface import HFLM

    create = HFLM._create_model
    if getattr(create, "_engram_4bit", False):
        return

    @functools.wraps(create)
    def _create_model(self, *args, **kwargs):
        if kwargs.get("load_in_4bit") and kwargs.get("quantization_config") is None:
            from lm_eval.models.huggingface import get_dtype
            from transformers import BitsAndBytesConfig

            settings = {k: kwargs.pop(k) for k in BNB_4BIT_KEYS if k in kwargs}
            if "bnb_4bit_compute_dtype" in settings:
                settings["bnb_4bit_compute_dtype"] = get_dtype(settings["bnb_4bit_compute_dtype"])
            kwargs["quantization_config"] = BitsAndBytesConfig(**settings)
        return create(self, *args, **kwargs)

    _create_model._engram_4bit = True
    HFLM._create_model = _create_model


def main(argv: list[str] | None = None) -> None:
    from lm_eval.__main__ import cli_evaluate

    add_engram_tasks()
    add_4bit_loading()
    sys.argv = ["lm_eval", *(sys.argv[1:] if argv is None else argv)]
    cli_evaluate()


if __name__ == "__main__":
    main()
