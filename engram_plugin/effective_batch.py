"""The effective batch as a recipe constant, whatever the number of GPUs.

Axolotl multiplies the batch by the number of data-parallel processes (``normalize_config``:
``batch_size * world_size // context_parallel_size // tensor_parallel_size``) and keeps
``gradient_accumulation_steps`` as written, so a recipe stated for one GPU trains at 8x its
batch on eight. ``engram_effective_batch`` states the batch once; the plugin derives the
micro batch and accumulation for the run's process count from it (and ``make train GPUS=N``
writes the same numbers into the run's config).
"""

from __future__ import annotations

import os


class BatchError(ValueError):
    """The stated batch cannot be met on this many processes; the message says what to do."""


def data_parallel(n_gpus: int, context_parallel: int | None = None, tensor_parallel: int | None = None) -> int:
    """The data-parallel process count, as Axolotl's ``normalize_config`` counts it."""
    return max(n_gpus // (context_parallel or 1) // (tensor_parallel or 1), 1)


def split_batch(effective: int, micro: int, n_gpus: int) -> tuple[int, int]:
    """``(micro_batch_size, gradient_accumulation_steps)`` with micro x accumulation x n_gpus ==
    effective: the recipe's micro batch where it divides each GPU's share, else the largest
    micro batch below it that does (accumulation grows instead)."""
    if effective < 1 or micro < 1 or n_gpus < 1:
        raise BatchError(f"batch sizes must be positive (effective {effective}, micro {micro}, GPUs {n_gpus})")
    if effective % n_gpus:
        fits = [n for n in range(1, effective + 1) if effective % n == 0]
        raise BatchError(
            f"the effective batch {effective} cannot be split over {n_gpus} GPUs (each would take "
            f"{effective / n_gpus:g} sequences); use a GPU count that divides it ({', '.join(map(str, fits))}) "
            "or set engram_effective_batch to a multiple of the GPU count"
        )
    per_gpu = effective // n_gpus
    micro = max(m for m in range(1, min(micro, per_gpu) + 1) if per_gpu % m == 0)
    return micro, per_gpu // micro


def world_size(data: dict) -> int:
    """The GPU count a config is validated for: Axolotl's ``capabilities.n_gpu`` when given,
    else the launcher's ``WORLD_SIZE`` (set in every process by accelerate / torchrun)."""
    caps = data.get("capabilities") or {}
    n = caps.get("n_gpu") if isinstance(caps, dict) else None
    return int(n or os.environ.get("WORLD_SIZE", 1) or 1)
