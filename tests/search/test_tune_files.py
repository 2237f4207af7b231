"""Pruning checkpoints while a run works: only what no saved copy of Ray Tune's state can ask for,
read from a real experiment's state files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from search.store.tune_files import prune_superseded, referenced_checkpoints

pytestmark = pytest.mark.slow  # reads the shared smoke run


def _state_file(tune: Path) -> Path:
    return sorted(tune.glob("experiment_state-*.json"))[-1]


def _copy_tune(smoke, tmp_path) -> Path:
    tune = tmp_path / "tune"
    shutil.copytree(smoke[0] / "tune", tune, ignore=shutil.ignore_patterns(".state-backup"))
    return tune


def test_the_state_refers_to_each_trials_kept_checkpoint(smoke):
    """Every trial of the run is in the state, and the newest checkpoint it names is the one
    the run kept (the one trials.csv points at)."""
    references = referenced_checkpoints(_state_file(smoke[0] / "tune").read_bytes())
    table = pd.read_csv(smoke[0] / "trials.csv")
    assert set(references) == set(table["trial_id"])
    for trial_id, index in references.items():
        kept = sorted(p.name for p in (smoke[0] / "tune" / f"trial_{trial_id}").glob("checkpoint_*"))
        assert kept == [f"checkpoint_{index:06d}"]


def test_torn_or_missing_state_refers_to_nothing(smoke):
    data = _state_file(smoke[0] / "tune").read_bytes()
    assert referenced_checkpoints(data[: len(data) // 2]) is None
    assert referenced_checkpoints(None) is None


def test_only_checkpoints_older_than_what_every_saved_state_names_are_deleted(smoke, tmp_path):
    tune = _copy_tune(smoke, tmp_path)
    references = referenced_checkpoints(_state_file(tune).read_bytes())
    # trials that trained both smoke epochs (ASHA may stop a search trial after one)
    spared, pruned = sorted(t for t, index in references.items() if index >= 1)[:2]
    for trial_id in (spared, pruned):
        index = references[trial_id]
        (tune / f"trial_{trial_id}" / "checkpoint_000000").mkdir(exist_ok=True)  # superseded
        (tune / f"trial_{trial_id}" / f"checkpoint_{index + 1:06d}").mkdir()  # newer than any saved state
    # the driver's backup is a snapshot from before `spared` existed: nothing of it may go
    backup = tmp_path / "backup"
    backup.mkdir()
    state = json.loads(_state_file(tune).read_text())
    state["trial_data"] = [t for t in state["trial_data"] if json.loads(t[0])["trial_id"] != spared]
    (backup / _state_file(tune).name).write_text(json.dumps(state))

    assert prune_superseded(tune, backup) == 1
    names = {t: sorted(p.name for p in (tune / f"trial_{t}").glob("checkpoint_*")) for t in (spared, pruned)}
    assert names[pruned] == [f"checkpoint_{references[pruned]:06d}", f"checkpoint_{references[pruned] + 1:06d}"]
    assert names[spared] == [
        "checkpoint_000000",
        f"checkpoint_{references[spared]:06d}",
        f"checkpoint_{references[spared] + 1:06d}",
    ]


def test_pruning_works_through_a_uri(smoke, tmp_path):
    """With a cloud --storage the trials' folders are named by URI (here file://)."""
    tune = _copy_tune(smoke, tmp_path)
    references = referenced_checkpoints(_state_file(tune).read_bytes())
    trial_id = sorted(t for t, index in references.items() if index >= 1)[0]
    (tune / f"trial_{trial_id}" / "checkpoint_000000").mkdir(exist_ok=True)
    backup = tmp_path / "backup"
    backup.mkdir()
    (backup / _state_file(tune).name).write_bytes(_state_file(tune).read_bytes())
    pruned = {}
    assert prune_superseded(f"file://{tune}", backup, pruned) == 1
    assert not (tune / f"trial_{trial_id}" / "checkpoint_000000").exists()
    # a trial with no newer checkpoint since is not listed again (the run prunes every 2 s)
    (tune / f"trial_{trial_id}" / "checkpoint_000000").mkdir()
    assert prune_superseded(f"file://{tune}", backup, pruned) == 0 and pruned[trial_id] == references[trial_id]
    assert prune_superseded(f"file://{tune}", backup) == 1  # without the memo it is


def test_nothing_is_pruned_without_a_whole_backup(smoke, tmp_path):
    tune = _copy_tune(smoke, tmp_path)
    trial_id = sorted(referenced_checkpoints(_state_file(tune).read_bytes()))[0]
    (tune / f"trial_{trial_id}" / "checkpoint_000000").mkdir(exist_ok=True)
    assert prune_superseded(tune, tmp_path / "no-backup-yet") == 0
    torn = tmp_path / "torn"
    torn.mkdir()
    (torn / _state_file(tune).name).write_bytes(_state_file(tune).read_bytes()[:100])
    assert prune_superseded(tune, torn) == 0
    assert (tune / f"trial_{trial_id}" / "checkpoint_000000").is_dir()
