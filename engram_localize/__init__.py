"""engram-localize: where in the weights a fine-tuned model keeps the facts it memorized.

    cli           the engram-localize command line (diff, graft, prune, trace, probe)
    checkpoints   checkpoints read tensor by tensor from safetensors, LoRA adapters merged
    diff          how much every tensor changed in fine-tuning, per layer and module
    select        the top fraction of changed weights by |delta|, streamed
    graft         graft and prune curves: how few changed weights carry the memory
    graft_report  a curve as JSON, CSV, PNG and Markdown
    trace         causal tracing (Meng et al.) over a dataset's questions
    trace_report  tracing averaged per field: JSON, PNG heatmap, Markdown
    probe         linear probes for a person's attributes, per layer and position
    probe_report  every probe as CSV and JSON, a heatmap per view
    outputs       one output folder per subcommand run, written atomically

It scores with :mod:`engram_eval.recall` (the numbers of bios_qa) and reads data through
:mod:`engram_data.contract`.
"""
