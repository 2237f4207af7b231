"""Folders written all at once: built in a hidden sibling and renamed into place, so an
interrupted command never leaves a half-written folder under the name the user asked for."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from vae.errors import UsageError


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
