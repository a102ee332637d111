"""Studies: many runs on one budget, each answering one question and writing its table and plot.

    common            what the studies share: the step timer, budgets, an arm's recipe, lm-eval rows
    cli               the command lines of reproduce, reversal, probe, capacity, localize, floors, finetune-study
    reproduce         make reproduce: Physics of LM 3.1's protocols on every text variant, the gate
    reproduce_config  its scales (ci, default, reference, paper) and each run's config in the paper's protocol
    reproduce_report  its tables (the paper's figure beside each cell) and plot
    reversal          make reversal: what makes reverse questions answerable
    reversal_report   its table and plot
    probes            make probe: P- and Q-probes of bioS against multi5 + permute models
    capacity          make capacity: knowledge capacity (Physics of LM 3.3)
    floors            make floors: a model's bioS scores before fine-tuning, beside chance
    finetune          make finetune-study: batch, LoRA and forgetting on a pretrained model
    finetune_report   its tables and plot
    localize          make localize: engram-localize's analyses on a trained run
    corpus_study      make corpus-study: does the documents recipe work? (known truth)
    corpus_generator  the documents study's taught generator and its judge
    corpus_truth      the documents study's truth: each pair judged, per arm and temperature
    corpus_report     the documents study's tables and plot
    corpus_cli        the documents commands: corpus-train, pick-base, corpus-study

A study imports :mod:`common` and its own ``*_report`` (and ``*_config``) modules, never another study.
"""
