"""Judging finished runs off the request path: a bounded queue, a small pool of daemon threads
(``max_concurrency``), per-run sampling, a per-process spend cap, retries with backoff, a deadline per judgment.

A run is marked for judging when it opens (sampled then, so an unsampled run costs nothing); while it runs,
its last LLM call's prompt and response text and its retrievals' documents are kept on its handle (in memory
only); when it closes it is queued. A worker judges it and hands the scores to the writer as one record
(``judge.*`` metrics and feedback for the run's trace). Failures are counted in ``judge.errors`` and warned
once per cause; nothing ever reaches user code.
"""

from __future__ import annotations

import atexit
import logging
import queue
import random
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable

from mltrack import _safety, writer
from mltrack.judges._config import JudgeConfig, judge_config
from mltrack.judges._prompts import BUILTIN, Judge, Unparseable, custom_judge, parse_answer, question_of, render
from mltrack.writer.records import LogJudged

logger = logging.getLogger("mltrack")

MAX_PENDING = 1000  # runs waiting to be judged; past it a run is not judged (counted, warned once)
JUDGMENT_DEADLINE_S = 60.0  # one judge's answer, retries included
RETRY_PAUSES = (0.5, 1.0, 2.0)  # after a rate limit (429), a server error (5xx) or a lost connection
EXIT_WAIT_S = 2.0  # at interpreter exit: the most to wait for judgments in progress
ROOTED = ("function", "context")


class RunInput:
    """What the judges read of one run: its last answered LLM call and its retrieved documents."""

    __slots__ = ("prompt", "response", "documents")

    def __init__(self) -> None:
        self.prompt: Any = None
        self.response: str | None = None
        self.documents: list[str] = []

    def last_call(self, prompt: Any, text: str | None) -> None:
        if text is not None:
            self.prompt, self.response = prompt, text

    def add_documents(self, docs: list[str]) -> None:
        self.documents.extend(docs)


@dataclass
class Score:
    name: str
    score: float
    rationale: str


@dataclass
class Outcome:
    """One run's judgment: its scores, what the judge calls cost, how many judges failed."""

    scores: list[Score] = field(default_factory=list)
    cost: Decimal = Decimal(0)
    errors: int = 0
    calls: int = 0


def usd(amount: Decimal) -> str:
    """Money for people: two decimals, six below a cent (``$1.00``, ``$0.000150``)."""
    return f"${amount:.2f}" if amount >= Decimal("0.01") or amount == 0 else f"${amount:.6f}"


class Spend:
    """What judging has cost in this process; past the cap, judging stops (one warning)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.total = Decimal(0)

    def allow(self, cap: Decimal | None) -> bool:
        with self._lock:
            over = cap is not None and self.total >= cap
        if over:
            _safety.warn_once("judges-cap", f"mltrack: judges stopped: their spend in this process ({usd(self.total)}) "
                              f"reached judges.max_cost_usd ({usd(cap)}); later runs are not judged.")
        return not over

    def add(self, cost: Decimal) -> None:
        with self._lock:
            self.total += cost


SPEND = Spend()


def _retryable(exc: BaseException) -> bool:
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return status == 429 or status >= 500
    return type(exc).__name__ in ("APIConnectionError", "APITimeoutError")


def _failed(name: str, exc: BaseException) -> None:
    _safety.warn_once(f"judge-error:{type(exc).__name__}", f"mltrack: a judge failed ({name}: "
                      f"{type(exc).__name__}: {exc}); counted in judge.errors, further such failures are not "
                      "reported.")


def _ask(client: Any, prompt: str, settings: Any, sleep: Callable[[float], Any] = time.sleep) -> Any:
    """One judge call, retried with backoff on rate limits, server errors and lost connections, within the
    judgment's deadline."""
    deadline = time.monotonic() + JUDGMENT_DEADLINE_S
    for pause in (*RETRY_PAUSES, None):
        try:
            return client.complete(prompt, settings, max(deadline - time.monotonic(), 0.01))
        except Exception as exc:  # noqa: BLE001 - the SDK's errors
            if pause is None or not _retryable(exc) or time.monotonic() + pause > deadline:
                raise
            sleep(pause)
    raise AssertionError("unreachable")


