"""The VAE core: data sources, model, loss and metrics, training loop, checkpoints (no Ray).

Names are imported lazily (PEP 562) so that `vae.errors` and `vae.config` stay light and the
command line's `--help` does not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "load_model": "vae.checkpoint",
    "load_config": "vae.checkpoint",
    "save_model": "vae.checkpoint",
    "DataConfig": "vae.config",
    "ModelConfig": "vae.config",
    "TrainConfig": "vae.config",
    "Split": "vae.data",
    "Splits": "vae.data",
    "load_data": "vae.data",
    "digest": "vae.data",
    "DataError": "vae.errors",
    "UsageError": "vae.errors",
    "ConvVAE": "vae.model",
    "EpochResult": "vae.training",
    "TrainState": "vae.training",
    "TrainingDiverged": "vae.training",
    "evaluate": "vae.training",
    "train": "vae.training",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'vae' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
