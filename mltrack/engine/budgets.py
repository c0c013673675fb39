"""Budgets: warn once per run when a limit is passed; refuse the next call once the hard cost limit is reached."""

from __future__ import annotations

import warnings
from decimal import Decimal
from typing import Any

from mltrack.errors import BudgetExceededError, BudgetWarning
from mltrack.run_state import RunHandle, Snapshot


def check_limits(handle: RunHandle, snapshot: Snapshot, settings: Any) -> str | None:
    """Warn for each limit this call passed first; returns the run's passed limits (for the tag) if any changed."""
    changed = False
    token_limit = settings.llm_token_limit_warning
    if token_limit is not None and snapshot.total_tokens > token_limit and handle.flag_budget("tokens"):
        changed = True
        warnings.warn(f"mltrack: run {handle.name!r} used {snapshot.total_tokens} tokens, over the "
                      f"llm_token_limit_warning of {token_limit}", BudgetWarning, stacklevel=4)
    cost_limit = settings.llm_cost_limit_warning
    if (cost_limit is not None and snapshot.cost is not None and snapshot.cost > Decimal(str(cost_limit))
            and handle.flag_budget("cost")):
        changed = True
        warnings.warn(f"mltrack: run {handle.name!r} cost ${snapshot.cost} so far, over the "
                      f"llm_cost_limit_warning of ${cost_limit}", BudgetWarning, stacklevel=4)
    return handle.budget_flags() if changed else None


def ensure_within_budget(handle: RunHandle | None, settings: Any) -> None:
    """Raise :class:`BudgetExceededError` when the run's cost has reached ``llm_cost_limit_error``."""
    limit = settings.llm_cost_limit_error
    if handle is None or limit is None:
        return
    spent = handle.cost
    if spent >= Decimal(str(limit)):
        raise BudgetExceededError(
            f"mltrack: run {handle.name!r} has cost ${spent}, reaching llm_cost_limit_error ${limit}; "
            "the call was not made.", run_id=handle.known_run_id, cost=float(spent), limit=float(limit))
