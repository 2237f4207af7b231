"""Storage locations (`search.store.storage`): paths and URIs with their query strings, and the
file:// filesystem as Ray Tune uses it (the S3 path end to end: test_session.py); and the store
layer's imports."""

import ast
from pathlib import Path

from search.store.storage import (
    as_location,
    basename,
    copy,
    delete_dir,
    is_dir,
    is_uri,
    join,
    parent,
    subdirs,
    upload_file,
)
from tests.search.helpers import main_cli

QUERY = "s3://bucket/prefix?endpoint_override=127.0.0.1:9000&scheme=http"


def test_a_locations_name_leaves_a_uris_query_out():
    assert (
        basename("s3://bucket/exp/trial_a/checkpoint_000003?endpoint_override=h:9000&scheme=http")
        == "checkpoint_000003"
    )
    assert basename("/tmp/exp/trial_a/checkpoint_000003/") == "checkpoint_000003"


def test_joining_and_parents_keep_a_uris_query_at_the_end():
    assert join(QUERY, "run") == "s3://bucket/prefix/run?endpoint_override=127.0.0.1:9000&scheme=http"
    assert parent(join(QUERY, "run")) == QUERY
    assert join("/data/exp/", "tune") == "/data/exp/tune" and parent("/data/exp/tune") == "/data/exp"
    assert is_uri(QUERY) and not is_uri("/data/exp")


def test_a_path_inside_a_filesystem_becomes_a_location_of_the_same_kind():
    assert (
        as_location(QUERY, "bucket/prefix/run/tune")
        == "s3://bucket/prefix/run/tune?endpoint_override=127.0.0.1:9000&scheme=http"
    )
    assert as_location("file:///x", "/tmp/a") == "file:///tmp/a"
    assert as_location("/x", "/tmp/a") == "/tmp/a"


def test_folders_listed_copied_and_deleted_through_file_uris(tmp_path):
    root = f"file://{tmp_path}/store"
    for name in ("trial_b", "trial_a", "other"):
        (tmp_path / "local" / name).mkdir(parents=True)
    (tmp_path / "local" / "trial_a" / "result.json").write_text("{}")
    copy(str(tmp_path / "local"), root)
    assert subdirs(root, "trial_") == [join(root, "trial_a"), join(root, "trial_b")]
    assert (tmp_path / "store" / "trial_a" / "result.json").read_text() == "{}"
    (tmp_path / "status.json").write_text('{"stage": "seeds"}')
    upload_file(tmp_path / "status.json", join(root, "exp"))
    assert (tmp_path / "store" / "exp" / "status.json").read_text() == '{"stage": "seeds"}'
    delete_dir(join(root, "trial_b"))
    assert not is_dir(join(root, "trial_b")) and is_dir(join(root, "trial_a"))
    assert subdirs(join(root, "missing"), "trial_") == []


def test_unknown_storage_scheme_is_a_clear_error(tmp_path):
    result = main_cli("run", "--preset", "smoke", "--storage", "nosuchfs://bucket/x", "--name", "n", cwd=tmp_path)
    assert result.returncode == 2 and "--storage" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "results").exists()


def test_the_store_layer_imports_no_ray_anywhere():
    # engine/ is the only layer that imports ray, at the top of a module or inside a function;
    # the store reads and writes the experiment's files
    found = []
    for path in sorted((Path(__file__).parents[2] / "search" / "store").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            found += [f"{path.name}: {name}" for name in names if name == "ray" or name.startswith("ray.")]
    assert not found
