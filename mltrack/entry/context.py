"""``track_llm_context``: a ``with`` / ``async with`` block that is one MLflow run, yielding its tracker."""

from __future__ import annotations

import time
from typing import Any, Mapping

from mltrack import _safety
from mltrack.config import get_settings
from mltrack.entry import _runs
from mltrack.entry.tracker import LLMTracker
from mltrack.instrumentation._open_streams import finish_run_streams
from mltrack.run_state import RunHandle


class _LLMContext:
    """The context manager behind :func:`track_llm_context` (sync and async)."""

    def __init__(self, name: str, model: str | None, provider: str | None, tags: Mapping[str, Any] | None,
                 experiment: str | None) -> None:
        self._name, self._model, self._provider = name, model, provider
        self._tags, self._experiment = tags, experiment
        self._handle: RunHandle | None = None
        self._token: Any = None
        self._started = 0.0

    def __enter__(self) -> LLMTracker:
        self._started = time.perf_counter()
        settings = get_settings()
        if settings.enabled:
            self._handle = _safety.guarded("opening a run", _runs.open_run, self._name, settings, tags=self._tags,
                                           experiment=self._experiment, kind="context")
        if self._handle is None:
            return LLMTracker(model=self._model, provider=self._provider)
        self._token = _runs.activate(self._handle)
        return LLMTracker._bound_to(self._handle, self._model, self._provider)

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if self._handle is None:
            return None
        if self._token is not None:
            try:
                _runs.deactivate(self._token)
            except ValueError:  # exited in another context than entered (e.g. a different task)
                pass
        elapsed = time.perf_counter() - self._started
        _safety.guarded("recording streams left open", finish_run_streams, self._handle)  # before the run ends
        _safety.guarded("closing a run", _runs.close_run, self._handle, exc, elapsed)
        return None

    async def __aenter__(self) -> LLMTracker:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        return self.__exit__(exc_type, exc, tb)


def track_llm_context(name: str, model: str | None = None, provider: str | None = None,
                      tags: Mapping[str, Any] | None = None, experiment: str | None = None) -> _LLMContext:
    """Open a run named ``name`` for the block (nested inside an active run) and yield an ``LLMTracker``."""
    return _LLMContext(name, model, provider, tags, experiment)