def resolve_judges(config: JudgeConfig, metrics: Any = None) -> list[Judge | Callable[..., Any]]:
    """The judges to run: built-in names, names under ``custom``, and callables."""
    out: list[Judge | Callable[..., Any]] = []
    for metric in (config.metrics if metrics is None else metrics):
        if callable(metric) or isinstance(metric, Judge):
            out.append(metric)
        elif metric in config.custom:
            out.append(custom_judge(metric, config.custom[metric]))
        elif metric in BUILTIN:
            out.append(BUILTIN[metric])
        else:
            raise ValueError(f"unknown judge {metric!r}: use one of {', '.join(BUILTIN)}, a name under "
                             "judges.custom, or a callable returning (score, rationale)")
    return out


def judge_name(judge: Judge | Callable[..., Any]) -> str:
    """The judge's metric and feedback name (a callable's ``__name__``, made a valid MLflow metric name)."""
    if isinstance(judge, Judge):
        return judge.name
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", getattr(judge, "__name__", type(judge).__name__)) or "custom"


def run_judges(question: str, answer: str, context: list[str], config: JudgeConfig, settings: Any,
               client: Any, judges: list[Judge | Callable[..., Any]]) -> Outcome:
    """Every judge on one (question, answer, context); never raises."""
    outcome = Outcome()
    for judge in judges:
        name = judge_name(judge)
        if not isinstance(judge, Judge):
            try:
                score, rationale = judge(question=question, answer=answer, context=list(context))
                outcome.scores.append(Score(name, float(score), str(rationale or "")))
            except Exception as exc:  # noqa: BLE001 - the user's callable
                outcome.errors += 1
                _failed(name, exc)
            continue
        if judge.needs_context and not context:
            continue
        prompt = render(judge.template, question, answer, context)
        for attempt in (1, 2):  # an unparseable answer is asked again once
            if not SPEND.allow(config.max_cost_usd):
                return outcome
            try:
                reply = _ask(client, prompt, settings)
            except Exception as exc:  # noqa: BLE001
                outcome.errors += 1
                _failed(name, exc)
                break
            outcome.calls += 1
            outcome.cost += reply.cost
            SPEND.add(reply.cost)
            try:
                score, rationale = parse_answer(reply.text)
            except Unparseable as exc:
                if attempt == 2:
                    outcome.errors += 1
                    _failed(name, exc)
                continue
            outcome.scores.append(Score(name, float(score), rationale))
            break
    return outcome


