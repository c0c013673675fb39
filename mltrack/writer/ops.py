"""What the caller's thread hands the writer: small frozen operations, built without touching MLflow."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Mapping

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


@dataclass(frozen=True)
class LogCall:
    handle: RunHandle
    processed: Processed
    flags: CallFlags
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


@dataclass(frozen=True)
class Barrier:
    """Set once every operation submitted before it has been written (or given up on)."""

    done: threading.Event = field(default_factory=threading.Event)


Op = Any
