"""Ray Tune's own files in the experiment (`EXPERIMENT/tune`, or URI/NAME/tune): a local backup
of its state files (`state_backup`), the checkpoints kept, and the space the rest of
a run needs."""

from __future__ import annotations

import json
from pathlib import Path

from search.store.files import TUNE_DIR
from search.store.record import Experiment
from vae.errors import UsageError

STATE_BACKUP = ".state-backup"  # in EXPERIMENT/tune; with a cloud --storage, EXPERIMENT/.tune-state-backup
_STATE_FILES = ("experiment_state-*.json", "search_gen_state-*.json", "searcher-state-*.pkl")


def state_names(location: str | Path) -> list[str]:
    """The names of Ray Tune's state files in the folder at `location` (a path or a URI)."""
    import fnmatch

    import pyarrow.fs

    from search.store.storage import filesystem

    fs, path = filesystem(str(location))
    found = fs.get_file_info(pyarrow.fs.FileSelector(path, allow_not_found=True))
    return sorted(f.base_name for f in found
                  if f.type == pyarrow.fs.FileType.File and any(fnmatch.fnmatch(f.base_name, p) for p in _STATE_FILES))


def _read(location: str | Path, name: str) -> bytes | None:
    from search.store.storage import join, read_bytes

    return read_bytes(join(str(location), name))


def _complete(data: bytes) -> bool:
    """A state file Ray Tune finished writing: a pickle (whatever its name says) whose opcodes run
    to its STOP, read without executing anything, or JSON that parses."""
    import pickletools

    try:
        if data[:1] == b"\x80":  # a pickle's protocol opcode
            for _ in pickletools.genops(data):
                pass
        else:
            json.loads(data)
        return True
    except Exception:  # noqa: BLE001 (any decoding error means torn)
        return False


def backup_tune_state(source: str | Path, backup: str | Path) -> None:
    """Copy Ray Tune's state files from the local folder `source` to the local folder `backup`
    when all are complete. Tune rewrites them in place, and uploads them to the storage path in
    the background: a disk that fills mid-write, or a driver killed mid-upload, tears the only
    copy, and `Tuner.restore` then fails. Each copy is atomic, so a failed one leaves the
    previous backup whole."""
    from vae.files import atomic_write_bytes

    names = state_names(source)
    files = {name: _read(source, name) for name in names}
    if not files or not all(_complete(data) for data in files.values()):
        return
    for name, data in files.items():
        atomic_write_bytes(Path(backup) / name, data)


def restore_tune_state(tune_location: str | Path, backup: str | Path) -> str | None:
    """Before a restore: put the local `backup` back into the experiment's Tune folder (a path or
    a URI) when one of its state files is torn, or when the backup is a later snapshot of the
    same driver session (Tune's background upload lags behind its snapshots, most under load, so
    a killed driver's last upload can be older than the copy made here). Returns a notice, or
    None when the folder's state is kept; UsageError when it is torn and there is no backup."""
    from search.store.storage import filesystem, join

    names = state_names(tune_location)
    contents = {name: _read(tune_location, name) for name in names}
    torn = [name for name, data in contents.items() if not _complete(data)]
    saved = state_names(backup) if Path(backup).is_dir() else []
    if torn and not saved:
        raise UsageError(
            f"Ray Tune's state file {join(str(tune_location), torn[0])} is incomplete (an interrupted write) and "
            f"there is no backup in {backup}; the experiment cannot be resumed"
        )
    if not torn and not _later(saved, backup, contents):
        return None
    for name in names:
        fs, path = filesystem(join(str(tune_location), name))
        fs.delete_file(path)
    for name in saved:
        fs, path = filesystem(join(str(tune_location), name))
        with fs.open_output_stream(path) as handle:
            handle.write((Path(backup) / name).read_bytes())
    if not torn:
        return (
            f"Ray Tune's state: its local copy in {backup} was a later snapshot than the uploaded one; resuming from it"
        )
    return (f"Ray Tune's state ({', '.join(torn)}) was cut short by an interrupted write; restored its last complete "
            f"copy from {backup} (trials finished after it report again from their checkpoints)")


def _later(saved: list[str], backup: str | Path, contents: dict[str, bytes]) -> bool:
    """Whether the backup's experiment state is a later snapshot of the newest session in `contents`
    (the same file name, so the same driver session, and more steps of Tune's loop)."""
    sessions = sorted(name for name in contents if name.startswith("experiment_state-"))
    if not sessions or sessions[-1] not in saved:
        return False
    try:
        ours = json.loads((Path(backup) / sessions[-1]).read_bytes())["runner_data"]["_iteration"]
        theirs = json.loads(contents[sessions[-1]])["runner_data"]["_iteration"]
        return int(ours) > int(theirs)
    except (KeyError, TypeError, ValueError):  # a format this code does not know: keep Tune's own
        return False


