"""--storage on an S3-protocol server: a bucket that does not answer. (A whole run on one,
stopped, killed, resumed and analyzed, is the experiment of test_session.py. The endpoint is
given in the URI's query string, pyarrow's documented way for S3-compatible stores.)"""

from tests.search.helpers import free_port, main_cli

BUCKET = "vae-bucket"


def test_an_unreachable_bucket_fails_fast_with_one_line(tmp_path, monkeypatch):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    port = free_port()  # nothing listens there
    uri = f"s3://{BUCKET}/runs?endpoint_override=127.0.0.1:{port}&scheme=http&connect_timeout=1&request_timeout=2"
    result = main_cli("run", "--preset", "smoke", "--storage", uri, "--name", "nowhere", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vae-search: error: --storage"), result.stderr[-2000:]
    assert not (tmp_path / "results" / "nowhere").exists()
