"""report.render without a browser: the page's content, escaping, inline figures, provenance.
(tests/search/test_report_browser.py renders a real report in Chromium.)"""

import base64
import io
import re
from html.parser import HTMLParser

import matplotlib.image as mpimg
import pandas as pd
from matplotlib.figure import Figure

from analysis.report import render
from analysis.selection import select
from analysis.summary import summarize


def _png():
    figure = Figure(figsize=(2, 2))
    figure.add_subplot().plot([0, 1], [1, 0])
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.images, self._current = {}, [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        self._current = attrs.get("id")

    def handle_data(self, data):
        if self._current and data.strip():
            self.ids.setdefault(self._current, data.strip())


def _page(**extra):
    rows = [
        {
            "trial_id": f"{d}-{i}",
            "phase": "seeds",
            "stage": "seeds",
            "status": "completed",
            "latent_dim": d,
            "psnr_mean": v,
            "mse_mean": 10 ** (-v / 10),
            **{f"psnr_digit_{k}": v for k in range(10)},
            **{f"mse_digit_{k}": 10 ** (-v / 10) for k in range(10)},
        }
        for d, values in {5: [15.0, 15.2], 10: [18.0, 18.4]}.items()
        for i, v in enumerate(values)
    ]
    trials = pd.DataFrame(rows)
    summary = summarize(trials)
    test = {"mse_by_digit": [0.01] * 10, "psnr_by_digit": [20.0] * 10, "mse_mean": 0.01, "psnr_mean": 20.0}
    values = dict(
        name="exp <script>alert(1)</script>",
        selection=select(summary),
        summary=summary,
        trials=trials,
        test=test,
        figures={"psnr_vs_latent": _png(), "race": _png()},
        source="sample",
        confidence=0.93,
        stop_reason="confidence",
        provenance={
            "command": "vae-search run --preset smoke --seed 3",
            "preset": "smoke",
            "settings": {"epochs": 2},
            "data": "sample in /data: 600 train",
            "versions": "torch 2.14.1",
            "compute": {"trials": 4, "epochs": 8, "core_seconds": 12.3, "wall_time": "20 s"},
        },
    )
    values.update(extra)
    return render(**values)


def test_the_page_states_the_decision_its_confidence_and_how_it_was_made():
    html = _page()
    page = _Page()
    page.feed(html)
    assert page.ids["chosen-latent-dim"] == "10"
    assert page.ids["confidence"] == "0.93" and page.ids["stop-reason"] == "confidence"
    assert page.ids["command"] == "vae-search run --preset smoke --seed 3"
    assert "core-seconds in trials" in html and "torch 2.14.1" in html
    assert "within 0.3 dB of the best" in html  # the rule in words
    assert "true means of the metric" in html  # what the confidence is the probability of
    assert 'id="close-call"' not in html  # the best size was chosen: no close call to state
    close = _page(
        close_call="latent sizes 15 and 20 are within 0.3 dB of each other (0.10 dB apart); "
        "the rule takes the smaller, 15"
    )
    assert re.search(r'<p id="close-call"><strong>Close call.</strong> latent sizes 15 and 20 are within 0.3 dB .*'
                     r'the rule takes the smaller, 15.</p>', close)
    assert 'id="latent-notes"' not in html
    noted = _page(latent_notes=["answers by metric: mean PSNR 10 (confidence 0.93); nll_iw 5 (confidence 0.71)",
                                "latent 10 uses 8.5 ± 0.5 of its 10 dimensions <b>"])
    assert re.search(
        r'<ul id="latent-notes"><li>answers by metric: mean PSNR 10 .*</li><li>latent 10 uses 8.5 ± 0.5 of its '
        r'10 dimensions &lt;b&gt;</li></ul>',
        noted,
    )  # escaped like every other text


def test_figures_are_inline_pngs_that_decode():
    page = _Page()
    page.feed(_page())
    assert len(page.images) == 2
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        pixels = mpimg.imread(io.BytesIO(base64.b64decode(src.split(",", 1)[1])), format="png")
        assert pixels.shape[0] > 50


def test_text_from_the_experiment_is_escaped():
    html = _page()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_without_confidence_or_provenance_the_page_still_renders():
    html = _page(confidence=None, stop_reason=None, provenance=None)
    assert 'id="confidence"' not in html and "How this run was made" not in html
    assert re.search(r'id="chosen-latent-dim">10<', html)
