"""Property-based: random flag values and combinations for every subcommand's parser and the
config layer behind it (no Ray is started). Every input ends in a valid config or in the
one-line UsageError that names a flag or value the user gave, never in another exception."""

import argparse
import shlex

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from search.cli import build_parser
from search.cli.run import search_config as run_config
from search.cli.train import train_config
from search.config import RUN_FLAGS as SETTINGS
from search.config import SearchConfig
from vae.config import TrainConfig
from vae.errors import UsageError

NUMBERS = st.one_of(
    st.integers(-5, 50).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", "0", "1e-3", "3e-3", "nan", "inf", "-inf", "1.5", "0.25", "1,2", "5,10,15", "1e-4,3e-3",
                     "3e-3,1e-4", "2,2", "x", "0x10", " 7 ", "1_000", "1e400"]),
    st.text(max_size=8),
)

RUN_FLAGS = ["--preset"] + ["--" + name.replace("_", "-") for name in SETTINGS if name != "data_dir"]
TRAIN_FLAGS = [
    "--latent-dim",
    "--lr",
    "--beta",
    "--epochs",
    "--batch-size",
    "--max-train",
    "--seed",
    "--threads",
    "--dataset",
]
CHOICES = {"--preset": ["smoke", "quick", "paper", "huge"], "--dataset": ["auto", "mnist", "sample", "cifar"],
           "--rule": ["one-se", "tolerance", "knee", "vibes"], "--scheduler": ["asha", "fifo", "pbt"]}


SUBCOMMANDS = build_parser()._subparsers._group_actions[0].choices  # name -> its parser
# flags that take no value (store_true), as the parser declares them
SWITCHES = {flag for parser in SUBCOMMANDS.values() for action in parser._actions if action.nargs == 0
            for flag in action.option_strings}


def _value(flag):
    if flag in SWITCHES:
        return st.none()
    return st.sampled_from(CHOICES[flag]) if flag in CHOICES else NUMBERS


def _argv(command, flags):
    pairs = st.lists(st.sampled_from(flags).flatmap(lambda f: st.tuples(st.just(f), _value(f))), max_size=6)
    return pairs.map(lambda ps: [command] + [part for pair in ps for part in pair if part is not None])


def _outcome(argv):
    """The config the CLI would build from `argv`, or the UsageError it would print."""
    try:
        args = build_parser().parse_args(argv)
        if args.command == "run":
            return run_config(args)
        if args.command == "train":
            return train_config(args)
        return args
    except UsageError as exc:
        message = " ".join(str(exc).split())
        assert message, "an empty error message"
        # the line names what the user got wrong: one of the flags given (as typed or as its
        # setting's name) or one of the values
        flags = [t for t in argv if t.startswith("-")]
        names = (
            set(flags) | {t.lstrip("-").replace("-", "_") for t in flags} | {t[:2] for t in flags if t[1:2] != "-"}
        )  # -h2 is -h 2
        values = {t.strip() for t in argv if t.strip()} | {shlex.quote(t) for t in argv if not t.strip()}
        assert any(n and n in message for n in names) or any(v in message for v in values), message
        return exc


def test_every_run_flag_is_a_setting_and_every_setting_a_flag():
    run = SUBCOMMANDS["run"]
    flags = {a.dest for a in run._actions if a.option_strings and a.dest != "help"}
    assert flags - {"preset", "address", "storage", "name"} == set(SETTINGS)


settings.register_profile("cli", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@settings(settings.get_profile("cli"))
@given(_argv("run", RUN_FLAGS))
@example(["run", "--seeds", "5"])  # above the preset's --max-seeds: the cap follows
@example(["run", "--confidence", "1"])
@example(["run", "--max-seeds", "1"])  # below the preset's --seeds
@example(["run", "--latent-dims", "1e400"])
@example(["run", "--lr-range", "nan,1"])
@example(["run", "--trials", "1", "--latent-dims", "2,4"])
@example(["run", "--fuse-seeds", "0"])
@example(["run", "--fuse-seeds", "AUTO"])
@example(["run", "--cuda-graphs", ""])  # a stray empty argument is named, quoted
def test_run_flags_give_a_config_or_a_usage_error(argv):
    outcome = _outcome(argv)
    assert isinstance(outcome, (SearchConfig, UsageError)), outcome
    if isinstance(outcome, SearchConfig):
        assert outcome.seeds <= outcome.max_seeds and 0 < outcome.confidence < 1


@settings(settings.get_profile("cli"))
@given(_argv("train", TRAIN_FLAGS))
@example(["train", "--lr", "inf"])
@example(["train", "--threads", "0"])
def test_train_flags_give_a_config_or_a_usage_error(argv):
    assert isinstance(_outcome(argv), (TrainConfig, UsageError))


@settings(settings.get_profile("cli"))
@given(st.sampled_from(["trials", "analyze", "resume", "status-of-nothing", ""]).flatmap(
    lambda c: st.tuples(st.just(c), st.lists(st.sampled_from(["--sort", "--top", "--format", "--rule", "--tolerance-db",
                                                              "--address", "x", "-h2", "--phase"]).flatmap(
        lambda f: st.tuples(st.just(f), NUMBERS)), max_size=4))))
def test_other_subcommands_parse_or_give_a_usage_error(command_and_pairs):
    command, pairs = command_and_pairs
    argv = ([command] if command else []) + ["EXPERIMENT"] + [p for pair in pairs for p in pair]
    assert isinstance(_outcome(argv), (argparse.Namespace, UsageError))


def test_the_fuzzed_layer_does_reject_bad_values():
    # the property above would pass trivially if every input were rejected, or none
    assert isinstance(_outcome(["run"]), SearchConfig)
    assert isinstance(_outcome(["run", "--confidence", "2"]), UsageError)
    for bad in ("0", "-2", "x", "1.5"):
        assert isinstance(_outcome(["run", "--fuse-seeds", bad]), UsageError)
    assert _outcome(["run", "--fuse-seeds", "3"]).members_per_trial == 3
    assert _outcome(["run"]).fuse_seeds == "auto" and _outcome(["run"]).members_per_trial == 1
    assert "needs trials on a GPU" in str(_outcome(["run", "--cuda-graphs"]))
    graphed = _outcome(["run", "--cuda-graphs", "--gpus-per-trial", "0.5"])
    assert graphed.cuda_graphs and graphed.train_template({"source": "sample", "data_dir": "d"}).cuda_graphs
    assert not _outcome(["run"]).cuda_graphs
    assert isinstance(_outcome(["train", "--epochs", "3"]), TrainConfig)
    with pytest.raises(UsageError):
        build_parser().parse_args(["run", "--epochs", "x"])


def test_the_installed_command_prints_one_line_and_exits_2():
    """The in-process bad-input tests call `search.cli.main`; this one runs the real process."""
    from tests.search.helpers import run_cli

    result = run_cli("run", "--preset", "smoke", "--epochs", "0")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "vae-search: error: argument --epochs: must be a positive integer but got '0'"
    ]


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["analyze", "--help"], ["status", "--help"]])
def test_help_imports_no_heavy_library(argv):
    """`--help` is instant: pandas, torch and ray load only inside the subcommands that need them."""
    import subprocess
    import sys

    code = (
        "import sys\nfrom search.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('pandas', 'torch', 'ray', 'optuna', 'matplotlib') if m in sys.modules), "
        "file=sys.stderr)"
    )
    result = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, check=True)
    assert "usage: vae-search" in result.stdout
    assert result.stderr.strip().splitlines()[-1] == "[]"
