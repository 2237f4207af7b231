"""The racing state (`search.store.race`): what race.json holds and reads back."""

import json

from analysis.racing import assess
from search.store.race import RaceState, read_race


def _race():
    return assess({5: [20.0, 20.2, 19.9], 10: [21.0, 21.3, 21.1]}, rule="tolerance", tolerance_db=0.3, seed=0)


def test_race_json_reads_back_the_state_that_wrote_it(tmp_path):
    state = RaceState().advanced("seeds").assessed(_race(), 0.9).finished("confidence")
    state.write(tmp_path / "race.json")
    back = read_race(tmp_path / "race.json")
    assert back.to_dict() == state.to_dict()
    assert (back.stage, back.latent_dim, back.stop_reason, back.target) == ("done", 10, "confidence", 0.9)
    assert back.race.n_trials == {5: 3, 10: 3} and back.race.mean[10] == state.race.mean[10]


def test_a_missing_torn_or_foreign_file_reads_as_the_initial_state(tmp_path):
    assert read_race(tmp_path / "nope.json") == RaceState()
    (tmp_path / "torn.json").write_text('{"stage": "rac')
    assert read_race(tmp_path / "torn.json") == RaceState()
    (tmp_path / "list.json").write_text("[1, 2]")
    assert read_race(tmp_path / "list.json") == RaceState()


def test_the_stage_never_goes_back_and_a_state_without_decision_has_none():
    state = RaceState().advanced("racing")
    assert state.advanced("seeds") is state and state.stage == "racing"
    assert (state.latent_dim, state.confidence) == (None, None)
    assert json.loads(json.dumps(state.to_dict())) == {"stage": "racing", "updated_at": state.updated_at}


def test_why_racing_stopped_in_words():
    state = RaceState().assessed(_race(), 0.9)
    assert state.finished("confidence").reason_words().startswith("confidence ") and "target 0.90" in \
        state.finished("confidence").reason_words()
    assert "--max-seeds" in state.finished("max-seeds").reason_words()
    assert "--max-trials" in state.finished("budget").reason_words()
