"""``mltrack report --plot`` / ``--html``: every chart is a valid PNG of sensible size that says what it shows
(value labels, p50/p95, units, unpriced models named), and the HTML page carries the tables and all the charts."""

from __future__ import annotations

import base64
import io
import os
import subprocess
import sys
from html.parser import HTMLParser

import pytest
from PIL import Image

import mltrack
from mltrack.cli.main import main
from mltrack.testing import ScriptedReply

CHARTS = ["cached_share", "cost_over_time", "error_rate_over_time", "latency_distribution", "tokens_per_call",
          "ttft_distribution"]


@pytest.fixture
def charted(store, fake_llm, openai_client):
    """Priced, unpriced, failed and streamed calls in one run: something for every chart to show."""
    mltrack.instrument("openai")
    try:
        with mltrack.track_llm_context("charts", tags={"prompt_version": "v1"}) as tracker:
            for latency in (100.0, 200.0, 300.0, 400.0):
                tracker.log_prompt_response("p", "r", model="gpt-4o-mini", latency_ms=latency,
                                            token_usage={"prompt_tokens": 1000, "completion_tokens": 100})
            tracker.log_prompt_response("p", "r", model="my-local", provider="local", latency_ms=70.0,
                                        token_usage={"prompt_tokens": 10, "completion_tokens": 10})
            fake_llm.queue(ScriptedReply(usage={"prompt_tokens": 2000, "completion_tokens": 20, "total_tokens": 2020,
                                                "prompt_tokens_details": {"cached_tokens": 1024}}))
            list(openai_client.chat.completions.create(model="gpt-4o", stream=True,
                                                       messages=[{"role": "user", "content": "hi"}]))
            fake_llm.queue(ScriptedReply(status=500))
            with pytest.raises(Exception):
                openai_client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    finally:
        mltrack.uninstrument("openai")
    assert mltrack.flush(timeout=30)
    return store


def _texts(fig) -> list[str]:
    from matplotlib.text import Text

    return [t.get_text() for t in fig.findobj(Text) if t.get_text()]


def _assert_png(data: bytes, min_width: int = 600, min_height: int = 200) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    image = Image.open(io.BytesIO(data))
    image.load()  # decodes every pixel: a truncated file fails here
    width, height = image.size
    assert width >= min_width and height >= min_height, image.size
    colours = image.convert("L").getextrema()
    assert colours[0] < 100 < colours[1], colours  # not blank: dark text and lines on a light page
    return width, height


def test_plot_writes_every_chart_as_a_valid_png(charted, tmp_path, capsys):
    folder = tmp_path / "plots"
    assert main(["report", "--plot", str(folder)]) == 0
    out = capsys.readouterr().out
    assert sorted(p.stem for p in folder.iterdir()) == CHARTS
    for name in CHARTS:
        path = folder / f"{name}.png"
        assert f"wrote {path}" in out
        _assert_png(path.read_bytes())
    # the per-model histograms get one panel per model: three models, taller than the one-axis charts
    assert Image.open(folder / "latency_distribution.png").size[1] > Image.open(folder / "cost_over_time.png").size[1]


def test_charts_label_values_units_percentiles_and_unpriced_models(charted):
    from mltrack.cli import report_plots
    from mltrack.cli.report_data import collect
    from mltrack.cli.report_stats import group_by

    rows = collect(charted.client, ["0"], None)
    order = [g.key for g in group_by(rows, "model")]
    assert order == ["gpt-4o", "gpt-4o-mini", "my-local"]
    # gpt-4o: (976 * 2.5 + 1024 * 1.25 + 20 * 10) / 1M = 0.00392; gpt-4o-mini: 4 * (1000 * 0.15 + 100 * 0.60) / 1M
    cost = _texts(report_plots.cost_over_time(rows, "model", order))
    assert "cost (USD)" in cost
    assert "$0.00476" in cost  # the bar's value label: 0.00392 + 0.00084
    assert "Cost per hour, stacked by model (total $0.00476)" in cost
    assert "unpriced, not in the cost: model my-local (1 call)" in cost
    assert "my-local" not in cost  # not drawn as a $0 bar with a legend entry

    latency = _texts(report_plots.latency_distribution(rows, "model", order))
    assert "p50 250.0 ms" in latency and "p95 385.0 ms" in latency  # 100..400: numpy's linear percentiles
    assert "model gpt-4o-mini: 4 calls" in latency and "ms" in latency and "calls" in latency
    assert "model my-local: 1 call" in latency

    ttft = _texts(report_plots.ttft_distribution(rows, "model", order))
    assert "model gpt-4o: 1 call" in ttft and not any("gpt-4o-mini" in t for t in ttft)

    tokens = _texts(report_plots.tokens_distribution(rows, "model", order))
    assert "p50 1,100.0 tokens" in tokens and "tokens" in tokens

    cached = _texts(report_plots.cached_share(rows, "model", order))
    assert "51.2% (1,024 of 2,000 prompt tokens)" in cached  # gpt-4o's streamed call (its failed one has 0)
    assert "0.0% (0 of 4,000 prompt tokens)" in cached

    errors = _texts(report_plots.error_rate_over_time(rows, "model", order))
    assert "1/7" in errors and "failed calls (%)" in errors
    assert any(t.startswith("Error rate per hour (1 of 7 calls failed, 14.3%)") for t in errors)


def test_charts_for_an_empty_window_say_so(store, tmp_path, capsys):
    assert main(["report", "--plot", str(tmp_path / "empty")]) == 0
    assert "no LLM calls found" in capsys.readouterr().out
    for name in CHARTS:
        _assert_png((tmp_path / "empty" / f"{name}.png").read_bytes(), min_height=150)


def test_missing_matplotlib_names_the_extra(store, tmp_path):
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "from mltrack.cli.main import main\n"
            f"sys.exit(main(['report', '--plot', {str(tmp_path / 'p')!r}]))")
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(mltrack.__file__))}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "pip install 'mltrack[plot]'" in proc.stderr
    assert not (tmp_path / "p").exists()


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str]] = []
        self.cells: list[list[str]] = []
        self.links: list[str] = []
        self._cell = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs)
        if tag == "tr":
            self.cells.append([])
        if tag in ("td", "th"):
            self._cell = True
        self.links += [v for k, v in attrs.items() if k in ("href", "src") and v and not v.startswith("data:")]

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self._cell = False

    def handle_data(self, data):
        if self._cell:
            self.cells[-1].append(data)


def test_html_page_is_self_contained_with_tables_and_charts(charted, tmp_path, capsys):
    page = tmp_path / "out" / "report.html"
    assert main(["report", "--html", str(page), "--by", "model"]) == 0
    assert f"wrote {page}" in capsys.readouterr().out
    parsed = _Page()
    parsed.feed(page.read_text(encoding="utf-8"))
    assert parsed.links == []  # nothing fetched from anywhere: readable offline
    rows = {cells[0]: cells for cells in parsed.cells}
    assert rows["model"][:3] == ["model", "calls", "error rate"]
    assert rows["gpt-4o"][1:3] == ["2", "50.0%"] and rows["gpt-4o"][7] == "$0.00392"
    assert rows["gpt-4o-mini"][1:8] == ["4", "0.0%", "4000", "400", "4400", "0.0%", "$0.000840"]
    assert rows["my-local"][7] == "unpriced" and rows["(all)"][1] == "7"
    assert sorted(img["id"][len("chart-"):] for img in parsed.images) == CHARTS
    for img in parsed.images:
        prefix = "data:image/png;base64,"
        assert img["src"].startswith(prefix)
        _assert_png(base64.b64decode(img["src"][len(prefix):]), min_height=150)
