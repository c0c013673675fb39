"""Tracking never breaks user code: bad input, failing extractors and a failing store become one warning."""

from __future__ import annotations

import warnings

import pytest

import mltrack
from mltrack import _safety


@pytest.fixture
def lenient(monkeypatch):
    """The safety net as users get it (the test suite otherwise runs in strict mode)."""
    monkeypatch.delenv("MLTRACK_STRICT", raising=False)


def test_malformed_usage_warns_once_and_returns(store, lenient):
    tracker = mltrack.LLMTracker(model="gpt-4o-mini")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        calls = [tracker.log_prompt_response("p", "r", token_usage={"prompt_tokens": "lots"}) for _ in range(3)]
        tokens = [c.total_tokens for c in calls]  # priced off this thread; reading prices (and warns) here at the latest
    assert tokens == [0, 0, 0]
    internal = [w for w in caught if issubclass(w.category, _safety.TrackingWarning)]
    assert len(internal) == 1 and "token count must be an integer" in str(internal[0].message)
    assert all(c.total_tokens == 0 and c.total_cost is None for c in calls)


def test_failing_extractor_does_not_break_the_call(store, lenient):
    tracker = mltrack.LLMTracker(model="gpt-4o-mini")

    @tracker.track_llm_call(extract_response=lambda r: r["missing"],
                            extract_token_usage=lambda r: {"prompt_tokens": 4, "completion_tokens": 2})
    def llm():
        return {"text": "fine"}

    with pytest.warns(_safety.TrackingWarning, match="extract_response"):
        assert llm() == {"text": "fine"}
    assert tracker.totals["total_tokens"] == 6


def test_unreachable_store_never_reaches_user_code(lenient, tmp_path, monkeypatch):
    from mltrack import config

    monkeypatch.chdir(tmp_path)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{blocker}/nested/mlflow.db")
    config.reset()

    @mltrack.track
    def business():
        mltrack.LLMTracker(model="gpt-4o-mini").log_prompt_response("p", "r", token_usage={"prompt_tokens": 1,
                                                                                         "completion_tokens": 1})
        return "result"

    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        assert business() == "result"
        assert mltrack.flush(timeout=60) is False  # not written: kept in the journal until the store is back
    config.reset()


def test_strict_mode_surfaces_internal_errors(store):
    tracker = mltrack.LLMTracker(model="gpt-4o-mini")
    with pytest.raises(ValueError, match="token count"):  # priced off this thread: the error surfaces at flush
        tracker.log_prompt_response("p", "r", token_usage={"prompt_tokens": -3, "completion_tokens": 1})
        mltrack.flush(timeout=30)
