"""Single runs: a recipe found, checked (schema and GPU path), derived for a run and its GPU
count, launched (`axolotl train`, `engram-eval`) with progress, in sequence for many models;
the tiny local model, the recipes' real shapes and their memory estimate."""
