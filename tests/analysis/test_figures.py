"""Figure functions on hand-built data: what they draw (series, values, the best-so-far line),
checked through matplotlib's own objects, and that they draw into a given `ax`."""

import io

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from analysis import figures
from analysis.answers import race_history


def _not_blank(drawing):
    figure = drawing if isinstance(drawing, Figure) else drawing.figure
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    buffer.seek(0)
    assert mpimg.imread(buffer).std() > 0.02  # more than a white canvas with a frame


@pytest.fixture
def summary():
    rows = []
    for dim, psnr in [(5, 15.0), (10, 17.5), (15, 18.0)]:
        row = {
            "latent_dim": dim,
            "n_trials": 2,
            "psnr_mean": psnr,
            "psnr_se": 0.1,
            "mse_mean": 10 ** (-psnr / 10),
            "mse_se": 1e-4,
        }
        for d in range(10):
            row[f"psnr_digit_{d}"], row[f"psnr_digit_{d}_se"] = psnr + d / 5, 0.2
            row[f"mse_digit_{d}"], row[f"mse_digit_{d}_se"] = 10 ** (-(psnr + d / 5) / 10), 1e-4
        rows.append(row)
    rows.append({"latent_dim": 20, "n_trials": 0})
    return pd.DataFrame(rows)


def test_metric_by_digit_has_one_bar_per_digit_and_measured_size(summary):
    ax = figures.metric_by_digit(summary, "psnr", chosen=10)
    assert isinstance(ax, Axes)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["latent 5", "latent 10 (chosen)", "latent 15"]
    heights = [p.get_height() for p in ax.patches]
    assert len(heights) == 30
    assert heights[:10] == pytest.approx([15.0 + d / 5 for d in range(10)])  # latent 5, digits 0..9
    assert heights[20:] == pytest.approx([18.0 + d / 5 for d in range(10)])
    _not_blank(ax)
    mse = figures.metric_by_digit(summary, "mse")
    assert mse.get_ylabel() == "MSE"
    with pytest.raises(ValueError, match="metric must be"):
        figures.metric_by_digit(summary, "ssim")


def test_figures_draw_into_the_axes_they_are_given(summary):
    figure = Figure()
    left, right = figure.subplots(1, 2)
    assert figures.psnr_vs_latent(summary, chosen=10, ax=left) is left
    assert figures.metric_by_digit(summary, "mse", ax=right) is right
    assert len(figure.axes) == 2


def test_psnr_vs_latent_plots_the_means_and_marks_the_choice(summary):
    ax = figures.psnr_vs_latent(summary, chosen=10)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["chosen: 10"]
    x, y = ax.lines[0].get_data()
    assert list(x) == [5, 10, 15] and list(y) == pytest.approx([15.0, 17.5, 18.0])  # size 20 has no trial
    assert not ax.texts  # the rule is drawn, not named in a corner
    _not_blank(ax)


def test_the_figure_of_the_chosen_metric_draws_the_rules_threshold(summary):
    # the tolerance rule at 0.6 dB: best 18.0 dB, so the boundary is 17.4 and 10 (17.5) is the smallest above it
    ax = figures.psnr_vs_latent(summary, chosen=10, rule="tolerance: …", threshold=17.4)
    (line,) = [line for line in ax.lines if line.get_linestyle() == "--"]
    assert list(line.get_ydata()) == pytest.approx(
        [17.4, 17.4]
    )  # between the choice (17.5) and the next size down (15.0)
    assert "tolerance threshold: 17.40 dB" in [t.get_text() for t in ax.get_legend().get_texts()]
    table = summary.assign(nll_iw=[125.0, 110.0, 111.0, np.nan], nll_iw_se=[0.5, 0.4, 0.3, np.nan])
    ax = figures.nll_vs_latent(table, chosen=10, rule="one-se: …", threshold=110.4)  # lowest 110.0 ± 0.4
    assert any(list(line.get_ydata()) == pytest.approx([110.4, 110.4]) for line in ax.lines)
    assert "one-se threshold: 110.40 nats" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_reconstructions_grid():
    rng = np.random.default_rng(0)
    images = rng.random((10, 28, 28))
    fig = figures.reconstructions(images, images, images, np.arange(10))
    assert len(fig.axes) == 30
    assert np.array_equal(fig.axes[0].images[0].get_array(), images[0])
    _not_blank(fig)


def test_latent_tsne_colours_points_by_digit():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 100)
    ax = figures.latent_tsne(rng.normal(size=(100, 2)), labels, latent_dim=5)
    assert np.array_equal(ax.collections[0].get_array(), labels)
    _not_blank(ax)


def test_loss_curves_draw_train_and_validation_per_seed():
    history = pd.DataFrame(
        {
            "phase": "seeds",
            "latent_dim": 5,
            "trial_id": ["a"] * 3 + ["b"] * 3,
            "seed": [1] * 3 + [2] * 3,
            "epoch": [1, 2, 3] * 2,
            "train_loss": [200, 150, 120] * 2,
            "val_loss": [190, 140, 125] * 2,
        }
    )
    ax = figures.loss_curves(history, latent_dim=5)
    assert len(ax.lines) == 4
    assert list(ax.lines[1].get_ydata()) == [190, 140, 125]
    _not_blank(ax)


