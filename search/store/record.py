"""The experiment folder and its record, `run.json`.

Folder layout (EXPERIMENT = storage/name; names in `search.store.files`):
    run.json        the resolved SearchConfig, the data it was run on (source, folder, split
                    sizes, SHA-256 digest), the command that reproduces it, versions, done
    tune/           Ray Tune's experiment (Tuner.restore works on it), one trial_<id>/ per trial
    optuna.journal  the Optuna study of the search stage
    race.json       the racing state (`search.store.race.RaceState`)
    status.json     where a running run stands (`search.store.status`)
    driver.lock     held by the driver while it works (`search.store.lock`)
    trials.csv      one row per trial (written when the run ends; `search.store.table`)
    history.csv     one row per trial and epoch (for loss curves)
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search.config import RUN_FLAGS, SearchConfig
from search.store.files import RUN_FILE, TUNE_DIR
from vae.errors import UsageError
from vae.files import atomic_write_text


def resume_command(path: str | Path, address: str | None = None) -> str:
    """`vae-search resume PATH`, with the `--address` of a run that joined a cluster: without it,
    resume starts a Ray of its own on the machine it is typed on instead of joining the cluster."""
    return f"vae-search resume {path}" + (f" --address {address}" if address else "")


@dataclass
class Experiment:
    path: Path
    config: SearchConfig
    record: dict[str, Any]  # the contents of run.json

    @classmethod
    def open(cls, path: str | Path) -> "Experiment":
        path = Path(path).expanduser().resolve()
        run_file = path / RUN_FILE
        if not path.is_dir():
            raise UsageError(f"experiment {path} does not exist")
        if not run_file.is_file():
            raise UsageError(f"{path} is not a vae-search experiment (no {RUN_FILE})")
        try:
            record = json.loads(run_file.read_text())
            config = _config(record)
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise UsageError(f"corrupt {run_file}: {exc}") from None
        experiment = cls(path, config, record)
        if "phases_done" in record and not experiment.done:
            raise UsageError(f"{path} was started by an earlier vae-search (a search and a seeds phase) and cannot be "
                             "resumed by this one; start a new run")
        return experiment

    def save(self) -> None:
        atomic_write_text(self.path / RUN_FILE, json.dumps(self.record, indent=2) + "\n")

    @property
    def done(self) -> bool:
        # an experiment of an earlier release (two Tune experiments) is done when both phases are
        return bool(self.record.get("done")) or {"search", "seeds"} <= set(self.record.get("phases_done", ()))

    @property
    def storage_uri(self) -> str | None:
        """The cloud URI where Ray Tune keeps this experiment, or None when it lives in the folder.

        A run with a cloud `--storage` keeps Ray Tune's experiment in the bucket and the driver's
        own files in a local folder. A folder that holds Ray Tune's experiment itself (synced down
        from the bucket, say) is a whole experiment: it is read and written where it is now."""
        uri = self.record.get("storage_uri")
        return None if uri and self.holds_tune_state else uri

    @property
    def holds_tune_state(self) -> bool:
        """Whether EXPERIMENT/tune holds Ray Tune's experiment state (not only a backup of it)."""
        return any((self.path / TUNE_DIR).glob("experiment_state-*.json"))

    @property
    def tune_location(self) -> str:
        """Where Ray Tune keeps the experiment: EXPERIMENT/tune, or `--storage URI/NAME/tune`."""
        from search.store.storage import join

        return join(self.storage_uri or str(self.path), TUNE_DIR)

    def local_reference(self, reference: str) -> str:
        """A checkpoint reference of trials.csv as this folder reads it: a URI under the bucket
        this experiment was synced down from becomes the path inside the folder."""
        uri = self.record.get("storage_uri")
        bucket = uri.partition("?")[0].rstrip("/") + "/" if uri else None
        if bucket and not self.storage_uri and reference.startswith(bucket):
            return reference.partition("?")[0][len(bucket):]
        return reference

    @property
    def trials(self):
        """trials.csv as a pandas DataFrame (one row per trial; written when the run ends)."""
        from search.store.table import read_trials

        return read_trials(self.path)

    @property
    def decision(self):
        """The racing state (`search.store.race.RaceState`): latent_dim, confidence, stop_reason."""
        from search.store.files import RACE_FILE
        from search.store.race import read_race

        return read_race(self.path / RACE_FILE)

    def best_model(self):
        """The chosen model (`vae.ConvVAE`), once `analyze` has exported it to best_model/."""
        from search.store.files import BEST_MODEL_DIR
        from vae.checkpoint import load_model

        if not (self.path / BEST_MODEL_DIR).is_dir():
            raise UsageError(f"{self.path} has no {BEST_MODEL_DIR}/ yet: search.analyze(experiment) writes it")
        return load_model(self.path / BEST_MODEL_DIR)

    def upload_file(self, name: str) -> None:
        """With a cloud --storage, copy one of the driver's files there now."""
        from search.store.storage import upload_file

        if self.storage_uri:
            upload_file(self.path / name, self.storage_uri)

    def upload(self) -> None:
        """With a cloud --storage, copy the driver's files (tables, run.json, study, report) there too."""
        from search.store.storage import copy

        if self.storage_uri:
            copy(str(self.path), self.storage_uri)


def read_config(path: Path) -> SearchConfig | None:
    """The settings run.json in the experiment folder `path` holds now, or None without one."""
    run_file = Path(path) / RUN_FILE
    if not run_file.is_file():
        return None
    return _config(json.loads(run_file.read_text()))


def _config(record: dict[str, Any]) -> SearchConfig:
    # runs made before the learning-rate schedule was a setting trained at a constant rate
    return SearchConfig.from_dict({"lr_schedule": "constant", **record["config"]})


def create(config: SearchConfig, path: Path, *, data: dict[str, Any], address: str | None,
           storage_uri: str | None = None, preset: str | None = None) -> Experiment:
    """A new experiment folder holding its run.json (not done)."""
    import platform
    from importlib.metadata import version

    import torch

    path.mkdir(parents=True)
    record = {
        "storage_uri": storage_uri,
        "preset": preset,
        "config": config.to_dict(),
        "command": reproduce_command(config, preset),
        "data": data,
        "address": address,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        # torch's with its build (+cu130, +cpu); Ray's and Optuna's read without importing them (the
        # store imports no ray)
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "ray": version("ray"),
                     "optuna": version("optuna")},
        "done": False,
    }
    experiment = Experiment(path, config, record)
    experiment.save()
    return experiment


def reproduce_command(config: SearchConfig, preset: str | None) -> str:
    """A `vae-search run` command line that sets every search value to what this run resolved."""
    import shlex

    values = config.to_dict()
    parts = ["vae-search", "run", "--preset", preset or "quick"]
    for key in RUN_FLAGS:
        value = values[key]
        if value is None or value is False:
            continue
        if value is True:  # a switch
            parts.append("--" + key.replace("_", "-"))
            continue
        text = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) if isinstance(value, list) else (
            f"{value:g}" if isinstance(value, float) else str(value))
        parts += ["--" + key.replace("_", "-"), text]
    return shlex.join(parts)


