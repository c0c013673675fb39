"""Deciding filters without spans (how an mlflow server is read): whatever ``_partial.decide`` answers from the
trace info and MLflow's own answers to the span questions must equal the full evaluation with every span read.
Random filters over the six known traces, on a real SQLite store (MLflow answers the span questions)."""

from __future__ import annotations

import random
from decimal import Decimal

from _insights_traces import build

from mltrack.insights._ast import And, Compare, Count, Field, Not, Or
from mltrack.insights._evaluate import compile_filter
from mltrack.insights._parser import parse
from mltrack.insights._partial import decide, span_questions
from mltrack.insights._pushdown import count_needs_a_span, native_filter

SPAN_VALUES = {"type": ["LLM", "TOOL", "RETRIEVER", "CHAIN"], "name": ["gpt-4o", "search", "lookup", "chat-b"],
               "status": ["OK", "ERROR"]}
OPS = ["=", "!=", "LIKE", "ILIKE", "IN", "NOT IN"]


def _span_clause(rng: random.Random) -> Compare:
    key = rng.choice(list(SPAN_VALUES))
    op = rng.choice(OPS)
    if op in ("IN", "NOT IN"):
        return Compare(Field("span", key), op, tuple(rng.sample(SPAN_VALUES[key], 2)))
    value = rng.choice(SPAN_VALUES[key])
    if op in ("LIKE", "ILIKE"):
        value = (value[:2].lower() if op == "ILIKE" else value[:2]) + "%"
    return Compare(Field("span", key), op, value)


def _leaf(rng: random.Random):
    kind = rng.randrange(6)
    if kind == 0:
        return _span_clause(rng)
    if kind == 1:
        where = tuple(_span_clause(rng) for _ in range(rng.choice((1, 1, 2))))
        return Count(where, rng.choice(["<", "<=", "=", "!=", ">", ">="]), rng.randrange(0, 5))
    if kind == 2:
        return Compare(Field("trace", "status"), "=", rng.choice(["OK", "ERROR"]))
    if kind == 3:
        return Compare(Field("tag", "env"), rng.choice(["=", "!="]), rng.choice(["prod", "dev"]))
    if kind == 4:
        return Compare(Field("trace", "total_cost"), rng.choice([">", "<="]), Decimal(rng.choice(["0.005", "0.02"])))
    return Compare(Field("span_attr", "mlflow.llm.model"), "=", rng.choice(["gpt-4o", "claude-3-5-sonnet"]))


def _filter(rng: random.Random, depth: int = 0):
    if depth >= 2 or rng.random() < 0.4:
        return _leaf(rng)
    kind = rng.randrange(3)
    if kind == 0:
        return Not(_filter(rng, depth + 1))
    return (And if kind == 1 else Or)(_filter(rng, depth + 1), _filter(rng, depth + 1))


def test_decisions_without_spans_equal_the_full_evaluation(store):
    from mlflow import MlflowClient

    from mltrack.insights._load import load_views

    build(store.uri)
    client = MlflowClient(tracking_uri=store.uri)
    views = load_views(client, ["0"], None, {"spans", "span_attributes", "tags", "metadata", "assessments"})
    assert len(views) == 6
    asked: dict[str, set[str]] = {}

    def answers(question: str) -> set[str]:
        if question not in asked:
            asked[question] = {t.info.trace_id for t in client.search_traces(
                locations=["0"], filter_string=question, max_results=100, include_spans=False)}
        return asked[question]

    rng = random.Random(13)
    decided = total = 0
    for _ in range(300):
        node = _filter(rng)
        sets = {q: answers(q) for q in span_questions(node)}
        decision, full = decide(node, sets), compile_filter(node)
        for view in views:
            value = decision(view)
            total += 1
            if value is not None:
                decided += 1
                assert value == full(view), (node, view.name)
    assert 0.4 < decided / total < 1  # most are decided without spans; totals and attributes never are


def test_what_is_decided_and_what_needs_spans(store):
    from mlflow import MlflowClient

    from mltrack.insights._load import load_views

    ids = build(store.uri)
    client = MlflowClient(tracking_uri=store.uri)
    views = {ids[v.trace_id]: v for v in load_views(client, ["0"], None, {"tags"})}  # no spans read at all
    llm = {i for i, name in ids.items() if name != "plain-f"}
    sets = {"span.type = 'LLM'": llm}

    def decided(text: str) -> dict[str, bool | None]:
        node = parse(text)
        assert span_questions(node) <= set(sets), text
        return {name: decide(node, sets)(view) for name, view in views.items()}

    unknown = dict.fromkeys(views)
    assert decided("count(span.type = 'LLM') > 0") == {**dict.fromkeys(views, True), "plain-f": False}
    assert decided("count(span.type = 'LLM') = 0") == {**dict.fromkeys(views, False), "plain-f": True}
    assert decided("count(span.type = 'LLM') > 2") == {**unknown, "plain-f": False}
    assert decided("count(span.type = 'LLM') > 2 AND tags.env = 'prod'") == {
        "chat-a": None, "chat-b": None, "agent-c": False, "agent-d": False, "batch-e": False, "plain-f": False}
    assert decided("count(span.type = 'LLM') > 2 OR trace.status = 'ERROR'") == {
        "chat-a": None, "chat-b": True, "agent-c": None, "agent-d": True, "batch-e": None, "plain-f": False}
    assert decided("trace.total_cost > 0.005 OR NOT span.type = 'LLM'") == {**unknown, "plain-f": True}
    assert count_needs_a_span(parse("count(span.type = 'LLM') >= 2")) and \
        not count_needs_a_span(parse("count(span.type = 'LLM') < 2"))
    assert native_filter(parse("count(span.type = 'LLM' AND span.status = 'ERROR') = 1 AND tags.env = 'prod'")) == \
        "span.type = 'LLM' AND span.status = 'ERROR' AND tags.`env` = 'prod'"
