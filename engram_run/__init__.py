"""The glue behind the Makefile (``python -m engram_run``), one job per module:

    settings   Run: a recipe on one text variant, and where its files go
    recipes    find, load and validate recipes; derive a run's config or a CPU variant
    launch     axolotl train and engram-eval as their own processes; lm-eval's result files
    batch      many runs in sequence, past failures, skipping finished ones
    report     one table of every run (md/csv/json) and plots
    compare    base vs fine-tuned on lm-eval's benchmark groups, with stderr and p-values
    localize   engram-localize's analyses on a trained run (make localize)
    capacity   the knowledge-capacity study on a CPU (make capacity)
    demo       the main job end to end on a CPU
    tiny       local tiny models and their tokenizer (no downloads)

It reads data through :mod:`engram_data.contract`; the Axolotl plugin never imports it.
"""
