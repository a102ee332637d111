"""What a person watches: the recall line per evaluation, the training bar read from the
plugin's progress file, lm-eval's bar read from its log, library output kept in the log."""

from __future__ import annotations

import json
import sys

from engram_run.runs.progress import LmEvalWatch, TrainingWatch, recall_line, run_watched


def test_recall_line():
    entry = {
        "step": 196,
        "epoch": 4.0,
        "eval_engram_qa_acc_overall": 0.7142,
        "eval_engram_heldout_acc_overall": 0.551,
        "eval_engram_reverse_acc": 0.24,
    }
    assert recall_line(entry, 12) == "epoch 4/12   recall 0.71  heldout 0.55  reverse 0.24"
    assert recall_line({"step": 0, "epoch": 0, "eval_engram_qa_acc_overall": 0.25}, 12) == "untrained    recall 0.25"
    # A run that max_steps ends (make reproduce's step budget) counts steps, not its nominal epochs.
    assert recall_line({**entry, "step": 500}, 100000, 2500).startswith("step 500/2500  recall 0.71")


def test_training_watch_reads_progress_and_prints_each_new_evaluation_once(tmp_path, capsys):
    progress, history = tmp_path / "progress.json", tmp_path / "engram_recall.jsonl"
    watch = TrainingWatch(progress, history, enabled=True)
    progress.write_text(json.dumps({"step": 49, "max_steps": 588, "epoch": 1.0, "epochs": 12}))
    history.write_text(json.dumps({"step": 0, "epoch": 0, "eval_engram_qa_acc_overall": 0.25}) + "\n")
    watch.poll()
    assert (watch.bar.n, watch.bar.total) == (49, 588)
    with history.open("a") as f:
        f.write(json.dumps({"step": 49, "epoch": 1.0, "eval_engram_qa_acc_overall": 0.268}) + "\n")
        f.write('{"step": 98, "epo')  # being written
    watch.poll()
    watch.poll()
    watch.bar.close()
    out = capsys.readouterr().out
    assert out.count("untrained    recall 0.25") == 1 and out.count("epoch 1/12   recall 0.27") == 1


def test_lm_eval_watch_follows_its_request_bar(tmp_path):
    log = tmp_path / "eval.log"
    log.write_bytes(b"INFO noise\nRunning loglikelihood requests:  10%|#  | 480/4800 [00:01<00:09, 4")
    watch = LmEvalWatch(log, enabled=True)
    watch.poll()
    assert (watch.bar.n, watch.bar.total) == (480, 4800)
    with log.open("ab") as f:
        f.write(b"80it/s]\rRunning loglikelihood requests: 100%|#####| 4800/4800 [00:10<00:00, 480it/s]\n")
    watch.close()
    assert (watch.bar.n, watch.bar.total) == (4800, 4800)


def test_a_tools_own_output_goes_to_the_log_not_the_terminal(tmp_path, capsys):
    log = tmp_path / "run.log"
    cmd = [sys.executable, "-c", "import sys; print('torchao: failed to load'); print('warning', file=sys.stderr)"]
    watch = TrainingWatch(tmp_path / "p.json", tmp_path / "h.jsonl", enabled=False)
    assert run_watched(cmd, log, {}, watch) == 0
    assert "torchao" in log.read_text() and "warning" in log.read_text()
    assert "torchao" not in capsys.readouterr().out
