# llm-engram: data -> train -> evaluate -> report.  `make help` lists the targets.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU wheel of this torch is what axolotl==0.19.0 accepts; on a GPU box install
# your CUDA build of torch first and `make install` keeps it.
TORCH_VERSION ?= 2.13.0

DATA_DIR ?= data/bios
NUM_PEOPLE ?= 10000
SEED ?= 0
HELDOUT_FRACTION ?= 0.5

# The machine's pip config names find-links folders that pip reports as missing, once
# per package: hide that noise, keep every other line.
PIP_QUIET := { grep -v "is neither a file nor a directory" || true; }

export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export AXOLOTL_DO_NOT_TRACK ?= 1
export WANDB_MODE ?= disabled
export TOKENIZERS_PARALLELISM ?= false
# `axolotl train` launches `accelerate` by name: the venv's tools must be on PATH.
export PATH := $(abspath $(VENV))/bin:$(PATH)

TINY_MODEL ?= outputs/tiny-llama-init

.PHONY: help install test lint format data tiny-model recipes bench clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-10s %s\n", $$1, $$2}'

install: $(VENV)/.installed ## create .venv and install the bundle with its dev tools (fast when nothing changed)

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "torch==$(TORCH_VERSION)" 2>&1 | $(PIP_QUIET)
	$(PY) -m pip install -q -e ".[dev]" 2>&1 | $(PIP_QUIET)
	$(PY) -c "import axolotl, lm_eval, engram_plugin.data"
	touch $@

test: install ## run the test suite (CPU, offline; builds its own tiny models and data)
	$(PY) -m pytest -q tests

lint: install ## check style (ruff), rewriting nothing
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install ## rewrite files into ruff's style
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

data: install ## generate the bioS population in DATA_DIR (NUM_PEOPLE, SEED, HELDOUT_FRACTION; ~2 s for 10k)
	$(PY) generate_data.py --num-people $(NUM_PEOPLE) --seed $(SEED) \
		--heldout-fraction $(HELDOUT_FRACTION) --out $(DATA_DIR) --overwrite

tiny-model: install ## build a small random Llama + BPE tokenizer from DATA_DIR into TINY_MODEL (no downloads)
	$(PY) -m engram_plugin.tiny --data $(DATA_DIR) --out $(TINY_MODEL)

recipes: install ## validate every axolotl_configs/*.yml with Axolotl's own schema
	$(PY) -m engram_plugin.recipes check axolotl_configs/*.yml

bench: install ## measure speed: data generation (100k people) and bios_qa questions/s; writes benchmarks/results/
	$(PY) benchmarks/bench_data.py --num-people 100000
	$(PY) benchmarks/bench_eval.py --num-people 2000 --limit 200

clean: ## remove generated data, outputs and caches (keeps .venv)
	rm -rf data outputs results .pytest_cache .ruff_cache
