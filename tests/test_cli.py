"""The mltrack command line: pricing, cost, config check and report, run as a user would."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal

import mltrack
from mltrack.cli.main import main


def test_cost_prints_exact_decimal_cost(capsys):
    assert main(["cost", "gpt-4o", "--prompt-tokens", "1200", "--completion-tokens", "300",
                 "--cached-tokens", "1000"]) == 0
    out = capsys.readouterr().out
    prompt = (Decimal(200) * Decimal("2.5") + Decimal(1000) * Decimal("1.25")) / 10**6
    assert f"${prompt.normalize():f}" in out
    assert f"total:      ${(prompt + Decimal('0.003')).normalize():f}" in out


def test_cost_unknown_model_fails(capsys):
    assert main(["cost", "no-such-model", "--prompt-tokens", "1", "--completion-tokens", "1"]) == 1
    assert "no price known for 'no-such-model'" in capsys.readouterr().out


def test_pricing_show_resolves_dated_snapshot_and_names_source(capsys):
    assert main(["pricing", "show", "openai/gpt-4o-mini-2024-07-18"]) == 0
    out = capsys.readouterr().out
    assert "model:        gpt-4o-mini" in out and "input:        $0.15 / 1M tokens" in out
    assert "source:" in out and "as of:" in out


def test_pricing_list_includes_user_override(store, capsys, tmp_path):
    (tmp_path / ".mltrack.yml").write_text("pricing:\n  my-finetune:\n    input: 1.5\n    output: 3\n")
    from mltrack import config

    config.reset()
    assert main(["pricing", "list"]) == 0
    out = capsys.readouterr().out
    assert "my-finetune" in out and "claude-3-5-sonnet-20241022" in out


def test_config_check_reports_errors_with_exit_code(tmp_path, monkeypatch):
    from mltrack import config

    monkeypatch.chdir(tmp_path)
    (tmp_path / ".mltrack.yml").write_text("llm_cost_limit_error: ten\nllm_log_prompt: false\n")
    config.reset()
    proc = subprocess.run([sys.executable, "-m", "mltrack", "config", "check"], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == 1
    assert "llm_cost_limit_error" in proc.stdout and "ten" in proc.stdout
    assert "llm_log_prompts" in proc.stdout  # the closest key to the typo
    (tmp_path / ".mltrack.yml").write_text("llm_cost_limit_error: 10\n")
    proc = subprocess.run([sys.executable, "-m", "mltrack", "config", "check"], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_report_per_model_and_tag_with_plots(store, capsys, tmp_path):
    with mltrack.track_llm_context("a", tags={"team": "search"}) as tracker:
        tracker.log_prompt_response("p", "r", model="gpt-4o-mini", latency_ms=100.0,
                                    token_usage={"prompt_tokens": 1000, "completion_tokens": 100})
        tracker.log_prompt_response("p", "r", model="gpt-4o-mini", latency_ms=300.0,
                                    token_usage={"prompt_tokens": 1000, "completion_tokens": 100})
    with mltrack.track_llm_context("b", tags={"team": "chat"}) as tracker:
        tracker.log_prompt_response("p", "r", model="gpt-4o", latency_ms=50.0,
                                    token_usage={"prompt_tokens": 100, "completion_tokens": 10})
        call = tracker.track_llm_call(model="gpt-4o")(lambda: (_ for _ in ()).throw(TimeoutError()))
        try:
            call()
        except TimeoutError:
            pass
    mltrack.flush(timeout=30)
    from mltrack.cli.report_data import collect, group_by

    rows = collect(store.client, ["0"], None)
    by_model = {g.key: g for g in group_by(rows, "model")}
    mini, four_o = by_model["gpt-4o-mini"], by_model["gpt-4o"]
    assert (mini.calls, mini.total_tokens, mini.errors) == (2, 2200, 0)
    assert mini.cost == 2 * (Decimal(1000) * Decimal("0.15") + Decimal(100) * Decimal("0.60")) / 10**6
    assert (mini.latency_p50, mini.latency_p95) == (200.0, 290.0)
    assert (four_o.calls, four_o.errors, four_o.error_rate) == (2, 1, 0.5)
    by_team = {g.key: g.calls for g in group_by(rows, "tag:team")}
    assert by_team == {"search": 2, "chat": 2}

    plots = tmp_path / "plots"
    assert main(["report", "--by", "model", "--since", "1h", "--plot", str(plots)]) == 0
    out = capsys.readouterr().out
    assert "4 calls in 2 runs" in out and "gpt-4o-mini" in out and "50.0%" in out
    assert "$0.000420" in out  # gpt-4o-mini's cost, in dollars with three significant digits
    pngs = sorted(p.name for p in plots.glob("*.png"))
    assert pngs == ["calls_by_model.png", "cost_usd_by_model.png", "latency_p95_ms_by_model.png",
                    "total_tokens_by_model.png"]
    assert all((plots / name).read_bytes()[:4] == b"\x89PNG" for name in pngs)
