"""--storage values that cannot work fail fast (the cloud path end to end: test_s3_storage.py)."""

import pytest

from tests.search.helpers import run_cli

pytestmark = pytest.mark.slow  # real Ray or the command line end to end


def test_unknown_storage_scheme_is_a_clear_error(tmp_path):
    result = run_cli("run", "--preset", "smoke", "--storage", "nosuchfs://bucket/x", "--name", "n", cwd=tmp_path)
    assert result.returncode == 2 and "--storage" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "results").exists()
