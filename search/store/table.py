"""`trials.csv` and `history.csv` written, and `trials.csv` read back and printed (`vae-search
trials`, the decision, `analyze`). The tables are built from Ray Tune's state by `search.engine.tables`; the columns are
`analysis.layout.COLUMNS` (docs/design.md lists them with their meaning)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from search.store.files import HISTORY_FILE, TRIALS_FILE
from vae.errors import UsageError
from vae.files import atomic_write_text


def write_tables(experiment: str | Path, trials: pd.DataFrame, history: pd.DataFrame) -> None:
    """trials.csv and history.csv, each written whole (temporary file, then rename)."""
    atomic_write_text(Path(experiment) / TRIALS_FILE, trials.to_csv(index=False))
    atomic_write_text(Path(experiment) / HISTORY_FILE, history.to_csv(index=False))


def read_trials(experiment: str | Path) -> pd.DataFrame:
    path = Path(experiment).expanduser()
    file = path / TRIALS_FILE
    if not path.is_dir():
        raise UsageError(f"experiment {path} does not exist")
    if not file.is_file():
        raise UsageError(
            f"{path} has no trials.csv (not a finished vae-search experiment; `vae-search resume {path}` finishes one)"
        )
    try:
        table = pd.read_csv(file)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise UsageError(f"corrupt {file}: {' '.join(str(exc).split())}") from None
    missing = [c for c in ("trial_id", "phase", "status", "latent_dim", "psnr_mean") if c not in table.columns]
    if missing:
        raise UsageError(f"corrupt {file}: missing column(s) {', '.join(missing)}")
    return table


_SHOWN = ["trial_id", "stage", "status", "latent_dim", "lr", "seed", "epochs", "val_loss", "mse_mean", "psnr_mean",
          "active_units", "nll_iw", "device", "time_s"]


def format_trials(table: pd.DataFrame, *, sort: str, top: int | None, fmt: str) -> str:
    """The table as text: `table` (the main columns, readable), `csv` or `json` (every column)."""
    if sort not in table.columns:
        raise UsageError(f"--sort {sort!r} is not a column; choose from {', '.join(table.columns)}")
    ascending = not (sort.startswith("psnr") or sort in ("epochs", "latent_dim", "active_units"))
    table = table.sort_values(sort, ascending=ascending, na_position="last", kind="stable")
    if top is not None:
        table = table.head(top)
    if fmt == "csv":
        return table.to_csv(index=False)
    if fmt == "json":
        return json.dumps(json.loads(table.to_json(orient="records")), indent=2) + "\n"
    shown = table.reindex(columns=_SHOWN)
    if shown.empty:  # the header alone (pandas would print "Empty DataFrame")
        return " ".join(_SHOWN) + "\n"
    return shown.to_string(
        index=False,
        na_rep="-",
        formatters={"lr": "{:.2e}".format, "val_loss": "{:.2f}".format, "mse_mean": "{:.4f}".format,
                    "psnr_mean": "{:.2f}".format, "active_units": "{:.0f}".format, "nll_iw": "{:.2f}".format,
                    "time_s": "{:.1f}".format},
    ) + "\n"
