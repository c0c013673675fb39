"""The model label, bounded: Prometheus keeps one series per label value, so model names cannot grow forever."""

from __future__ import annotations

import threading

OTHER = "other"
"""The label value of every model seen after the first ``limit`` distinct ones."""


class ModelLabels:
    """Model names as label values: the first ``limit`` distinct names as they are, every later one ``other``."""

    def __init__(self, limit: int) -> None:
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise ValueError(f"prometheus_max_models must be an integer >= 1, got {limit!r}")
        self.limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, model: str) -> str:
        """The label value for ``model``."""
        if model in self._seen:  # lock-free for names already admitted (the common case)
            return model
        with self._lock:
            if model in self._seen:
                return model
            if len(self._seen) >= self.limit:
                return OTHER
            self._seen.add(model)
            return model
