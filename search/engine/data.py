"""The data of a run, loaded once in the driver and shipped to the trials through Ray's object
store: on `run` the data the flags ask for (and what run.json pins of it), on `resume` and
`analyze` exactly the data the run was made on (checked against its SHA-256 `digest`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from search.config import SearchConfig
from vae.errors import UsageError


def data_record(splits, data_dir: str, max_train: int | None) -> dict[str, Any]:
    """What run.json pins: the source used (never `auto`), the folder, the split sizes, a digest."""
    from vae import digest

    return {
        "source": splits.source,
        "data_dir": str(Path(data_dir).expanduser().resolve()),
        "max_train": max_train,
        "sizes": {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)},
        "digest": digest(splits),
    }


def load_splits(config: SearchConfig, *, pinned: dict[str, Any] | None = None):
    """Load the data once in the driver. With `pinned` (run.json), exactly the data the
    experiment was run on, or UsageError."""
    from vae import DataConfig, DataError, digest, load_data

    if pinned is None:
        splits = load_data(DataConfig(dataset=config.dataset, data_dir=config.data_dir, max_train=config.max_train))
        if splits.notice:
            print(f"notice: {splits.notice}", flush=True)
        record = data_record(splits, config.data_dir, config.max_train)
    else:
        record = pinned.get("data") or {"source": pinned.get("source", config.dataset), "data_dir": config.data_dir}
        try:
            # never `auto` and never a download on resume: the files the run used, or nothing
            splits = load_data(
                DataConfig(dataset=record["source"], data_dir=record["data_dir"], max_train=config.max_train),
                download=False,
            )
        except DataError as exc:
            raise UsageError(
                f"the experiment's data ({record['source']} in {record['data_dir']}) cannot be loaded: {exc}"
            ) from None
        if record.get("digest") and digest(splits) != record["digest"]:
            raise UsageError(
                f"the {record['source']} data in {record['data_dir']} no longer matches the experiment (digest "
                "differs); "
                "restore those files, or start a new run"
            )
    print(
        f"data: {splits.source} ({len(splits.train)} train / {len(splits.val)} validation / {len(splits.test)} test)",
        flush=True,
    )
    return splits, record