def test_search_history_best_so_far_counts_only_full_trials():
    trials = pd.DataFrame({"phase": "search", "status": ["completed", "stopped", "completed", "completed"],
                           "psnr_mean": [10.0, 13.0, 12.0, 11.0], "trial_id": ["a", "b", "c", "d"],
                           "finished_at": [1.0, 2.0, 3.0, 4.0]})
    ax = figures.search_history(trials)
    best = ax.lines[0]
    assert list(best.get_ydata()) == [10.0, 10.0, 12.0, 12.0]  # the stopped trial's 13 dB is not a full result
    _not_blank(ax)


def test_race_draws_each_sizes_running_mean():
    rows = [
        {
            "trial_id": str(i),
            "phase": "seeds",
            "status": "completed",
            "latent_dim": dim,
            "psnr_mean": v,
            "finished_at": float(i),
        }
        for i, (dim, v) in enumerate([(5, 10.0), (10, 12.0), (5, 11.0), (10, 12.5)])
    ]
    ax = figures.race(race_history(pd.DataFrame(rows)), chosen=10, confidence=0.75)
    assert len(ax.lines) == 2 and "0.75" in ax.get_title()
    x, y = ax.lines[0].get_data()  # latent 5: after steps 1..4
    assert list(x) == [1, 2, 3, 4] and list(y) == pytest.approx([10.0, 10.0, 10.5, 10.5])
    _not_blank(ax)
    bounded = figures.race(race_history(pd.DataFrame(rows)), chosen=10, tolerance=0.3)
    boundary = bounded.lines[0]  # the best mean at each step, less the tolerance
    assert list(boundary.get_ydata()) == pytest.approx([9.7, 11.7, 11.7, 11.95]) and "tolerance" in boundary.get_label()


def test_active_units_against_the_line_of_every_dimension_in_use(summary):
    table = summary.assign(active_units=[5.0, 9.5, 12.0, np.nan], active_units_se=[0.0, 0.5, 1.0, np.nan])
    ax = figures.active_units(table, chosen=10)
    diagonal, measured = ax.lines[0], ax.lines[1]
    assert list(diagonal.get_xdata()) == [0, 15] and list(diagonal.get_ydata()) == [
        0,
        15,
    ]  # y = x up to the largest size
    assert list(measured.get_xdata()) == [5, 10, 15] and list(measured.get_ydata()) == [5.0, 9.5, 12.0]
    assert "0.01" in ax.get_ylabel()
    _not_blank(ax)


def test_kl_by_dim_is_sorted_largest_first_and_greys_the_inactive():
    ax = figures.kl_by_dim([0.5, 3.0, 0.001, 1.5], [0.4, 1.0, 0.0001, 0.9], latent_dim=4)
    active, inactive = ax.containers
    assert [bar.get_height() for bar in active] == [3.0, 1.5, 0.5] and [bar.get_height() for bar in inactive] == [0.001]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "3", "0", "2"]  # the dimensions, in that order
    assert "total 5.0 nats" in ax.get_title()
    all_active = figures.kl_by_dim([0.5, 3.0], [0.4, 1.0], latent_dim=2)
    assert len(all_active.containers) == 1 and [t.get_text() for t in all_active.get_legend().get_texts()] == ["active"]


def test_nll_vs_latent_marks_the_choice_beside_the_negative_elbo(summary):
    table = summary.assign(nll_iw=[125.0, 110.0, 111.0, np.nan], nll_iw_se=[0.5, 0.4, 0.3, np.nan],
                           val_loss=[128.0, 113.0, 114.5, np.nan], val_loss_se=[0.5, 0.5, 0.5, np.nan])
    ax = figures.nll_vs_latent(table, chosen=10)
    assert list(ax.lines[0].get_ydata()) == [125.0, 110.0, 111.0]
    assert sorted(t.get_text() for t in ax.get_legend().get_texts()) == [
        "chosen: 10",
        "negative ELBO (val_loss)",
        "nll_iw",
    ]
    _not_blank(ax)


def test_the_race_of_nll_draws_its_boundary_above_the_lowest_mean():
    rows = [
        {
            "trial_id": str(i),
            "phase": "seeds",
            "status": "completed",
            "latent_dim": dim,
            "psnr_mean": 0.0,
            "nll_iw": v,
            "finished_at": float(i),
        }
        for i, (dim, v) in enumerate([(5, 120.0), (10, 110.0), (5, 121.0), (10, 109.0)])
    ]
    ax = figures.race(race_history(pd.DataFrame(rows), "nll_iw"), chosen=10, tolerance=1.4, metric="nll")
    assert list(ax.lines[0].get_ydata()) == pytest.approx([121.4, 111.4, 111.4, 110.9])  # lowest mean + tolerance
    assert "nats" in ax.get_ylabel() and "+ 1.4 nats" in ax.lines[0].get_label()
