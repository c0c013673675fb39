"""mltrack: track what LLM calls cost and do, and write it into MLflow.

Only the names in ``__all__`` (and the ``mltrack.testing`` module) are public; every other module is internal.
Importing mltrack does not import mlflow, openai or anthropic.
"""

from __future__ import annotations

from mltrack._version import __version__
from mltrack.config import configure, get_config
from mltrack.entry.context import track_llm_context
from mltrack.entry.decorator import track
from mltrack.entry.retrieval import track_retrieval
from mltrack.entry.tracker import LLMTracker
from mltrack.errors import BudgetExceededError, BudgetWarning, ConfigError
from mltrack.insights import FilterError, calculate_trace_filter_correlation, search_traces
from mltrack.instrumentation import detect_frameworks, instrument, uninstrument
from mltrack.metrics import enable_prometheus
from mltrack.providers.anthropic import (
    anthropic_prompt_extractor,
    anthropic_response_extractor,
    anthropic_token_extractor,
)
from mltrack.providers.openai import openai_prompt_extractor, openai_response_extractor, openai_token_extractor
from mltrack.record import LLMCall
from mltrack.judges import judge
from mltrack.judges._flush import flush

__all__ = [
    "BudgetExceededError",
    "BudgetWarning",
    "ConfigError",
    "FilterError",
    "LLMCall",
    "LLMTracker",
    "__version__",
    "anthropic_prompt_extractor",
    "anthropic_response_extractor",
    "anthropic_token_extractor",
    "calculate_trace_filter_correlation",
    "configure",
    "detect_frameworks",
    "enable_prometheus",
    "flush",
    "get_config",
    "instrument",
    "judge",
    "openai_prompt_extractor",
    "openai_response_extractor",
    "openai_token_extractor",
    "search_traces",
    "track",
    "track_llm_context",
    "track_retrieval",
    "uninstrument",
]


def _auto_instrument_if_configured() -> None:
    from mltrack import _safety
    from mltrack.config import get_settings

    try:
        if get_settings().auto_instrument:
            from mltrack.instrumentation import auto_instrument

            auto_instrument()
    except ConfigError:
        pass  # a bad config file is reported at first use, not at import
    except Exception as exc:  # noqa: BLE001
        _safety.report_internal_error("auto-instrumentation", exc)


_auto_instrument_if_configured()
