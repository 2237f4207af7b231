"""Where Ray Tune keeps an experiment: a local (or shared) folder, or a cloud URI such as
s3://bucket/prefix or gs://bucket/prefix, through pyarrow's filesystems as Ray Tune does."""

from __future__ import annotations

from pathlib import Path


def is_uri(location: str) -> bool:
    return "://" in location


def _fs(location: str):
    import pyarrow.fs

    if is_uri(location):
        return pyarrow.fs.FileSystem.from_uri(location)
    return pyarrow.fs.LocalFileSystem(), str(Path(location).resolve())


def is_dir(location: str) -> bool:
    import pyarrow.fs

    fs, path = _fs(location)
    return fs.get_file_info(path).type == pyarrow.fs.FileType.Directory


def subdirs(location: str, prefix: str) -> list[str]:
    """Full locations (URIs for a URI) of the sub-folders of `location` whose names start with `prefix`."""
    import pyarrow.fs

    fs, path = _fs(location)
    if fs.get_file_info(path).type != pyarrow.fs.FileType.Directory:
        return []
    found = fs.get_file_info(pyarrow.fs.FileSelector(path, recursive=False))
    names = sorted(info.base_name for info in found if info.type == pyarrow.fs.FileType.Directory and info.base_name.startswith(prefix))
    return [f"{location.rstrip('/')}/{name}" for name in names]


def delete_dir(location: str) -> None:
    fs, path = _fs(location)
    fs.delete_dir(path)


def as_location(reference: str, fs_path: str) -> str:
    """A path inside the filesystem of `reference`, as a location of the same kind."""
    if not is_uri(reference):
        return fs_path
    scheme = reference.split("://", 1)[0]
    return f"{scheme}://{fs_path.lstrip('/')}" if scheme != "file" else f"file://{fs_path}"


def copy(source: str, destination: str) -> None:
    """Copy a folder between a local path and a location (either direction), recursively."""
    import pyarrow.fs

    pyarrow.fs.copy_files(source if is_uri(source) else str(Path(source).resolve()),
                          destination if is_uri(destination) else str(Path(destination).resolve()))
