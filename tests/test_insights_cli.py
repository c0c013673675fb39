"""mltrack traces search / traces correlate / insights on traces of known composition."""

from __future__ import annotations

import math
import sys


from _insights_traces import build
from mltrack.cli.main import main


def test_traces_search_prints_the_matching_traces(store, capsys):
    build(store.uri)
    assert main(["traces", "search", "count(span.type = 'LLM') >= 3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "2 traces match \"count(span.type = 'LLM') >= 3\""
    rows = [line.split() for line in out[3:]]
    assert [tuple(r[3:]) for r in rows] == [
        ("OK", "300", "agent-c", "6", "4", "200", "$0.04"),  # newest first
        ("ERROR", "6000", "chat-b", "4", "3", "300", "$0.006000"),
    ]
    assert main(["traces", "search", "tags.env = 'qa'"]) == 0
    assert capsys.readouterr().out == "0 traces match \"tags.env = 'qa'\"\n"


def test_traces_correlate_prints_counts_and_npmi(store, capsys):
    build(store.uri)
    assert main(["traces", "correlate", "tags.retries > 0", "trace.status = 'ERROR'"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[-1] for line in out.splitlines()[1:5]] == ["2", "2", "2", "6"]
    assert "NPMI +1.000   smoothed NPMI +0.687" in out
    assert main(["traces", "correlate", "tags.env = 'qa'", "trace.status = 'ERROR'", "--json"]) == 0
    import json

    data = json.loads(capsys.readouterr().out)
    assert math.isnan(data["npmi"]) and data["filter_string1_count"] == 0 and data["total_count"] == 6


def test_insights_ranks_conditions_by_npmi_with_the_target(store, capsys, tmp_path):
    build(store.uri)
    plot = tmp_path / "insights.png"
    assert main(["insights", "--top", "5", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "target: trace.status = 'ERROR' — 2 of 6 traces (33.3%)"
    rows = [line.split("  ") for line in out[3:8]]
    rows = [[cell.strip() for cell in row if cell.strip()] for row in rows]
    assert rows == [
        ["1", "count(span.type = 'LLM') > 1", "+0.631", "+0.439", "3", "2", "66.7%"],
        ["2", "tags.retries = '1'", "+0.613", "+0.414", "1", "1", "100.0%"],
        ["3", "tags.retries = '2'", "+0.613", "+0.414", "1", "1", "100.0%"],
        ["4", "trace.execution_time_ms > 6500", "+0.613", "+0.414", "1", "1", "100.0%"],
        ["5", "count(span.type = 'LLM') > 2", "+0.226", "+0.172", "2", "1", "50.0%"],
    ]
    assert out[-1] == f"wrote {plot}"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_insights_with_another_target_and_costly_traces(store, capsys):
    build(store.uri)
    assert main(["insights", "--target", "feedback.rating >= 4", "--top", "40"]) == 0
    out = capsys.readouterr().out
    assert "target: feedback.rating >= 4 — 2 of 6 traces (33.3%)" in out
    assert "trace.total_cost > 0.034" in out  # the p90 of the traces' costs, exactly
    assert "span.attributes['mlflow.llm.model'] = 'claude-3-5-sonnet'" in out
    assert "span.attributes['mlflow.llm.provider'] = 'anthropic'" in out


def test_bad_filter_and_missing_matplotlib(store, capsys, monkeypatch, tmp_path):
    build(store.uri)
    assert main(["traces", "search", "span.type = 'LLM' AND ("]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mltrack: bad filter at position 23: expected a field")
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["insights", "--plot", str(tmp_path / "x.png")]) == 2
    assert 'pip install "mltrack[plot]"' in capsys.readouterr().err


def test_insights_on_an_empty_experiment(store, capsys):
    assert main(["insights"]) == 0
    assert capsys.readouterr().out == "no traces in this experiment\n"
    assert main(["insights", "--experiment", "nope"]) == 2
    assert "no experiment named 'nope'" in capsys.readouterr().err
