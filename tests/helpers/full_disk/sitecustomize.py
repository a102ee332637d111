"""A full disk on demand, for the resume tests: with ENGRAM_TEST_FULL_DISK_AT=checkpoint-N in
the environment (and this folder on PYTHONPATH), torch.save into that checkpoint writes a few
bytes and fails as a full disk does (ENOSPC), mid-checkpoint: the model is saved by then, the
optimizer state and trainer_state.json are not."""

import errno
import os

_AT = os.environ.get("ENGRAM_TEST_FULL_DISK_AT")
if _AT:
    import torch

    _save = torch.save

    def save(obj, f, *args, **kwargs):
        if f"/{_AT}/" in str(f):
            with open(f, "wb") as out:
                out.write(b"\0" * 16)
            raise OSError(errno.ENOSPC, "No space left on device", str(f))
        return _save(obj, f, *args, **kwargs)

    torch.save = save
