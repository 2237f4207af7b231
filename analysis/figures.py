"""Figures: each function takes data and an optional matplotlib `ax` (a new Figure's when not
given) and returns the Axes it drew on, as Optuna's and scikit-learn's plots do; nothing here
saves files. `reconstructions` draws a grid, so it takes and returns a Figure."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from analysis.layout import DIGITS
from analysis.rules import METRICS


def _figure(width: float = 8.0, height: float = 4.5) -> Figure:
    # Figure() directly (not pyplot): no global state, no GUI backend, safe in threads
    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def _axes(ax: Axes | None, width: float, height: float) -> Axes:
    return ax if ax is not None else _figure(width, height).add_subplot()


def metric_by_digit(summary: pd.DataFrame, metric: str, *, chosen: int | None = None, ax: Axes | None = None) -> Axes:
    """Grouped bars: per digit, one bar per latent size, error bars = SE over seeds."""
    if metric not in ("psnr", "mse"):
        raise ValueError(f"metric must be 'psnr' or 'mse' but got {metric!r}")
    rows = summary[summary["n_trials"] > 0].sort_values("latent_dim")
    ax = _axes(ax, 9.0, 4.5)
    width = 0.8 / max(1, len(rows))
    for i, row in enumerate(rows.itertuples()):
        values = [getattr(row, f"{metric}_digit_{d}") for d in DIGITS]
        errors = np.nan_to_num([getattr(row, f"{metric}_digit_{d}_se") for d in DIGITS])
        label = f"latent {row.latent_dim}" + (" (chosen)" if row.latent_dim == chosen else "")
        ax.bar(
            np.arange(len(DIGITS)) + (i - (len(rows) - 1) / 2) * width,
            values,
            width,
            yerr=errors,
            capsize=2,
            label=label,
        )
    ax.set_xticks(list(DIGITS))
    ax.set_xlabel("digit")
    ax.set_ylabel("PSNR (dB)" if metric == "psnr" else "MSE")
    ax.set_title(
        ("PSNR" if metric == "psnr" else "MSE") + " per digit by latent size (mean ± SE over seeds, validation)"
    )
    if metric == "psnr":
        low = np.nanmin(rows[[f"psnr_digit_{d}" for d in DIGITS]].to_numpy()) if len(rows) else 0
        ax.set_ylim(bottom=max(0.0, float(low) - 2.0))
    ax.legend(ncols=min(4, max(1, len(rows))), fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    return ax


def psnr_vs_latent(summary: pd.DataFrame, *, chosen: int, rule: str = "", threshold: float | None = None,
                   ax: Axes | None = None) -> Axes:
    """Mean PSNR ± SE against latent size, the chosen size marked; given the rule that chose by
    PSNR (its name, as `Selection.rule` starts) and its `threshold`, the boundary is drawn: the
    smallest size above it is the choice."""
    return _mean_vs_latent(
        summary,
        "psnr_mean",
        "psnr_se",
        chosen=chosen,
        rule=rule,
        threshold=threshold,
        unit="dB",
        ax=ax,
        ylabel="mean PSNR over digits (dB)",
        title="PSNR versus latent size (mean ± SE over seeds)",
    )


def nll_vs_latent(summary: pd.DataFrame, *, chosen: int, rule: str = "", threshold: float | None = None,
                  ax: Axes | None = None) -> Axes:
    """Mean nll_iw ± SE (the importance-weighted bound on −log p(x), lower is better) against
    latent size, with the negative ELBO (val_loss) of the same trials for comparison; the rule's
    `threshold` as in `psnr_vs_latent` (the smallest size below it is the choice)."""
    ax = _mean_vs_latent(
        summary,
        "nll_iw",
        "nll_iw_se",
        chosen=chosen,
        rule=rule,
        threshold=threshold,
        unit="nats",
        ax=ax,
        label="nll_iw",
        ylabel="nats per validation image",
        title="Held-out likelihood versus latent size (mean ± SE over seeds)",
    )
    rows = summary[(summary["n_trials"] > 0)].sort_values("latent_dim")
    if "val_loss" in rows and rows["val_loss"].notna().any():
        ax.errorbar(rows["latent_dim"], rows["val_loss"], yerr=np.nan_to_num(rows["val_loss_se"]), marker="s",
                    capsize=3, color="0.5", linestyle=":", label="negative ELBO (val_loss)")
        ax.legend()
    return ax


def _mean_vs_latent(
    summary: pd.DataFrame,
    column: str,
    se: str,
    *,
    chosen: int,
    ax: Axes | None,
    ylabel: str,
    title: str,
    label: str | None = None,
    rule: str = "",
    threshold: float | None = None,
    unit: str = "",
) -> Axes:
    rows = summary[(summary["n_trials"] > 0) & summary[column].notna()].sort_values("latent_dim")
    ax = _axes(ax, 6.5, 4.2)
    ax.errorbar(rows["latent_dim"], rows[column], yerr=np.nan_to_num(rows[se]), marker="o", capsize=4, label=label)
    pick = rows[rows["latent_dim"] == chosen]
    ax.scatter(pick["latent_dim"], pick[column], s=200, facecolors="none", edgecolors="C3", linewidths=2,
               label=f"chosen: {chosen}", zorder=3)
    ax.set_xticks(rows["latent_dim"])
    ax.set_xlabel("latent size")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if threshold is not None:
        ax.axhline(threshold, color="C3", linestyle="--", linewidth=1,
                   label=f"{rule.split(':')[0] or 'rule'} threshold: {threshold:.2f} {unit}")
    ax.legend()
    ax.grid(alpha=0.3)
    return ax


def active_units(summary: pd.DataFrame, *, chosen: int | None = None, threshold: float = 0.01,
                 ax: Axes | None = None) -> Axes:
    """Active units (latent dimensions whose posterior mean varies over the data by more than
    `threshold`) against latent size, mean ± SE over seeds, with the line y = x (all in use)."""
    ax = _axes(ax, 6.5, 4.2)
    measured = summary.loc[(summary["n_trials"] > 0) & summary["active_units"].notna(), "latent_dim"]
    if len(measured):
        ax.plot([0, measured.max()], [0, measured.max()], color="0.5", linestyle="--", linewidth=1,
                label="y = x (every dimension active)")
    _mean_vs_latent(summary, "active_units", "active_units_se", chosen=chosen, ax=ax, label="active units",
                    ylabel=f"active units (Var of posterior mean > {threshold:g})",
                    title="Active units versus latent size (mean ± SE over seeds)")
    ax.legend(fontsize="small")
    return ax


def kl_by_dim(kl: np.ndarray, mu_variance: np.ndarray | None = None, *, latent_dim: int, threshold: float = 0.01,
              ax: Axes | None = None) -> Axes:
    """The chosen model's mean KL per latent dimension (nats per image), largest first; with
    `mu_variance`, inactive dimensions are drawn grey."""
    kl = np.asarray(kl, dtype=float)
    order = np.argsort(-kl, kind="stable")
    ax = _axes(ax, 6.5, 4.2)
    active = np.ones(len(kl), bool) if mu_variance is None else np.asarray(mu_variance)[order] > threshold
    ax.bar(np.arange(len(kl))[active], kl[order][active], color="C0", label="active")
    if not active.all():
        ax.bar(np.arange(len(kl))[~active], kl[order][~active], color="0.7", label="inactive")
    ax.set_xticks(np.arange(len(kl)), [str(i) for i in order], fontsize="small")
    ax.set_xlabel("latent dimension (sorted by KL)")
    ax.set_ylabel("mean KL per image (nats)")
    ax.set_title(f"KL per latent dimension, latent size {latent_dim} (validation, total {kl.sum():.1f} nats)")
    ax.legend(fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    return ax


def loss_curves(history: pd.DataFrame, *, latent_dim: int, ax: Axes | None = None) -> Axes:
    """Training and validation loss per epoch of the seeds trials of one latent size."""
    rows = history[(history["phase"] == "seeds") & (history["latent_dim"] == latent_dim)]
    ax = _axes(ax, 6.5, 4.2)
    for i, (_, group) in enumerate(rows.groupby("trial_id", sort=True)):
        group = group.sort_values("epoch")
        seed = int(group["seed"].iloc[0])
        ax.plot(group["epoch"], group["train_loss"], color=f"C{i}", linestyle="--", label=f"train (seed {seed})")
        ax.plot(group["epoch"], group["val_loss"], color=f"C{i}", marker="o", label=f"validation (seed {seed})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("negative ELBO per image (nats)")
    ax.set_title(f"Loss curves, latent size {latent_dim}")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return ax


def latent_tsne(embedding: np.ndarray, labels: np.ndarray, *, latent_dim: int, ax: Axes | None = None) -> Axes:
    """2-D t-SNE embedding of latent means, coloured by digit. `embedding`: (N, 2)."""
    ax = _axes(ax, 6.0, 5.5)
    scatter = ax.scatter(embedding[:, 0], embedding[:, 1], c=labels, cmap="tab10", s=6, vmin=-0.5, vmax=9.5)
    ax.figure.colorbar(scatter, ax=ax, ticks=DIGITS, label="digit")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"t-SNE of test-set latent means (latent size {latent_dim})")
    return ax


def reconstructions(originals: np.ndarray, from_mean: np.ndarray, from_sample: np.ndarray, labels: np.ndarray,
                    *, fig: Figure | None = None) -> Figure:
    """Rows: originals, reconstructions from the posterior mean, from a sampled z. (N, 28, 28) each."""
    n = len(originals)
    fig = fig if fig is not None else _figure(1.0 * n + 1.2, 3.6)
    grid = fig.subplots(3, n, squeeze=False)
    names = ("original", "posterior mean", "sampled z")
    for r, images in enumerate((originals, from_mean, from_sample)):
        for c in range(n):
            ax = grid[r][c]
            ax.imshow(images[c], cmap="gray", vmin=0.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(str(int(labels[c])))
            if c == 0:
                ax.set_ylabel(names[r], fontsize="small")
    return fig


def search_history(trials: pd.DataFrame, *, ax: Axes | None = None) -> Axes:
    """Search phase: each trial's PSNR in the order trials finished, and the best so far."""
    rows = trials[(trials["phase"] == "search") & trials["psnr_mean"].notna()].copy()
    order = "finished_at" if "finished_at" in rows and rows["finished_at"].notna().all() else "trial_id"
    rows = rows.sort_values(order)
    ax = _axes(ax, 6.5, 4.2)
    x = np.arange(1, len(rows) + 1)
    full = (rows["status"] == "completed").to_numpy()
    ax.scatter(x[full], rows["psnr_mean"].to_numpy()[full], label="trial (all epochs)", zorder=3)
    ax.scatter(x[~full], rows["psnr_mean"].to_numpy()[~full], marker="x", label="trial (stopped early)", zorder=3)
    best = np.maximum.accumulate(np.where(full, rows["psnr_mean"].to_numpy(), -np.inf))
    ax.step(x, np.where(np.isfinite(best), best, np.nan), where="post", color="C3", label="best so far (all epochs)")
    ax.set_xlabel("trial (in order of finishing)")
    ax.set_ylabel("mean PSNR (dB)")
    ax.set_title("Search history")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return ax


