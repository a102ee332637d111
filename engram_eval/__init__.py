"""llm-engram's evaluation code, shared by the plugin (during training), the run glue, the
studies and engram-localize (after it). It reads datasets through :mod:`engram_data.contract`
only, and imports neither Axolotl nor lm-eval.

    recall          the fast four-option evaluator (the same numbers as lm-eval's bios_qa)
    capacity_bound  knowledge capacity as Physics of LM 3.3 bounds it (the default measure)
    capacity_qa     bits extractable through QA prompts (engram-capacity --measure qa)
    params          parameter counts as the capacity measures divide by them
    memorization    next-token accuracy on the attribute tokens of the biographies (the gate)
    forgetting      what fine-tuning cost: loss and KL on fixed English text, general prompts
    lm_eval_args    lm-eval's --metadata and --model_args for a run's output folder
    cli             the engram-capacity command line
"""
