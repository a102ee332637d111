#!/usr/bin/env python
"""Generate the bioS data that llm-engram's recipes train on and its evaluations read.

Usage:
    python generate_data.py --num-people 10000 --seed 0 --out data/bios
    python generate_data.py --source minsungkim/bioS_v1 --out data/bios_v1
    python generate_data.py corpus --input my_docs/ --out data/mydocs --generator hf:PATH

Synthesizes a population of fictional people (or imports the public bioS_v1 dataset) and
writes, atomically, into --out:
    people.jsonl, train/{bioS,bioS_fullname,bioS_multi5_permutes,qa_train}.jsonl,
    qa/{birth_date,birth_city,university,major,employer,company_city,reverse}.jsonl,
    manifest.json
The same arguments give byte-identical files. See `python generate_data.py --help`.
`corpus` expands your own documents into QA data in the same shape
(`python generate_data.py corpus --help`; engram_data/documents/).
"""

import sys

from engram_data.cli import main

if __name__ == "__main__":
    sys.exit(main())
