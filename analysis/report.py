"""A self-contained HTML report: the decision and its rule, the tables, the figures inline."""

from __future__ import annotations

import base64
import math

import pandas as pd
from markupsafe import Markup

from analysis.selection import Selection

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; }
.decision { font-size: 1.4em; background: #eef6ee; padding: 0.6em 1em; border-radius: 6px; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; } th { background: #f4f4f4; }
figure { margin: 1em 0 2em; } figure img { max-width: 100%; border: 1px solid #eee; }
.note { color: #555; } .scroll { overflow-x: auto; }
"""

FIGURE_CAPTIONS = {
    "psnr_vs_latent": "Mean PSNR versus latent size; the chosen size is circled.",
    "psnr_by_digit": "PSNR per digit, one bar per latent size (mean ± SE over seeds, validation split).",
    "mse_by_digit": "MSE per digit, one bar per latent size (mean ± SE over seeds, validation split).",
    "loss_curves": "Training (dashed) and validation loss per epoch for the chosen latent size.",
    "latent_tsne": "t-SNE of the chosen model's latent means on the test split, coloured by digit.",
    "reconstructions": "Test-split originals, reconstructions from the posterior mean, and from a sampled z.",
    "search_history": "Search stage: each trial's PSNR and the best so far.",
    "race": "The race: each latent size's mean ± SE of the run's metric (validation) as seeds trials were added; "
            "dashed: the tolerance rule's boundary.",
    "nll_vs_latent": "Held-out likelihood: nll_iw, the importance-weighted bound on −log p(x) (nats per validation "
                     "image, lower is better), with the negative ELBO of the same trials.",
    "active_units": "Active units (latent dimensions whose posterior mean varies over the validation images by more "
                    "than the threshold) versus latent size; dashed: every dimension in use.",
    "kl_by_dim": "The chosen model's mean KL per latent dimension on the validation split, largest first; "
                 "grey: inactive dimensions.",
}


def render(
    *,
    name: str,
    selection: Selection,
    summary: pd.DataFrame,
    trials: pd.DataFrame,
    test: dict,
    figures: dict[str, bytes],
    source: str,
    confidence: float | None = None,
    stop_reason: str | None = None,
    close_call: str | None = None,
    provenance: dict | None = None,
    latent_notes: list[str] | tuple[str, ...] = (),
) -> str:
    """The whole page as a string; `figures` maps a figure name to PNG bytes. `provenance`:
    command, preset, settings, data, versions and compute (see `search.cli.analyze`). `close_call`:
    one sentence when the chosen size is not the best (`analysis.racing.Race.close_call`).
    `latent_notes`: the answer by each metric and what the latent space uses, one line each."""
    summary_table = summary.reindex(
        columns=[
            "latent_dim",
            "n_trials",
            "psnr_mean",
            "psnr_se",
            "mse_mean",
            "mse_se",
            "nll_iw",
            "nll_iw_se",
            "active_units",
            "active_units_se",
            "best_trial_id",
        ]
    )
    shown = [
        c
        for c in (
            "trial_id",
            "phase",
            "stage",
            "status",
            "latent_dim",
            "lr",
            "seed",
            "epochs",
            "val_loss",
            "mse_mean",
            "psnr_mean",
            "active_units",
            "nll_iw",
            "device",
            "time_s",
        )
        if c in trials.columns
    ]
    ordered = trials.sort_values(["phase", "latent_dim", "psnr_mean"], ascending=[True, True, False])[shown]
    return _template().render(
        style=_STYLE,
        name=name,
        source=source,
        selection=selection,
        confidence=confidence,
        stop_reason=stop_reason,
        close_call=close_call,
        latent_notes=list(latent_notes),
        test=test,
        summary_table=Markup(_table(summary_table)),
        trials_table=Markup(_table(ordered)),
        figures=[{"key": key, "caption": FIGURE_CAPTIONS.get(key, key), "data": base64.b64encode(png).decode()}
                 for key, png in figures.items()],
        provenance=provenance,
    )


def _template():
    from jinja2 import Environment, PackageLoader, select_autoescape

    environment = Environment(
        loader=PackageLoader("analysis", "templates"), autoescape=select_autoescape(["j2", "html"])
    )
    return environment.get_template("report.html.j2")


def _table(frame: pd.DataFrame) -> str:
    """pandas' own HTML table (cells escaped by pandas), numbers formatted for reading."""

    def fmt(value):
        if isinstance(value, float):
            if math.isnan(value):
                return "–"
            return f"{value:.2e}" if 0 < abs(value) < 1e-2 else f"{value:.4g}"
        return str(value)

    return frame.to_html(index=False, formatters={c: fmt for c in frame.columns}, border=0, escape=True)
