"""``mltrack.flush``: wait (bounded) for judgments in progress, then for the writer."""

from __future__ import annotations

import sys
import time

from mltrack import writer

JUDGES_FLUSH_MAX_S = 120.0  # with no timeout given: the most flush() waits for judges


def flush(timeout: float | None = None) -> bool:
    """Block until every record handed to mltrack so far is written (judge scores of runs already finished
    included); True when all were, False when ``timeout`` passed first or the store does not answer."""
    started = time.monotonic()
    runner = sys.modules.get("mltrack.judges._runner")  # loaded only once judges are on
    judged = True
    if runner is not None:
        judged = runner.wait(JUDGES_FLUSH_MAX_S if timeout is None else timeout)
    left = None if timeout is None else max(timeout - (time.monotonic() - started), 0.0)
    return writer.flush(left) and judged