def race(history: pd.DataFrame, *, chosen: int | None = None, confidence: float | None = None,
         tolerance: float | None = None, metric: str = "psnr", ax: Axes | None = None) -> Axes:
    """Each latent size's mean ± SE of the metric (psnr or nll) as seeds trials were added
    (`analysis.answers.race_history`); with `tolerance`, the tolerance rule's boundary (the best
    mean − tolerance, or + for nll) at each step."""
    m = METRICS[metric]
    ax = _axes(ax, 6.5, 4.2)
    if tolerance is not None and len(history):
        by_step = history.groupby("step")["mean"]
        boundary = by_step.max() - tolerance if m.sign > 0 else by_step.min() + tolerance
        ax.step(boundary.index, boundary.to_numpy(), where="mid", color="0.4", linestyle="--", linewidth=1,
                label=f"best mean {'−' if m.sign > 0 else '+'} {tolerance:g} {m.unit} (tolerance)")
    for i, (dim, group) in enumerate(history.groupby("latent_dim", sort=True)):
        group = group.sort_values("step")
        x, y = group["step"].to_numpy(), group["mean"].to_numpy(dtype=float)
        se = np.nan_to_num(group["se"].to_numpy(dtype=float))
        label = f"latent {dim}" + (" (chosen)" if dim == chosen else "")
        ax.plot(x, y, color=f"C{i}", marker=".", label=label, linewidth=2.5 if dim == chosen else 1.2)
        ax.fill_between(x, y - se, y + se, color=f"C{i}", alpha=0.15, step=None)
    ax.set_xlabel("completed seeds trials (in order of finishing)")
    ax.set_ylabel(f"{m.label} ± SE ({m.unit})")
    title = "The race: each latent size as seeds were added"
    if confidence is not None:
        title += f" (confidence {confidence:.2f})"
    ax.set_title(title)
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return ax
