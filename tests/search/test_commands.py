"""Resume of a finished experiment, and bad input to `run` and `resume`
(stops and resumes mid-run: test_session.py)."""

import json
import os
from pathlib import Path

import pytest
import torch

from tests.search.helpers import main_cli

pytestmark = pytest.mark.slow  # real Ray or the command line end to end


def test_resume_of_a_finished_experiment_changes_nothing(smoke):
    path, _ = smoke
    before = {name: (path / name).read_bytes() for name in ("trials.csv", "history.csv", "run.json", "race.json")}
    again = main_cli("resume", str(path))
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.strip().splitlines()[-1] == f"experiment: {path}"
    clash = main_cli("run", "--preset", "smoke", "--storage", str(path.parent), "--name", path.name)
    assert clash.returncode == 2 and "already exists" in clash.stderr
    assert {name: (path / name).read_bytes() for name in before} == before


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--latent-dims", ""], "--latent-dims"),
        (["--latent-dims", "0,5"], "--latent-dims"),
        (["--latent-dims", "-5"], "--latent-dims"),
        (["--latent-dims", "5,5"], "duplicates"),
        (["--latent-dims", "5,x"], "--latent-dims"),
        (["--lr-range", "3e-3,1e-4"], "LOW < HIGH"),
        (["--lr-range", "0,1e-3"], "--lr-range"),
        (["--lr-range", "1e-3"], "LOW,HIGH"),
        (["--beta", "-1"], "--beta"),
        (["--epochs", "0"], "--epochs"),
        (["--trials", "1"], "trials must be at least the number of latent sizes"),
        (["--seeds", "0"], "--seeds"),
        (["--preset", "huge"], "--preset"),
        (["--dataset", "cifar"], "--dataset"),
        (["--scheduler", "pbt"], "--scheduler"),
        (["--cpus-per-trial", "0"], "--cpus-per-trial"),
        (["--cpus-per-trial", "4", "--num-cpus", "2"], "must not exceed"),
        (["--gpus-per-trial", "1.5"], "--gpus-per-trial"),
        (["--gpus-per-trial", "2"], "--gpus-per-trial"),  # a trial uses one device: a whole 2 would idle one
        (["--gpus-per-trial", "-1"], "--gpus-per-trial"),
        (["--name", "a/b"], "--name"),
        (["--seeds", "3", "--max-seeds", "2"], "max_seeds (2) must be at least seeds (3)"),
        (["--confidence", "1.5"], "confidence must be between 0 and 1"),
        (["--confidence", "0"], "--confidence"),
        (["--max-trials", "4"], "max_trials must be at least"),
        (["--rule", "vibes"], "--rule"),
        (["--metric", "ssim"], "--metric"),
        (["--tolerance-nats", "-1"], "--tolerance-nats"),
        (["--iw-samples", "0"], "--iw-samples"),
        (["--iw-images", "1.5"], "--iw-images"),
        (["--cpus-per-trial", str((os.cpu_count() or 1) + 1)], "the local Ray has"),
        pytest.param(["--gpus-per-trial", "0.5"], "this machine's GPU cannot be used",
                     marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine's torch can use CUDA")),
        (["--storage", "nosuchfs://bucket/x"], "--storage"),
        (["--address", "127.0.0.1:1"], "cannot reach the Ray cluster"),
        (["--address", "nonsense"], "--address"),
    ],
)
def test_run_rejects_bad_input_before_writing_anything(tmp_path, args, needle):
    result = main_cli("run", "--preset", "smoke", "--storage", str(tmp_path / "store"), *args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vae-search: error:") and needle in lines[0], result.stderr
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize("make", ["missing", "not-an-experiment", "corrupt", "earlier-release", "earlier-layout"])
def test_resume_rejects_what_is_not_an_experiment(tmp_path, make):
    target = tmp_path / "x"
    if make != "missing":
        target.mkdir()
    if make == "corrupt":
        (target / "run.json").write_text("{half")
    if make == "earlier-release":  # half-done by the two-phase release: not resumable, said so
        from search.config import SearchConfig

        (target / "run.json").write_text(json.dumps({"config": SearchConfig().to_dict(), "phases_done": ["search"]}))
    if make == "earlier-layout":  # stopped mid-run by a release whose Tune state names search.searcher
        import pickle

        from search.config import SearchConfig

        (target / "run.json").write_text(json.dumps({"config": SearchConfig().to_dict(), "done": False}))
        (target / "tune").mkdir()
        (target / "tune" / "tuner.pkl").write_bytes(pickle.dumps({"search_alg": ("search.searcher", "StagedSearcher")}))
    before = sorted(p.name for p in target.iterdir()) if target.exists() else None
    result = main_cli("resume", str(target))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert {"missing": "does not exist", "not-an-experiment": "not a vae-search experiment", "corrupt": "corrupt",
            "earlier-release": "earlier vae-search", "earlier-layout": "before search.engine"}[make] in result.stderr
    assert (sorted(p.name for p in target.iterdir()) if target.exists() else None) == before


@pytest.mark.parametrize("flag", ["--storage", "--data-dir"])
def test_a_storage_or_data_folder_that_is_a_file_is_refused_before_ray_starts(tmp_path, flag):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    args = ["run", "--preset", "quick", flag, str(blocker)]
    if flag == "--data-dir":
        args += ["--storage", str(tmp_path / "store")]
    result = main_cli(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and flag in lines[0] and "is a file" in lines[0]
    assert blocker.read_text() == "not a folder" and not (tmp_path / "store").exists()


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
@pytest.mark.parametrize("flag", ["--storage", "--data-dir"])
def test_a_folder_that_cannot_be_made_there_is_refused_before_ray_starts(tmp_path, flag):
    # /proc takes no new folder, even from root, for whom the permission bits say yes
    args = ["run", "--preset", "quick", flag, "/proc/vae-search"]
    if flag == "--data-dir":
        args += ["--storage", str(tmp_path / "store")]
    result = main_cli(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"vae-search: error: {flag} /proc/vae-search cannot be ")
    assert not (tmp_path / "store").exists() and not (tmp_path / "results").exists()


def test_an_experiment_from_before_the_schedule_setting_keeps_training_at_a_constant_rate(tmp_path):
    """Resuming a run whose run.json predates `lr_schedule` must not switch its remaining
    trials to the new default (that would mix two recipes in one comparison)."""
    from search.config import SearchConfig
    from search.engine.experiment import trial_template
    from search.store.record import Experiment

    values = SearchConfig().to_dict()
    del values["lr_schedule"]
    (tmp_path / "run.json").write_text(json.dumps({"config": values, "done": False}))
    experiment = Experiment.open(tmp_path)
    assert experiment.config.lr_schedule == "constant"
    assert (
        trial_template(experiment.config, {"source": "sample", "data_dir": "data"})["train"]["lr_schedule"]
        == "constant"
    )
    assert SearchConfig().lr_schedule == "onecycle"  # what a new run gets
