"""The errors and warnings users can catch (re-exported from ``mltrack``)."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration value is malformed; the message names the file, the key and what was expected."""


class BudgetWarning(UserWarning):
    """A run's cumulative tokens or cost passed a configured warning limit (emitted once per run and limit)."""


class BudgetExceededError(RuntimeError):
    """The run's cumulative cost reached ``llm_cost_limit_error``; raised before the next call is made."""

    def __init__(self, message: str, *, run_id: str | None = None, cost: float | None = None, limit: float | None = None):
        super().__init__(message)
        self.run_id = run_id
        self.cost = cost
        self.limit = limit
