"""The writer's voice: its logger, and warnings that can never raise into a writer thread or a caller."""

from __future__ import annotations

import logging

from mltrack import _safety

logger = logging.getLogger("mltrack")


def warn_once(cause: str, message: str) -> None:
    """``_safety.warn_once`` that cannot raise (an application may turn warnings into errors; neither the
    writer's threads nor a caller of ``submit`` may die of that)."""
    try:
        _safety.warn_once(cause, message)
    except Exception:  # noqa: BLE001
        logger.warning(message)
