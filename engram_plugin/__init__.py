"""llm-engram: data, evaluation and an Axolotl plugin for research on fact memorization.

``engram_plugin.EngramPlugin`` is what an Axolotl recipe lists under ``plugins:``.
It is imported lazily so that data preparation does not pay for importing Axolotl.
"""

__version__ = "0.1.0"
