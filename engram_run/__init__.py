"""The glue behind the Makefile (``python -m engram_run``), by concern:

    runs/      one run: recipes (find, check, derive for N GPUs), settings (where its files
               go), launch (axolotl train, engram-eval), batch (many in sequence), progress,
               tiny (a local model), architectures and memory (real shapes, peak estimates),
               recipe_check (make recipes: the schema and the GPU path)
    studies/   many runs, one question: reproduce (Physics of LM 3.1), capacity (3.3),
               localize (engram-localize on a trained run)
    tuning/    sweep (grids; local or SLURM executors), finders (lr-find, epoch-find),
               curves (loss and recall read from a run's logs), sweep_report
    reports/   report (one table of every run, plots), compare (base vs tuned, p-values)
    demo       the main job end to end on a CPU: data, model, train, evaluate, report

Layers: runs imports none of the others; reports only runs; studies and tuning runs and
reports; demo and __main__ anything (tests/test_layout.py). It reads data through
:mod:`engram_data.contract`; the Axolotl plugin never imports it.
"""
