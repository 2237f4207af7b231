"""Ray Tune's own files in the experiment (`EXPERIMENT/tune`): a backup of its state files,
the checkpoints kept, and the space the rest of a run needs."""

from __future__ import annotations

import json
from pathlib import Path

from analysis.layout import TUNE_DIR
from search.store.record import Experiment
from vae.errors import UsageError

STATE_BACKUP = ".state-backup"  # in EXPERIMENT/tune: the last complete copy of Ray Tune's state files
_STATE_FILES = ("experiment_state-*.json", "search_gen_state-*.json", "searcher-state-*.pkl")


def _state_files(tune_dir: Path) -> list[Path]:
    return sorted(f for pattern in _STATE_FILES for f in tune_dir.glob(pattern))


def _complete(path: Path) -> bool:
    """A state file Ray Tune finished writing: a pickle (whatever its name says) whose opcodes run
    to its STOP, read without executing anything, or JSON that parses."""
    import pickletools

    data = path.read_bytes()
    try:
        if data[:1] == b"\x80":  # a pickle's protocol opcode
            for _ in pickletools.genops(data):
                pass
        else:
            json.loads(data)
        return True
    except Exception:  # noqa: BLE001 (any decoding error means torn)
        return False


def backup_tune_state(tune_dir: str | Path) -> None:
    """Copy Ray Tune's state files to tune/.state-backup when all are complete. Tune rewrites them
    in place: a disk that fills mid-write tears the only copy, and `Tuner.restore` then fails.
    Each copy is atomic, so a failed one leaves the previous backup whole."""
    from vae.files import atomic_write_bytes

    tune_dir = Path(tune_dir)
    files = _state_files(tune_dir)
    if not files or not all(_complete(f) for f in files):
        return
    for f in files:
        atomic_write_bytes(tune_dir / STATE_BACKUP / f.name, f.read_bytes())


def restore_tune_state(tune_dir: str | Path) -> str | None:
    """Before a restore: put the backup back when a state file is torn. Returns a notice, or None
    when the state is whole; UsageError when it is torn and there is no backup."""
    import shutil

    tune_dir = Path(tune_dir)
    torn = [f for f in _state_files(tune_dir) if not _complete(f)]
    if not torn:
        return None
    backup = _state_files(tune_dir / STATE_BACKUP) if (tune_dir / STATE_BACKUP).is_dir() else []
    if not backup:
        raise UsageError(f"Ray Tune's state file {torn[0]} is incomplete (an interrupted write) and there is no backup "
                         f"in {tune_dir / STATE_BACKUP}; the experiment cannot be resumed")
    for f in _state_files(tune_dir):
        f.unlink()
    for f in backup:
        shutil.copy2(f, tune_dir / f.name)
    return (f"Ray Tune's state ({', '.join(f.name for f in torn)}) was cut short by an interrupted write; "
            f"restored its last complete copy from {STATE_BACKUP}/ (trials finished after it report again from their checkpoints)")


def prune_checkpoints(location: str) -> None:
    """Delete all but each trial's latest checkpoint."""
    from search.store.storage import delete_dir, subdirs

    for trial in subdirs(location, "trial_"):
        for old in subdirs(trial, "checkpoint_")[:-1]:
            delete_dir(old)


def space_needed(experiment: Experiment) -> int:
    """Bytes the rest of the run needs, about: per trial, a checkpoint per epoch (weights and
    Adam's two moments, float32, of the largest latent size; all are kept until the run ends)
    and its results, or the largest trial folder so far if that is more; times the trials
    still to finish (at least the minimum the run will have)."""
    from vae.config import ModelConfig
    from vae.model import ConvVAE

    config = experiment.config
    model = ConvVAE(ModelConfig(latent_dim=max(config.latent_dims), channels=config.channels, hidden_dim=config.hidden_dim))
    estimate = config.epochs * 3 * 4 * sum(p.numel() for p in model.parameters()) + 100_000
    folders = [t for t in (experiment.path / TUNE_DIR).glob("trial_*") if t.is_dir()]
    largest = max((sum(f.stat().st_size for f in t.rglob("*") if f.is_file()) for t in folders), default=0)
    finished = sum(1 for t in folders if (t / "result.json").is_file() and '"done": true' in (t / "result.json").read_text())
    remaining = max(1, config.trials + config.seeds * len(config.latent_dims) - finished)
    return int(max(estimate, largest) * remaining)
