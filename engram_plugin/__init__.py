"""llm-engram: data, evaluation and an Axolotl plugin for research on fact memorization.

``engram_plugin.EngramPlugin`` is what an Axolotl recipe lists under ``plugins:``;
``engram_plugin.EngramArgs`` holds its ``engram_*`` keys. Both are imported lazily, so
data preparation and evaluation never pay for importing Axolotl.
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
