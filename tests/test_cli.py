"""The mltrack command line: pricing, cost and config check, run as a user would (report: tests/test_report*.py)."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal

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