class Runner:
    """The queue and the workers of this process."""

    def __init__(self) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(MAX_PENDING)
        self._cond = threading.Condition()
        self._busy = 0  # queued + running
        self._running = 0
        self._max = 1  # judgments at once: the latest judges.max_concurrency (threads are only ever added)
        self._workers: list[threading.Thread] = []
        self._closed = False
        self._clients: dict[tuple[str, str, str | None], Any] = {}
        atexit.register(self.close)

    def submit(self, handle: Any, settings: Any) -> None:
        config = judge_config(settings)
        with self._cond:
            if self._closed:
                return
            self._busy += 1
            self._max = config.max_concurrency
            while len(self._workers) < config.max_concurrency:
                worker = threading.Thread(target=self._work, name=f"mltrack-judge-{len(self._workers)}", daemon=True)
                worker.start()
                self._workers.append(worker)
        try:
            self._queue.put_nowait((handle, settings))
        except queue.Full:
            self._done()
            _safety.warn_once("judges-full", f"mltrack: {MAX_PENDING} runs wait to be judged; runs finished now "
                              "are not judged (raise judges.max_concurrency, or lower judges.sample_rate).")

    def _done(self) -> None:
        with self._cond:
            self._busy -= 1
            self._cond.notify_all()

    def _work(self) -> None:
        while True:
            handle, settings = self._queue.get()
            with self._cond:
                while self._running >= self._max:
                    self._cond.wait()
                self._running += 1
            try:
                _safety.guarded("judging a run", self._judge, handle, settings)
            except Exception:  # noqa: BLE001 - strict mode (mltrack's tests) re-raised a bug: show it, live on
                threading.excepthook(threading.ExceptHookArgs((*sys.exc_info(), threading.current_thread())))
            finally:
                with self._cond:
                    self._running -= 1
                self._done()

    def _client(self, config: JudgeConfig) -> Any:
        key = (config.provider, config.model, config.base_url)
        client = self._clients.get(key)
        if client is None:
            from mltrack.judges._client import JudgeClient

            client = self._clients[key] = JudgeClient(config, JUDGMENT_DEADLINE_S)
        return client

    def _judge(self, handle: Any, settings: Any) -> None:
        handle.settle()  # calls priced later are in: the last one is the run's last call
        found = handle.judging
        if found is None or found.response is None:
            return
        config = judge_config(settings)
        judges = resolve_judges(config)
        needs_client = any(isinstance(j, Judge) for j in judges)
        try:
            client = self._client(config) if needs_client else None
        except Exception as exc:  # noqa: BLE001 - no SDK, no API key
            _failed("client", exc)
            client = None
            judges = [j for j in judges if not isinstance(j, Judge)]
        outcome = run_judges(question_of(found.prompt), found.response, list(found.documents), config, settings,
                             client, judges)
        errors = outcome.errors + (sum(isinstance(j, Judge) for j in resolve_judges(config))
                                   if client is None and needs_client else 0)
        if not outcome.scores and not outcome.calls and not errors:
            return  # nothing asked (the spend cap, or no judge applies): nothing to write
        submit_outcome(handle, outcome, config.model, errors, keep_rationale(settings))

    def wait(self, timeout: float | None) -> bool:
        """Wait until every queued judgment is done; True when all were."""
        end = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._busy:
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self) -> None:
        """At exit: drop judgments not started (counted in the log), wait briefly for those in progress."""
        with self._cond:
            self._closed = True
        dropped = 0
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
            dropped += 1
            self._done()
        if dropped:
            logger.warning("mltrack: %d run(s) not judged at exit (judgments not started are dropped)", dropped)
        self.wait(EXIT_WAIT_S)


def keep_rationale(settings: Any) -> bool:
    """A rationale may quote the prompt or the answer: written only when both may appear in MLflow."""
    return bool(settings.llm_log_prompts and settings.llm_log_responses)


def submit_outcome(handle: Any, outcome: Outcome, model: str, errors: int, rationale: bool = True) -> None:
    ts = int(time.time() * 1000)
    rows = [(f"judge.{s.name}", s.score, 0, ts) for s in outcome.scores]
    rows += [("judge.cost", float(outcome.cost), 0, ts), ("judge.errors", float(errors), 0, ts)]
    feedback = tuple({"n": s.name, "v": s.score, "ra": s.rationale if rationale else None, "src": model}
                     for s in outcome.scores)
    tags = {f"mltrack.judged.{s.name}": model for s in outcome.scores}
    writer.submit(LogJudged(handle, tuple(rows), feedback, tags))


_runner: Runner | None = None
_runner_lock = threading.Lock()


def runner() -> Runner:
    global _runner
    if _runner is None:
        with _runner_lock:
            if _runner is None:
                _runner = Runner()
    return _runner


def attach(handle: Any, settings: Any, kind: str) -> None:
    """At a run's start: keep what the judges will read, if judges are on and this run is sampled."""
    if kind in ROOTED:
        config = judge_config(settings)
        if config.enabled and config.sample_rate > 0 and random.random() < config.sample_rate:
            handle.judging = RunInput()


def schedule(handle: Any) -> None:
    """At a run's end: queue it for judging (never blocks)."""
    from mltrack.config import get_settings

    runner().submit(handle, get_settings())


def wait(timeout: float | None) -> bool:
    """Wait for judgments queued or in progress (none: True at once)."""
    return True if _runner is None else _runner.wait(timeout)


def _after_fork_in_child() -> None:
    global _runner, _runner_lock
    _runner, _runner_lock = None, threading.Lock()  # the parent's workers do not exist here


import os as _os  # noqa: E402

if hasattr(_os, "register_at_fork"):
    _os.register_at_fork(after_in_child=_after_fork_in_child)
