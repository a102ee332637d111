"""What a run is: a recipe trained on one text variant, and where its files go.

    outputs/<run>/config.yml   the Axolotl config derived from the recipe
    outputs/<run>/model/       what axolotl train writes (and .engram_done when it finished)
    outputs/<run>/train.log    its output
    results/<run>/             lm-eval's own result files

with ``<run>`` = ``<model>-<method>-<variant>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engram_data.contract import VARIANTS
from engram_run.runs.recipes import RunError, load_recipe, recipe_method, recipe_path

DEFAULT_VARIANT = "bioS_multi5_permutes"


@dataclass(frozen=True)
class Run:
    model: str  # axolotl_configs/<model>.yml
    method: str  # full, lora or qlora
    variant: str  # the text variant trained on
    recipe: Path
    outputs: Path = Path("outputs")
    results: Path = Path("results")

    @classmethod
    def resolve(cls, model: str, method: str | None = None, variant: str = DEFAULT_VARIANT, **paths) -> Run:
        """The run of ``model`` with ``method`` (default: the recipe's own) on ``variant``."""
        if variant not in VARIANTS:
            raise RunError(f"unknown VARIANT={variant}; choose from {', '.join(VARIANTS)}")
        recipe = recipe_path(model, method)
        return cls(model, recipe_method(load_recipe(recipe)), variant, recipe, **paths)

    @property
    def name(self) -> str:
        return f"{self.model}-{self.method}-{self.variant}"

    @property
    def dir(self) -> Path:
        return self.outputs / self.name

    @property
    def model_dir(self) -> Path:
        return self.dir / "model"

    @property
    def config(self) -> Path:
        return self.dir / "config.yml"

    @property
    def train_log(self) -> Path:
        return self.dir / "train.log"

    @property
    def results_dir(self) -> Path:
        return self.results / self.name
