"""The search stage's Optuna study alone (search.engine.study), on a real journal file: the
enqueued sizes first, TPE after them with no random sampling, what it is told for each outcome,
and the orphans a restart closes."""

import math

import optuna

from search.engine.study import STUDY_NAME, SearchStudy, journal_storage


def _study(tmp_path, **kwargs):
    return SearchStudy(tmp_path / "optuna.journal", seed=0, latent_dims=(2, 8), lr_range=(1e-3, 1e-2), **kwargs)


def test_every_size_is_enqueued_first_then_tpe_proposes_without_random_sampling(tmp_path):
    created = []
    study = _study(tmp_path, on_created=lambda: created.append(True))
    random_calls = []
    sampler = study.study.sampler
    original = sampler._random_sampler.sample_independent
    sampler._random_sampler.sample_independent = lambda *a, **k: random_calls.append(a[2]) or original(*a, **k)
    asked = [study.ask() for _ in range(2)]
    assert [a[2] for a in asked] == [2, 8] and all(a[3] == math.sqrt(1e-3 * 1e-2) for a in asked)
    for i, (_, number, _, _) in enumerate(asked):
        study.tell(number, "completed", 10.0 + i)
    for i in range(4):
        _, number, dim, lr = study.ask()
        assert dim in (2, 8) and 1e-3 <= lr <= 1e-2
        study.tell(number, "completed", 11.0 + i)
    assert random_calls == [] and created == [True]  # TPE after the enqueued points; created once
    assert _study(tmp_path, on_created=lambda: created.append(True)).study and created == [True]  # reopened, not new


def test_what_optuna_is_told_for_each_outcome_and_orphans_are_closed(tmp_path):
    study = _study(tmp_path)
    asked = [study.ask() for _ in range(5)]
    study.report(asked[1][0], 9.0, 1)
    for (_, number, _, _), (outcome, value) in zip(asked, [("completed", 12.0), ("stopped", 9.0), ("errored", None),
                                                           ("diverged", 0.0)], strict=False):
        study.tell(number, outcome, value)
    study.close_orphans(known={a[0] for a in asked[:4]})  # the fifth was asked after Tune's last snapshot
    trials = sorted(
        optuna.load_study(study_name=STUDY_NAME, storage=journal_storage(tmp_path / "optuna.journal")).trials,
        key=lambda t: t.number,
    )
    assert [t.state.name for t in trials] == ["COMPLETE", "PRUNED", "FAIL", "COMPLETE", "FAIL"]
    assert trials[1].intermediate_values == {1: 9.0} and trials[3].value == 0.0
