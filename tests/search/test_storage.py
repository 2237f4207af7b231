"""--storage as a URI, the way cloud storage is used (s3://, gs://), exercised with file:// here:
Ray Tune writes trials and checkpoints through pyarrow's filesystem, the driver's files are
copied there when run and analyze finish."""

import pandas as pd

from tests.search.helpers import run_cli


def test_run_analyze_resume_with_uri_storage(tmp_path):
    bucket = tmp_path / "bucket"
    work = tmp_path / "work"
    work.mkdir()
    uri = f"file://{bucket}"
    result = run_cli("run", "--preset", "smoke", "--num-cpus", "2", "--storage", uri, "--name", "u", cwd=work)
    assert result.returncode == 0, result.stderr[-3000:]
    local = work / "results" / "u"
    assert result.stdout.strip().splitlines()[-1] == f"experiment: {local}"
    remote = bucket / "u"
    assert (remote / "tune").is_dir()
    assert not (local / "tune").exists()  # Ray Tune wrote to the storage, not the driver's disk
    table = pd.read_csv(local / "trials.csv")
    assert (table["phase"] == "search").sum() == 3 and table["status"].isin(["completed", "stopped"]).all()  # ASHA may stop a search trial
    assert (table.loc[table["phase"] == "seeds", "status"] == "completed").all()
    assert table["checkpoint"].str.startswith(f"file://{remote}/").all()
    assert (remote / "trials.csv").read_text() == (local / "trials.csv").read_text()
    # one checkpoint per trial is kept once the phase ends
    for trial in (remote / "tune").glob("trial_*"):
        assert len(list(trial.glob("checkpoint_*"))) == 1

    analysis = run_cli("analyze", str(local), cwd=work)
    assert analysis.returncode == 0, analysis.stderr[-3000:]
    assert (local / "best_model" / "model.pt").exists() and (remote / "report.html").exists()
    again = run_cli("resume", str(local), cwd=work)
    assert again.returncode == 0, again.stderr[-3000:]
    clash = run_cli("run", "--preset", "smoke", "--storage", uri, "--name", "u", cwd=tmp_path)
    assert clash.returncode == 2 and "already exists" in clash.stderr


def test_unknown_storage_scheme_is_a_clear_error(tmp_path):
    result = run_cli("run", "--preset", "smoke", "--storage", "nosuchfs://bucket/x", "--name", "n", cwd=tmp_path)
    assert result.returncode == 2 and "--storage" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "results").exists()
