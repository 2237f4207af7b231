import io

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from analysis import figures


def _pixels(figure: Figure) -> np.ndarray:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    buffer.seek(0)
    return mpimg.imread(buffer)


def _not_blank(figure):
    assert isinstance(figure, Figure)
    pixels = _pixels(figure)
    assert pixels.std() > 0.02  # more than a white canvas with a frame


@pytest.fixture
def summary():
    rows = []
    for dim, psnr in [(5, 15.0), (10, 17.5), (15, 18.0)]:
        row = {"latent_dim": dim, "n_trials": 2, "psnr_mean": psnr, "psnr_se": 0.1, "mse_mean": 10 ** (-psnr / 10), "mse_se": 1e-4}
        for d in range(10):
            row[f"psnr_digit_{d}"], row[f"psnr_digit_{d}_se"] = psnr + d / 5, 0.2
            row[f"mse_digit_{d}"], row[f"mse_digit_{d}_se"] = 10 ** (-(psnr + d / 5) / 10), 1e-4
        rows.append(row)
    rows.append({"latent_dim": 20, "n_trials": 0})
    return pd.DataFrame(rows)


def test_metric_by_digit_has_one_series_per_measured_size(summary):
    fig = figures.metric_by_digit(summary, "psnr", chosen=10)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["latent 5", "latent 10 (chosen)", "latent 15"]
    assert len(ax.patches) == 30
    _not_blank(fig)
    _not_blank(figures.metric_by_digit(summary, "mse"))
    with pytest.raises(ValueError, match="metric must be"):
        figures.metric_by_digit(summary, "ssim")


def test_psnr_vs_latent_marks_the_choice(summary):
    fig = figures.psnr_vs_latent(summary, chosen=10, rule="one-se: …")
    assert "chosen: 10" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    _not_blank(fig)


def test_reconstructions_grid():
    rng = np.random.default_rng(0)
    images = rng.random((10, 28, 28))
    fig = figures.reconstructions(images, images, images, np.arange(10))
    assert len(fig.axes) == 30
    _not_blank(fig)


def test_latent_tsne_and_history_and_losses():
    rng = np.random.default_rng(0)
    _not_blank(figures.latent_tsne(rng.normal(size=(100, 2)), rng.integers(0, 10, 100), latent_dim=5))
    history = pd.DataFrame({"phase": "seeds", "latent_dim": 5, "trial_id": ["a"] * 3 + ["b"] * 3, "seed": [1] * 3 + [2] * 3,
                            "epoch": [1, 2, 3] * 2, "train_loss": [200, 150, 120] * 2, "val_loss": [190, 140, 125] * 2})
    fig = figures.loss_curves(history, latent_dim=5)
    assert len(fig.axes[0].lines) == 4
    _not_blank(fig)
    trials = pd.DataFrame({"phase": "search", "status": ["completed", "stopped", "completed"], "psnr_mean": [10.0, 8.0, 12.0],
                           "trial_id": ["a", "b", "c"], "finished_at": [1.0, 2.0, 3.0]})
    _not_blank(figures.search_history(trials))
