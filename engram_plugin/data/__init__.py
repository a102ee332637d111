"""Data preparation for llm-engram: bioS populations and their on-disk layout."""

from engram_plugin.data.bios import (
    FIELDS,
    QA_PREFIX,
    QUESTIONS,
    TEXT_VARIANTS,
    DataError,
    Population,
    from_records,
    load_bios_v1,
    load_pools,
    qa_prompt,
    qa_text,
    read_jsonl,
    synthesize,
    write_dataset,
)

__all__ = [
    "FIELDS",
    "QA_PREFIX",
    "QUESTIONS",
    "TEXT_VARIANTS",
    "DataError",
    "Population",
    "from_records",
    "load_bios_v1",
    "load_pools",
    "qa_prompt",
    "qa_text",
    "read_jsonl",
    "synthesize",
    "write_dataset",
]
