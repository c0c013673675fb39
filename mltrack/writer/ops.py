"""What the caller's thread hands the writer: small frozen operations, built without touching MLflow.

They hold live objects (the run's handle, the engine's output) so building one costs the caller nothing; the
writer turns them into plain records (:mod:`mltrack.writer.records`) in its own threads, only when it writes
them or spills them to the journal.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:  # annotations only: the writer process reads records without the engine
    from mltrack.engine.process import Processed
    from mltrack.run_state import RunHandle


@dataclass(frozen=True)
class StartRun:
    handle: RunHandle
    params: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CallFlags:
    """The settings in force when the call was made (so a later ``configure`` does not rewrite history)."""

    llm: bool = True
    tokens: bool = True
    costs: bool = True
    prompts: bool = True
    responses: bool = True
    traces: bool = True


@dataclass(slots=True)  # hot path: not frozen (5x cheaper to build)
class LogCall:
    """One LLM call. ``processed`` and ``flags`` are None while the call waits to be priced (filled once, by
    :meth:`RunHandle.settle`, before the writer encodes it)."""

    handle: RunHandle
    processed: Processed | None
    flags: CallFlags | None
    budget_tag: str | None = None


@dataclass(frozen=True)
class SetTags:
    handle: RunHandle
    tags: Mapping[str, str]


@dataclass(frozen=True)
class EndRun:
    handle: RunHandle
    status: str
    end_time: float
    metrics: Mapping[str, float] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)


class Barrier:
    """Resolved once every operation submitted before it is in the journal; ``targets`` then says how far each
    segment must be written for all of them to be in MLflow. The first resolution wins."""

    __slots__ = ("done", "ok", "targets")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = False
        self.targets: dict[Any, int] = {}

    def resolve(self, ok: bool) -> None:
        if not self.done.is_set():
            self.ok = ok
            self.done.set()


Op = Any
