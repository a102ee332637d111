"""llm-engram's Axolotl integration, in the shape of Axolotl's own ``integrations/<name>/``.

``engram_plugin.EngramPlugin`` is what a recipe lists under ``plugins:``; ``EngramArgs``
holds its ``engram_*`` keys. Both are imported lazily, so that the recall evaluator can be
used without importing Axolotl.

    args        the engram_* keys: one pydantic model, validated with the fix in the message
    plugin      the hooks: data check, freezing (twice), the callback, post-training lm-eval
    callbacks   recall at step 0 and every evaluation, the best checkpoint by it, a target recall
    jobs        one callback per smaller job: gc and layer freezing, loss-rise stop, log and progress files
    best        best_model_qa_<acc>: saved by the plugin, or a link to HF's best checkpoint
    freeze      freezing embeddings and layers, for every architecture, full or adapter
    effective_batch  the recipe's batch kept on any GPU count (micro batch x accumulation)
    resume      the plugin's state when Axolotl resumes a run from a checkpoint

It evaluates with :mod:`engram_eval` (recall, capacity, lm-eval arguments), reads the data
through :mod:`engram_data.contract`, and imports nothing of the run glue.
"""

__version__ = "0.1.0"
__all__ = ["EngramArgs", "EngramPlugin"]


def __getattr__(name: str):
    if name == "EngramPlugin":
        from engram_plugin.plugin import EngramPlugin

        return EngramPlugin
    if name == "EngramArgs":
        from engram_plugin.args import EngramArgs

        return EngramArgs
    raise AttributeError(f"module 'engram_plugin' has no attribute {name!r}")
