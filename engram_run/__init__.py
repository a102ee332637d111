"""The glue behind the Makefile (``python -m engram_run``), by concern:

    runs/      one run: recipes, settings, launch, evaluation, sequence, progress, tiny, ...
    reports/   across runs: report, compare, pick_base
    studies/   many runs, one question: reproduce, reversal, probes, capacity, localize, corpus_study
    tuning/    grids of runs: sweep, lr-find, epoch-find
    demo       the main job end to end on a CPU: data, model, train, evaluate, report
    __main__   python -m engram_run: the commands behind the Makefile

Each sub-package's docstring lists its modules (tests/test_layout.py checks).

Layers: runs imports none of the others; reports only runs; studies and tuning runs and
reports; demo and __main__ anything (tests/test_layout.py). It reads data through
:mod:`engram_data.contract`; the Axolotl plugin never imports it.
"""
