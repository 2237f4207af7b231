"""Ray Tune + Optuna orchestration and the `vae-search` command line, in three layers:
`search.cli` (the command line) over `search.engine` (the run; the only layer that imports
ray) over `search.store` (the experiment folder's files). `search.config` is shared by all.
From Python: `search.run(config) -> Experiment`, `search.analyze(experiment)`,
`search.Experiment.open(path)` and `search.resolve(preset, settings) -> SearchConfig`
(`search.api`); imported lazily, so `import search` and the command line's `--help` stay light.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"run": "search.api", "analyze": "search.api", "Experiment": "search.store.record",
            "SearchConfig": "search.config", "resolve": "search.config"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'search' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
