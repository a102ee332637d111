"""The files and environment variable through which a training run with the plugin reports
to the run glue (``engram_run``) and the benchmarks: the plugin writes them, they read them.
Not part of the data contract (:mod:`engram_data.contract`), which is what a dataset holds."""

# What a training run with the plugin leaves for the run glue: recall per scoring, progress.
RECALL_HISTORY = "engram_recall.jsonl"  # one JSON line per scoring: step, epoch, eval_engram_* metrics
# Every trainer log line (loss, eval_loss, ...) as JSON: the curves lr-find, epoch-find and sweeps read.
LOG_HISTORY = "engram_log.jsonl"
TIMING_FILE = "engram_timing.jsonl"  # the plugin's seconds per recall scoring, read by bench_gpu.py
BEST_PREFIX = "best_model_qa_"  # best_model_qa_<recall>: the plugin's best checkpoint (or a link to HF's)
PROGRESS_ENV = "ENGRAM_PROGRESS"  # where the plugin writes {"step", "max_steps", "epoch", "epochs"}
