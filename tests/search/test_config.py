"""The run's settings (`search.config`): presets, overrides, the flags derived from the fields,
the reproduce command and the TrainConfig a trial gets."""

import dataclasses

import pytest

from search.config import PRESETS, RUN_FLAGS, SearchConfig, resolve
from search.store.record import reproduce_command
from vae.config import TrainConfig
from vae.errors import UsageError


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_resolves_to_a_valid_config(preset):
    config = resolve(preset, {})
    assert config.seeds <= config.max_seeds and config.trials >= len(config.latent_dims)
    assert config.minimum_trials == config.trials + config.seeds * len(config.latent_dims)


def test_flags_override_the_preset_and_none_means_not_given():
    config = resolve("quick", {"epochs": 3, "beta": None, "latent_dims": (4, 6)})
    assert (config.epochs, config.beta, config.latent_dims) == (3, 1.0, (4, 6))
    assert config.max_train == PRESETS["quick"]["max_train"]


def test_more_seeds_than_the_presets_cap_raise_the_cap_unless_it_is_given():
    assert resolve("quick", {"seeds": 7}).max_seeds == 7
    with pytest.raises(UsageError, match="max_seeds"):
        resolve("quick", {"seeds": 7, "max_seeds": 5})


def test_run_json_round_trip_and_unknown_settings_are_refused():
    config = resolve("paper", {"seed": 4, "max_trials": 60})
    assert SearchConfig.from_dict(config.to_dict()) == config
    with pytest.raises(UsageError, match="unknown search setting"):
        SearchConfig.from_dict({**config.to_dict(), "learning_rate": 1})


def test_the_preset_only_settings_are_the_fields_without_a_flag():
    fields = {f.name for f in dataclasses.fields(SearchConfig)}
    assert fields - set(RUN_FLAGS) == {"grace_period", "reduction_factor", "channels", "hidden_dim"}


@pytest.mark.parametrize("preset, overrides", [
    ("smoke", {}),
    ("quick", {"seed": 3, "max_trials": 40, "tolerance_db": 0.25, "rule": "one-se", "num_cpus": 2}),
    ("paper", {"lr_range": (1e-4, 2e-3), "latent_dims": (8, 16, 32), "gpus_per_trial": 0.5, "pending_timeout": 90.5,
               "deterministic": True}),
])
def test_the_reproduce_command_resolves_to_the_same_config(preset, overrides):
    import shlex

    from search.cli import build_parser
    from search.cli.run import search_config

    config = resolve(preset, overrides)
    argv = shlex.split(reproduce_command(config, preset))
    assert argv[:2] == ["vae-search", "run"]
    assert search_config(build_parser().parse_args(argv[1:])) == config


def test_the_trial_template_is_a_trainconfig_with_the_runs_values():
    config = resolve("quick", {"beta": 0.5, "epochs": 3, "cpus_per_trial": 2.0, "lr_schedule": "constant"})
    template = config.train_template({"source": "mnist", "data_dir": "/d"})
    assert TrainConfig.from_dict(template.to_dict()) == template
    assert (template.beta, template.epochs, template.threads, template.lr_schedule) == (0.5, 3, 2, "constant")
    assert not template.deterministic and resolve("quick", {"deterministic": True}).train_template(
        {"source": "mnist", "data_dir": "/d"}).deterministic
    assert (template.model.channels, template.model.hidden_dim) == (config.channels, config.hidden_dim)
    assert (template.data.dataset, template.data.data_dir, template.data.max_train) == ("mnist", "/d", 4000)
