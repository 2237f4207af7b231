"""Where Ray Tune keeps an experiment: a local (or shared) folder, or a cloud URI such as
s3://bucket/prefix or gs://bucket/prefix, through pyarrow's filesystems as Ray Tune does.

A URI may carry options in its query string, as pyarrow documents for S3-compatible stores
(`s3://bucket/prefix?endpoint_override=HOST:PORT&scheme=http`): paths join before the query,
and every location derived from a URI keeps its query.
"""

from __future__ import annotations

from pathlib import Path

STORAGE_CHECK_TIMEOUT_S = 30.0


def is_uri(location: str) -> bool:
    return "://" in location


def join(location: str, name: str) -> str:
    """`location/name`, keeping a URI's query string at the end."""
    base, sep, query = location.partition("?")
    return f"{base.rstrip('/')}/{name}{sep}{query}"


def basename(location: str) -> str:
    """The last name of `location`'s path (a URI's query string is not part of it)."""
    return location.partition("?")[0].rstrip("/").rsplit("/", 1)[-1]


def parent(location: str) -> str:
    base, sep, query = location.partition("?")
    return f"{base.rstrip('/').rsplit('/', 1)[0]}{sep}{query}"


def filesystem(location: str):
    """(pyarrow filesystem, path inside it) for a local path or a URI."""
    import pyarrow.fs

    if is_uri(location):
        return pyarrow.fs.FileSystem.from_uri(location)
    return pyarrow.fs.LocalFileSystem(), str(Path(location).resolve())


def is_file(location: str) -> bool:
    """Whether a file is at `location` (a path or a URI), without reading it."""
    import pyarrow.fs

    fs, path = filesystem(location)
    return fs.get_file_info(path).type == pyarrow.fs.FileType.File


def read_bytes(location: str) -> bytes | None:
    """The contents of the file at `location` (a path or a URI), or None when no file is there."""
    import pyarrow.fs

    fs, path = filesystem(location)
    if fs.get_file_info(path).type != pyarrow.fs.FileType.File:
        return None
    with fs.open_input_stream(path) as handle:
        return handle.read()


def is_dir(location: str) -> bool:
    import pyarrow.fs

    fs, path = filesystem(location)
    return fs.get_file_info(path).type == pyarrow.fs.FileType.Directory


def subdirs(location: str, prefix: str) -> list[str]:
    """Full locations (URIs for a URI) of the sub-folders of `location` whose names start with `prefix`."""
    import pyarrow.fs

    fs, path = filesystem(location)
    if fs.get_file_info(path).type != pyarrow.fs.FileType.Directory:
        return []
    found = fs.get_file_info(pyarrow.fs.FileSelector(path, recursive=False))
    names = sorted(
        info.base_name
        for info in found
        if info.type == pyarrow.fs.FileType.Directory and info.base_name.startswith(prefix)
    )
    return [join(location, name) for name in names]


def delete_dir(location: str) -> None:
    fs, path = filesystem(location)
    fs.delete_dir(path)


def as_location(reference: str, fs_path: str) -> str:
    """A path inside the filesystem of `reference`, as a location of the same kind (with its query)."""
    if not is_uri(reference):
        return fs_path
    scheme = reference.split("://", 1)[0]
    _, sep, query = reference.partition("?")
    if scheme == "file":
        return f"file://{fs_path}{sep}{query}"
    return f"{scheme}://{fs_path.lstrip('/')}{sep}{query}"


def copy(source: str, destination: str) -> None:
    """Copy a folder between a local path and a location (either direction), recursively."""
    import pyarrow.fs

    pyarrow.fs.copy_files(source if is_uri(source) else str(Path(source).resolve()),
                          destination if is_uri(destination) else str(Path(destination).resolve()))


def check_new_location(uri: str, *, timeout_s: float = STORAGE_CHECK_TIMEOUT_S) -> None:
    """Raise UsageError unless the store answers within `timeout_s` and `uri` does not exist yet."""
    from concurrent.futures import ThreadPoolExecutor
    from concurrent.futures import TimeoutError as FutureTimeout

    from vae.errors import UsageError

    where = parent(uri)
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        taken = pool.submit(is_dir, uri).result(timeout=timeout_s)
    except FutureTimeout:
        raise UsageError(
            f"--storage {where}: no answer within {timeout_s:g} s (is the bucket or endpoint reachable?)"
        ) from None
    except Exception as exc:  # unknown scheme, missing credentials, unreachable bucket
        raise UsageError(f"--storage {where}: {' '.join(str(exc).split())[:300]}") from None
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    if taken:
        raise UsageError(f"{uri} already exists; choose another --name (nothing was overwritten)")


def upload_file(path: str | Path, location: str) -> None:
    """Copy one local file into the folder at `location` (a URI), keeping its name."""
    import pyarrow.fs

    fs, folder = pyarrow.fs.FileSystem.from_uri(location)
    fs.create_dir(folder, recursive=True)  # a no-op on object stores; needed on file://
    with fs.open_output_stream(f"{folder.rstrip('/')}/{Path(path).name}") as handle:
        handle.write(Path(path).read_bytes())
