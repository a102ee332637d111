"""Test-only Axolotl plugin: lets several CPU processes train (torchrun, gloo).

Two quirks of Axolotl 0.19 on a machine without an accelerator, neither of them ours:
- it maps each rank's model to accelerator ``LOCAL_RANK`` (``device_map = {"": rank}``):
  this keeps the model on the CPU;
- on ranks other than 0 the memory metrics it logs differ between log lines, and HF's
  model card, built from those lines on every rank, fails on the missing key (also with
  the engram plugin's recall off): this skips the model card there (rank 0 writes it).
List it before the engram plugin, with ``tests`` on PYTHONPATH."""

from axolotl.integrations.base import BasePlugin
from axolotl.loaders import model as model_loader

_set_device_map_config = model_loader.ModelLoader._set_device_map_config


def _on_cpu(self):
    _set_device_map_config(self)
    if self.cfg.device == "cpu":
        self.model_kwargs["device_map"] = {"": "cpu"}


model_loader.ModelLoader._set_device_map_config = _on_cpu


class CpuProcessesPlugin(BasePlugin):
    """Importing this module patches the device map; the hook skips the model card."""

    def post_trainer_create(self, cfg, trainer):
        if not trainer.is_world_process_zero():
            trainer.create_model_card = lambda **kwargs: None
