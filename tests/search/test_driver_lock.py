"""One driver per experiment (a real flock, a real killed process) and the torn-journal repair
(a real Optuna journal)."""

import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest

from search.engine.study import STUDY_NAME, journal_storage
from search.store.files import LOCK_FILE
from search.store.lock import hold, holder, refuse_if_running, repair_journal
from vae.errors import UsageError


def test_the_holder_is_known_while_it_holds_and_forgotten_after(tmp_path):
    assert holder(tmp_path) is None
    with hold(tmp_path):
        who = holder(tmp_path)
        assert who["pid"] == os.getpid() and who["host"] and time.time() - who["since"] < 60
        with pytest.raises(
            UsageError, match=rf"is running: driver pid {os.getpid()} on .* since .*vae-search status {tmp_path}"
        ):
            refuse_if_running(tmp_path)
        with pytest.raises(UsageError, match="is running"), hold(tmp_path):
            pass
    assert holder(tmp_path) is None  # the file stays, the lock does not
    assert (tmp_path / LOCK_FILE).is_file()


def test_a_killed_driver_does_not_block(tmp_path):
    code = ("import sys, time\nfrom search.store.lock import hold\n"
            "with hold(sys.argv[1]):\n    print('HELD', flush=True)\n    time.sleep(600)")
    process = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "HELD"
        assert holder(tmp_path)["pid"] == process.pid
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert holder(tmp_path) is None
    with hold(tmp_path):  # taken over at once
        assert holder(tmp_path)["pid"] == os.getpid()


def _journal(tmp_path, n_trials=3):
    path = tmp_path / "optuna.journal"
    study = optuna.create_study(study_name=STUDY_NAME, storage=journal_storage(path), direction="maximize")
    for i in range(n_trials):
        study.add_trial(optuna.trial.create_trial(params={"x": float(i)},
                                                  distributions={"x": optuna.distributions.FloatDistribution(0, 10)},
                                                  value=float(i)))
    return path


def test_a_whole_journal_is_left_alone(tmp_path):
    path = _journal(tmp_path)
    before = path.read_bytes()
    assert repair_journal(path) is None and path.read_bytes() == before
    assert repair_journal(tmp_path / "missing.journal") is None


def test_a_torn_last_record_is_moved_aside_and_the_study_goes_on(tmp_path):
    path = _journal(tmp_path)
    whole = path.read_bytes()
    torn = b'{"op_code": 5, "worker_id": "dead", "trial_id": 3, "state": 1, "val'
    path.write_bytes(whole + torn)  # a driver killed mid-append
    notice = repair_journal(path)
    assert notice.startswith("optuna.journal: its last record was cut short") and f"({len(torn)} bytes" in notice
    assert path.read_bytes() == whole
    (aside,) = tmp_path.glob("optuna.journal.torn-*")
    assert aside.read_bytes() == torn and aside.name in notice
    study = optuna.load_study(study_name=STUDY_NAME, storage=journal_storage(path))
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 10)})
    study.tell(trial, 5.0)  # appends after the cut: the journal reads back whole
    again = optuna.load_study(study_name=STUDY_NAME, storage=journal_storage(path))
    assert [t.value for t in again.trials] == [0.0, 1.0, 2.0, 5.0]


def test_a_torn_record_breaks_optuna_without_the_repair(tmp_path):
    # what the repair is for: the next append glues a record to the fragment
    path = _journal(tmp_path)
    path.write_bytes(path.read_bytes() + b'{"op_code": 5, "trial_id": 3, "st')
    with pytest.raises(Exception):  # noqa: B017 (JSONDecodeError, AttributeError: Optuna's, by version)
        study = optuna.load_study(study_name=STUDY_NAME, storage=journal_storage(path))
        trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 10)})
        study.tell(trial, 5.0)
        assert len(optuna.load_study(study_name=STUDY_NAME, storage=journal_storage(path)).trials) == 4


def test_a_file_that_is_not_a_journal_is_refused(tmp_path):
    path = tmp_path / "optuna.journal"
    path.write_text("trial_id,value\n1,2.0\n")
    with pytest.raises(UsageError, match="is not an Optuna journal"):
        repair_journal(path)
    assert path.read_text() == "trial_id,value\n1,2.0\n"  # nothing changed


def test_a_torn_tune_state_is_put_back_from_its_last_complete_copy(tmp_path):
    import pickle

    from search.store.tune_files import STATE_BACKUP, backup_tune_state, restore_tune_state

    tune_dir = tmp_path / "tune"
    tune_dir.mkdir()
    state = tune_dir / "experiment_state-2026-01-01_00-00-00.json"
    searcher = tune_dir / "searcher-state-2026-01-01_00-00-00.pkl"
    state.write_text(json.dumps({"trials": ["a", "b"]}))
    searcher.write_bytes(pickle.dumps({"stage": "seeds"}))
    backup = tune_dir / STATE_BACKUP
    assert restore_tune_state(tune_dir, backup) is None  # whole: nothing to do
    with pytest.raises(UsageError, match="no backup"):
        state.write_text('{"trials": ["a", "b')
        restore_tune_state(tune_dir, backup)
    state.write_text(json.dumps({"trials": ["a", "b"]}))
    backup_tune_state(tune_dir, backup)
    state.write_text('{"trials": ["a", "b", "c')  # a disk that filled mid-write
    backup_tune_state(tune_dir, backup)  # a torn state is never backed up over a whole one
    notice = restore_tune_state(tune_dir, backup)
    assert state.name in notice and STATE_BACKUP in notice
    assert json.loads(state.read_text()) == {"trials": ["a", "b"]} and pickle.loads(searcher.read_bytes()) == {
        "stage": "seeds"
    }


def test_a_later_local_snapshot_of_the_same_session_wins_over_a_lagging_upload(tmp_path):
    from search.store.tune_files import backup_tune_state, restore_tune_state

    tune_dir, backup = tmp_path / "tune", tmp_path / "backup"
    tune_dir.mkdir()
    state = tune_dir / "experiment_state-2026-01-01_00-00-00.json"
    state.write_text(json.dumps({"runner_data": {"_iteration": 40}, "trial_data": ["a"]}))
    backup_tune_state(tune_dir, backup)
    assert restore_tune_state(tune_dir, backup) is None  # the same snapshot: nothing to do
    state.write_text(json.dumps({"runner_data": {"_iteration": 90}, "trial_data": ["a", "b"]}))
    backup_tune_state(tune_dir, backup)
    state.write_text(json.dumps({"runner_data": {"_iteration": 60}, "trial_data": ["a"]}))  # the upload lags
    assert "later snapshot" in restore_tune_state(tune_dir, backup)
    assert json.loads(state.read_text())["trial_data"] == ["a", "b"]
    # a newer session in the folder: its own state is kept, whatever an older session's copy says
    newer = tune_dir / "experiment_state-2026-01-02_00-00-00.json"
    newer.write_text(json.dumps({"runner_data": {"_iteration": 5}, "trial_data": ["c"]}))
    assert restore_tune_state(tune_dir, backup) is None and newer.exists()

