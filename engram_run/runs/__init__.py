"""Single runs, and the pieces every run is made of:

recipes       find a recipe by model and method, load and validate it, derive a run's config
settings      what a run is (a recipe on a text variant) and where its files go
launch        engram-data and axolotl train as processes; the folders a run owns; resuming
evaluation    engram-eval (lm-eval with our tasks), result files found and read
worker        one Python process for many CPU runs (libraries imported once)
progress      progress bars with an ETA for training and lm-eval
sequence      many runs in sequence: failures reported, finished runs skipped
tiny          a small local model and its BPE tokenizer (no downloads)
pretrained    a real pretrained model from a GGUF a package ships, converted once (make pretrained)
architectures the recipes' base models as transformers configs (real shapes)
memory        a recipe's peak GPU memory, estimated from its shape and settings
recipe_check  make recipes: the schema, and the GPU path as axolotl train takes it
serve         a local OpenAI-compatible server (transformers serve) for generators
corpus        your documents end to end (make corpus-train)
"""
