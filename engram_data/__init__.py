"""Data preparation for llm-engram (the library behind ``generate_data.py``).

    contract     the on-disk layout every reader relies on: fields, splits, paths, QA rows,
                 prompt, JSON lines, the data version check
    atomic       output folders written whole or not at all, one writer each
    run_files    the files the plugin writes into a run's folder for the run glue
    errors       one line on stderr naming the problem and the fix, exit status 2
    pools        attribute pools of real facts (pools/)
    templates    sentence templates, subject first
    render       dates, mentions, biographies in every variant, questions
    reversal     the reversal remedies' texts (values before names)
    population   people: synthesize(), person_row()
    bios_v1      import of the public bioS_v1 dataset
    options      four-option questions that a frequency-only guesser cannot tell apart
    derived      the training and QA files of a population
    write        write_dataset(): every file and manifest.json, atomically
    documents    your own documents -> QA data (generate_data.py corpus)
    cli          generate_data.py's command line

Nothing is imported here, so that a reader of the contract (the Axolotl plugin, the
lm-eval tasks) pays only for what it uses.
"""
