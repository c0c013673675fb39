"""One run as mltrack sees it: its identity (resolved by the writer), its running totals and budget flags."""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from mltrack.record import CostBreakdown, Usage


@dataclass(slots=True)  # hot path: not frozen (5x cheaper to build); never mutated after creation
class Snapshot:
    """A run's totals right after one call was added; the call's step is ``calls - 1``."""

    step: int
    calls: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: Decimal | None  # None until the run has a priced call
    models: str
    providers: str


class RunHandle:
    """A run mltrack logs into. Its MLflow id is known at once for external runs, or set by the writer."""

    def __init__(
        self,
        name: str | None,
        *,
        run_id: str | None = None,
        parent: "RunHandle | None" = None,
        experiment: str | None = None,
        tags: dict[str, str] | None = None,
        owned: bool = True,
        tracking_uri: str | None = None,
        kind: str = "external",
    ) -> None:
        self.name = name
        self.kind = kind  # who opened it: function (@track), context, tracker, standalone, or external
        self.parent = parent
        self.experiment = experiment
        self.tags = dict(tags or {})
        self.owned = owned
        self.tracking_uri = tracking_uri
        self.start_time = time.time()
        self.pid = os.getpid()  # a forked child logs into a run of its own under this one (see entry._runs)
        self.key = os.urandom(12).hex()
        """Client-generated identity of the run: the writer and its journal name the run by it until (and after)
        MLflow gives it an id, and tag ``mltrack.run_key`` carries it so a replayed start finds the run it made."""
        self._run_id = run_id
        self._id_ready = threading.Event()
        if run_id is not None:
            self._id_ready.set()
        self._lock = threading.Lock()
        self._calls = self._errors = 0
        self._prompt = self._completion = self._total = 0
        self._cost: Decimal | None = None
        self._models: set[str] = set()
        self._providers: set[str] = set()
        self._models_tag = self._providers_tag = ""  # the sets, sorted and comma-joined (tags llm.model/provider)
        self._budget_flags: set[str] = set()
        self._unsettled: deque[Any] = deque()  # calls handed over before pricing, oldest first
        self._settle_lock = threading.Lock()
        self.retrieval_steps = itertools.count()  # track_retrieval's step in this run (next() is atomic)
        self.judging: Any = None  # what judges read at the run's end (mltrack.judges); None unless judges are on

    # identity -------------------------------------------------------------------------------------
    def set_run_id(self, run_id: str | None) -> None:
        self._run_id = run_id
        self._id_ready.set()

    def wait_run_id(self, timeout: float | None = 30.0) -> str | None:
        """The MLflow run id, waiting for the writer to create the run when needed (None if it could not)."""
        self._id_ready.wait(timeout)
        return self._run_id

    @property
    def known_run_id(self) -> str | None:
        return self._run_id

    # totals ---------------------------------------------------------------------------------------
    def defer(self, item: Any) -> None:
        """Queue a call to be priced later; ``item.resolve()`` prices it and adds it here (see :meth:`settle`)."""
        self._unsettled.append(item)

    def settle(self) -> None:
        """Price the deferred calls, oldest first: run by the writer, or by whoever needs the totals sooner.

        Returns once every call deferred before it was called is in the totals, also one that another thread
        has taken out of the queue and is pricing (it holds the lock until that call is added)."""
        if not self._unsettled and not self._settle_lock.locked():
            return
        with self._settle_lock:
            unsettled = self._unsettled
            while unsettled:
                unsettled.popleft().resolve()

    def add(self, usage: Usage, cost: CostBreakdown | None, model: str | None, provider: str | None,
            failed: bool) -> Snapshot:
        with self._lock:
            step = self._calls
            self._calls += 1
            self._errors += failed
            self._prompt += usage.prompt_tokens or 0
            self._completion += usage.completion_tokens or 0
            self._total += usage.total_tokens or 0
            if cost is not None:
                self._cost = (self._cost or Decimal(0)) + cost.total
            if model and model not in self._models:
                self._models.add(model)
                self._models_tag = ",".join(sorted(self._models))
            if provider and provider not in self._providers:
                self._providers.add(provider)
                self._providers_tag = ",".join(sorted(self._providers))
            return Snapshot(step, self._calls, self._errors, self._prompt, self._completion, self._total,
                            self._cost, self._models_tag, self._providers_tag)

    @property
    def cost(self) -> Decimal:
        self.settle()
        return self._cost or Decimal(0)

    def totals(self) -> dict[str, Any]:
        self.settle()
        with self._lock:
            return {
                "calls": self._calls,
                "prompt_tokens": self._prompt,
                "completion_tokens": self._completion,
                "total_tokens": self._total,
                "cost": float(self._cost or 0),
            }

    def flag_budget(self, which: str) -> bool:
        """Mark a budget limit as passed; True only the first time (one warning per run and limit)."""
        with self._lock:
            if which in self._budget_flags:
                return False
            self._budget_flags.add(which)
            return True

    def budget_flags(self) -> str:
        with self._lock:
            return ",".join(sorted(self._budget_flags))