def refuse_earlier_layout(experiment: Experiment) -> None:
    """UsageError when the unfinished experiment's Ray Tune state was saved by a vae-search from
    before the `search.engine` layout: Tune pickled the searcher and the callbacks by their old
    module paths, so `Tuner.restore` cannot load them (and their state differs)."""
    try:
        pickled = _read(experiment.tune_location, "tuner.pkl")
    except OSError:  # a store that cannot be read: Tuner.restore says what is wrong
        return
    if pickled is None:  # no Tune state yet: a run stopped before Ray Tune started
        return
    if b"search.searcher" in pickled and b"search.engine" not in pickled:
        raise UsageError(f"{experiment.path} was started by an earlier vae-search (before search.engine) and cannot be "
                         "resumed by this one; start a new run")


def state_backup(path: str | Path, storage_uri: str | None) -> Path:
    """Where the driver of the experiment at `path` keeps its copy of Ray Tune's state files: a
    local folder in any case (beside Tune's own files, or beside the driver's with a cloud URI)."""
    return (
        Path(path) / f".{TUNE_DIR}-{STATE_BACKUP.lstrip('.')}" if storage_uri else Path(path) / TUNE_DIR / STATE_BACKUP
    )


def prune_checkpoints(location: str) -> None:
    """Delete all but each trial's latest checkpoint (when the run is done)."""
    from search.store.storage import delete_dir, subdirs

    for trial in subdirs(location, "trial_"):
        for old in subdirs(trial, "checkpoint_")[:-1]:
            delete_dir(old)


def referenced_checkpoints(state: bytes | None) -> dict[str, int] | None:
    """Trial id -> the newest checkpoint index (`checkpoint_NNNNNN`) that a Ray Tune experiment
    state file refers to; None when the file is missing or torn. Tune keeps each trial's
    checkpoint list in a cloudpickled blob (hex in the JSON): its paths are searched as bytes,
    never unpickled."""
    import re

    if not state or not _complete(state):
        return None
    found: dict[str, int] = {}
    for trial in json.loads(state).get("trial_data", []):
        try:
            trial_id = json.loads(trial[0])["trial_id"]
            blob = bytes.fromhex(json.loads(trial[1])["checkpoint_manager"]["value"])
        except (KeyError, IndexError, TypeError, ValueError):
            return None  # a format this code does not know: prune nothing
        indices = [int(m) for m in re.findall(rb"checkpoint_(\d{6})", blob)]
        if indices:
            found[trial_id] = max(indices)
    return found


def _newest_references(folder: str | Path) -> dict[str, int] | None:
    names = [name for name in state_names(folder) if name.startswith("experiment_state-")]
    return referenced_checkpoints(_read(folder, names[-1])) if names else None


def prune_superseded(location: str | Path, backup: str | Path, pruned: dict[str, int] | None = None) -> int:
    """While the run works: delete each trial's checkpoints older than the newest one that every
    saved copy of Ray Tune's state refers to (the uploaded one in `location` and the driver's
    `backup`, either of which `resume` may restore from). What a restore can ask for is never
    deleted, and a trial keeps about two checkpoints instead of one per epoch. Returns how many
    were deleted; deletes nothing when either copy is missing or torn. `pruned` (trial id -> the
    index pruned up to, updated here) skips the trials with no newer checkpoint since the last
    call, so a bucket is listed once per new checkpoint, not once per trial and call."""
    from search.store.storage import basename, delete_dir, join, subdirs

    snapshots = [_newest_references(location), _newest_references(backup) if Path(backup).is_dir() else None]
    if any(s is None for s in snapshots):
        return 0
    deleted = 0
    for trial_id in set(snapshots[0]) & set(snapshots[1]):
        keep_from = min(s[trial_id] for s in snapshots)
        if pruned is not None:
            if pruned.get(trial_id, 0) >= keep_from:
                continue
            pruned[trial_id] = keep_from
        for old in subdirs(join(str(location), f"trial_{trial_id}"), "checkpoint_"):
            if int(basename(old).removeprefix("checkpoint_")) < keep_from:
                delete_dir(old)
                deleted += 1
    return deleted


def space_needed(experiment: Experiment) -> int:
    """Bytes the rest of the run needs, about: per trial, three checkpoints (weights and Adam's
    two moments, float32, of the largest latent size; a trial keeps about two while it trains,
    `prune_superseded`) and its results, or the largest trial folder so far if that is more;
    times the trials still to finish (at least the minimum the run will have)."""
    from vae.config import ModelConfig
    from vae.model import ConvVAE

    config = experiment.config
    model = ConvVAE(
        ModelConfig(latent_dim=max(config.latent_dims), channels=config.channels, hidden_dim=config.hidden_dim)
    )
    estimate = min(config.epochs, 3) * 3 * 4 * sum(p.numel() for p in model.parameters()) + 100_000
    folders = [t for t in (experiment.path / TUNE_DIR).glob("trial_*") if t.is_dir()]
    largest = max((sum(f.stat().st_size for f in t.rglob("*") if f.is_file()) for t in folders), default=0)
    finished = sum(
        1 for t in folders if (t / "result.json").is_file() and '"done": true' in (t / "result.json").read_text()
    )
    remaining = max(1, config.trials + config.seeds * len(config.latent_dims) - finished)
    return int(max(estimate, largest) * remaining)
