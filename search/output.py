"""Output folders written all at once (build in a hidden sibling, rename into place), and the
small files a run leaves for other commands to read."""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Iterator

from vae.errors import UsageError


def default_name(prefix: str) -> str:
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"


def check_new(path: Path) -> None:
    if path.exists():
        raise UsageError(f"{path} already exists; choose another name (nothing was overwritten)")


@contextlib.contextmanager
def new_folder(path: Path) -> Iterator[Path]:
    """Yield a temporary folder that becomes `path` only if the block succeeds."""
    check_new(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        yield tmp
        tmp.rename(path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def read_race(path: str | Path) -> dict:
    """The racing state a run wrote (`race.json`); empty when there is none yet."""
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
