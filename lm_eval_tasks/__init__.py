"""llm-engram's lm-evaluation-harness tasks (``bios_qa`` and its family).

lm-eval finds them with ``--include_path lm_eval_tasks`` (from the repo root) or through
the ``engram-eval`` console script, which adds :data:`TASKS_DIR` itself.
"""

from pathlib import Path

TASKS_DIR = Path(__file__).resolve().parent
