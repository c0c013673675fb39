"""LLM-as-a-judge scores for finished runs, in the background (see docs/judges.md).

Light on import: the config kind lives in ``_config`` (read by the config table); the runner, prompts and
client are imported only when judges are enabled or :func:`judge` is called."""

from __future__ import annotations

from typing import Any


def judge(run_id: str, metrics: Any = None) -> dict[str, Any]:
    """Judge one past run now; returns ``{judge name: score}`` (see :mod:`mltrack.judges._past`)."""
    from mltrack.judges._past import judge_run

    return judge_run(run_id, metrics)


__all__ = ["judge"]
