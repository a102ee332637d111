"""llm-engram's lm-evaluation-harness tasks (``bios_qa`` and its family, ``corpus_qa``).

lm-eval finds them with ``--include_path lm_eval_tasks`` (from the repo root) or through
the ``engram-eval`` console script, which adds :data:`TASKS_DIR` itself.

    *.yaml                the tasks (per-field ones written by _generate_configs.py)
    utils                 data loading checked against the data contract, few-shot, scoring
    cli                   engram-eval: lm_eval with this folder included
    _generate_configs.py  writes the per-field task files (make format; make lint checks)
"""

from pathlib import Path

TASKS_DIR = Path(__file__).resolve().parent
