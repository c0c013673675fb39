"""``track_retrieval``: a ``with`` / ``async with`` block around a retrieval step (RAG), as a ``RETRIEVER`` span.

Inside an mltrack run the block is a child span of the run's trace (next to its ``LLM`` spans) and the run gets
``rag.retrieval_time_ms`` / ``rag.num_docs_retrieved`` at step = the retrieval's index in the run. Inside the
user's own MLflow span it is a child span made here, as for LLM calls (``_user_trace.py``), and its metrics go to
the active run if any. Outside both, with ``standalone_runs`` on, it gets a short run of its own, as an LLM call
does. Document and query text follow ``llm_log_prompts``: off, only the number of documents is written.
"""

from __future__ import annotations

import datetime as _dt
import time
from typing import Any, Iterable

from mltrack import _safety, writer
from mltrack.config import get_settings
from mltrack.entry import _runs
from mltrack.run_state import RunHandle
from mltrack.writer.records import LogRetrieval


def document_text(doc: Any) -> str:
    """The text of one retrieved document: a string, a dict's ``content`` / ``page_content``, a LangChain-style
    object's ``page_content``, else ``str(doc)``."""
    if isinstance(doc, str):
        return doc
    if isinstance(doc, dict):
        for key in ("content", "page_content"):
            if key in doc:
                return str(doc[key])
        return str(doc)
    text = getattr(doc, "page_content", None)
    return text if isinstance(text, str) else str(doc)


class Retrieval:
    """What ``track_retrieval`` yields: tell it what the retrieval found."""

    def __init__(self, query: str) -> None:
        self.query = query
        self.documents: list[str] = []

    def set_documents(self, docs: Iterable[Any]) -> None:
        """The documents retrieved (strings, dicts with ``content`` / ``page_content``, or objects)."""
        self.documents = [document_text(doc) for doc in docs]


class _RetrievalBlock:
    def __init__(self, query: Any, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError(f"track_retrieval: name must be a non-empty string, got {name!r}")
        self._handle_out = Retrieval(query if isinstance(query, str) else document_text(query))
        self._name = name
        self._started = 0.0
        self._run: RunHandle | None = None
        self._step = 0
        self._parent: Any = None

    def __enter__(self) -> Retrieval:
        self._started = time.time()
        _safety.guarded("starting a retrieval span", self._begin)
        return self._handle_out

    def _begin(self) -> None:
        settings = get_settings()
        if not settings.enabled:
            return
        from mltrack.instrumentation._user_trace import user_span

        self._run = _runs.current_run()
        self._parent = user_span(settings)
        if self._run is not None:
            self._step = next(self._run.retrieval_steps)

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        _safety.guarded("recording a retrieval", self._finish, time.time(), exc is not None)
        return None

    async def __aenter__(self) -> Retrieval:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        return self.__exit__(exc_type, exc, tb)

    def _finish(self, ended: float, failed: bool) -> None:
        settings = get_settings()
        if not settings.enabled:
            return
        found = self._handle_out
        keep = settings.llm_log_prompts
        query, docs = (found.query, tuple(found.documents)) if keep else (None, None)
        run, standalone = self._run, False
        if self._parent is not None:
            _child_span(self._parent, self._name, self._started, ended, query, docs, len(found.documents), failed)
        elif run is None:
            if not settings.standalone_runs:
                return
            name = "retrieval-" + _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            run, standalone = _runs.open_run(name, settings, kind="standalone"), True
            self._step = next(run.retrieval_steps)
        if run is None:
            return
        judging = run.judging
        if judging is not None:  # the judges read the run's context at its end (in memory only)
            judging.add_documents(found.documents)
        writer.submit(LogRetrieval(run, self._name, self._step, self._started, ended, query, docs,
                                   len(found.documents), failed, self._parent is None and settings.llm_log_traces))
        if standalone:
            _runs.close_run(run, None, None)


def _child_span(parent: Any, name: str, start: float, end: float, query: str | None, docs: tuple[str, ...] | None,
                count: int, failed: bool) -> None:
    """The same ``RETRIEVER`` span the writer would write, under the user's live span."""
    import mlflow

    from mltrack.writer.spans import retrieval_span

    piece = retrieval_span({"n": name, "st": start * 1000, "et": end * 1000, "q": query,
                            "d": list(docs) if docs is not None else None, "nd": count,
                            "s": "ERROR" if failed else "OK"})
    span = mlflow.start_span_no_context(piece["name"], span_type="RETRIEVER", parent_span=parent,
                                        inputs=piece["inputs"], attributes=piece["attributes"],
                                        start_time_ns=piece["start_ns"])
    span.end(outputs=piece["outputs"], status=piece["status"], end_time_ns=piece["end_ns"])


def track_retrieval(query: Any, name: str = "retrieval") -> _RetrievalBlock:
    """A retrieval step of the current run or trace: a ``RETRIEVER`` span (query in, documents out) and ``rag.*``
    metrics; ``handle.set_documents(docs)`` says what was found."""
    return _RetrievalBlock(query, name)
