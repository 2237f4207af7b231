"""A self-contained HTML report: the decision and its rule, the tables, the figures inline."""

from __future__ import annotations

import base64
import html
import math

import pandas as pd

from analysis.selection import Selection

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; } .decision { font-size: 1.4em; background: #eef6ee; padding: 0.6em 1em; border-radius: 6px; }
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
    "race": "The race: each latent size's mean PSNR ± SE (validation) as seeds trials were added.",
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
) -> str:
    """The whole page as a string; `figures` maps a figure name to PNG bytes."""
    e = html.escape
    summary_table = summary[["latent_dim", "n_trials", "psnr_mean", "psnr_se", "mse_mean", "mse_se", "best_trial_id"]]
    digit_rows = "".join(
        f"<tr><td>{d}</td><td>{test['mse_by_digit'][d]:.4f}</td><td>{test['psnr_by_digit'][d]:.2f}</td></tr>" for d in range(10)
    )
    shown = [c for c in ("trial_id", "phase", "stage", "status", "latent_dim", "lr", "seed", "epochs", "val_loss", "mse_mean",
                          "psnr_mean", "device", "time_s") if c in trials.columns]
    figures_html = "".join(
        f'<figure id="fig-{e(key)}"><img alt="{e(key)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
        f"<figcaption>{e(FIGURE_CAPTIONS.get(key, key))}</figcaption></figure>"
        for key, png in figures.items()
    )
    notes = "".join(f"<li>{e(n)}</li>" for n in selection.notes)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>vae-search: {e(name)}</title><style>{_STYLE}</style></head>
<body>
<h1>vae-search report: {e(name)}</h1>
<p class="note">data source: {e(source)}; metrics are means over the ten digits (each digit weighs the same).</p>
<p class="decision" id="decision">Chosen latent size: <strong id="chosen-latent-dim">{selection.latent_dim}</strong>{_confidence(confidence, stop_reason)}</p>
<p id="rule"><strong>Rule.</strong> {e(selection.rule)}.</p>
{f'<ul class="note">{notes}</ul>' if notes else ''}
<h2>Chosen model on the test split</h2>
<p>Trial {e(str(selection.best_trial_id))}: MSE {test['mse_mean']:.4f}, PSNR {test['psnr_mean']:.2f} dB (never used for the choice).</p>
<table><tr><th>digit</th><th>MSE</th><th>PSNR (dB)</th></tr>{digit_rows}</table>
<h2>Per latent size (seeds phase, validation split)</h2>
<div class="scroll">{_table(summary_table)}</div>
<h2>Figures</h2>
{figures_html}
<h2>All trials</h2>
<div class="scroll">{_table(trials.sort_values(["phase", "latent_dim", "psnr_mean"], ascending=[True, True, False])[shown])}</div>
</body></html>
"""


def _confidence(confidence: float | None, stop_reason: str | None) -> str:
    if confidence is None:
        return ""
    why = f"; racing stopped: {html.escape(stop_reason)}" if stop_reason else ""
    return (f' <span class="note">(decision confidence <strong id="confidence">{confidence:.2f}</strong>: the share of '
            f"bootstrap resamples of the seeds in which the rule picks this size{why})</span>")


def _table(frame: pd.DataFrame) -> str:
    def fmt(value):
        if isinstance(value, float):
            if math.isnan(value):
                return "–"
            return f"{value:.2e}" if 0 < abs(value) < 1e-2 else f"{value:.4g}"
        return str(value)

    return frame.to_html(index=False, formatters={c: fmt for c in frame.columns}, border=0, escape=True)
