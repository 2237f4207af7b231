"""The `vae-search` command line: one module per subcommand, each with `HELP`, `add(parser)`
and `main(args) -> exit code`; `main()` here dispatches and turns the errors a user can meet
into one line on stderr and an exit code.

Heavy imports (torch, ray) happen inside the subcommands' `main`, so `--help` answers at once.
Bad input raises `UsageError` (and a cluster that cannot run the trials as asked, `CannotRun`:
no node fits them, or a GPU trial's node cannot use CUDA): one line `vae-search: error: …`, exit
code 2, no traceback. A signal (`Stopped`) exits with 128 + its
number, a full disk (`DiskFull`) with 1; both say how to resume.

`entry()` is the installed command's (and `python -m search`'s): `main()`, then the process
ends without the interpreter's teardown of torch's and Ray's modules (`exit_now`).
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import signal
import sys
from typing import NoReturn, Sequence

from search.cli.output import PROG, error, megabytes
from vae.errors import UsageError

COMMANDS = ("run", "resume", "trials", "status", "analyze", "train", "check")  # each a module of this package


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage block
        raise UsageError(message)

    def parse_args(self, args=None, namespace=None):  # stray arguments quoted: an empty one shows as ''
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(map(shlex.quote, extras))}")
        return parsed


def _command(name: str):
    return importlib.import_module(f"search.cli.{name}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Which latent size should a VAE on MNIST use? A Ray Tune + Optuna search that answers it.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMANDS:
        module = _command(name)
        module.add(sub.add_parser(name, help=module.HELP))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from search.engine.stop import CannotRun, DiskFull, Stopped
    from search.store.record import resume_command

    try:
        args = build_parser().parse_args(argv)
        return _command(args.command).main(args)
    except (UsageError, CannotRun) as exc:
        error(exc)
        if getattr(exc, "experiment_path", None) is not None:
            print(f"resume with: {resume_command(exc.experiment_path, getattr(exc, 'address', None))}",
                  file=sys.stderr)
        return 2
    except DiskFull as exc:
        details = f"; details in {exc.log}" if exc.log else ""
        print(f"{PROG}: stopped: no space left on device in {exc.folder} ({megabytes(exc.free)} free, "
              f"the rest of the run needs about {megabytes(exc.needed)}){details}", file=sys.stderr)
        if exc.experiment_path is not None:
            print(f"resume with: {resume_command(exc.experiment_path, exc.address)}", file=sys.stderr)
        return 1
    except (Stopped, KeyboardInterrupt) as exc:
        stop = exc if isinstance(exc, Stopped) else Stopped(None, signal.SIGINT)
        path, name = stop.experiment_path, signal.Signals(stop.signum).name
        if path is None:
            print(f"{PROG}: stopped by {name} before the experiment was created", file=sys.stderr)
        else:
            print(f"{PROG}: stopped by {name}; finished trials and checkpoints are saved", file=sys.stderr)
            print(f"resume with: {resume_command(path, stop.address)}", file=sys.stderr)
        return stop.exit_code


def entry() -> NoReturn:
    """The `vae-search` command: `main()` on the process's arguments, then `exit_now`."""
    exit_now(main())


def exit_now(code: int) -> NoReturn:
    """End the process with `code` as a normal exit would, less the interpreter's teardown of
    every module (about 1 s once torch and Ray are loaded, bench/overhead.py): threads that are
    not daemons finish, the exit handlers run (Ray's shutdown, logging's flush), the output is
    flushed, then `os._exit`. Every file the commands write is closed (and renamed) by then."""
    import atexit
    import os
    import threading

    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()  # what the interpreter runs at exit; os._exit alone would skip them
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
