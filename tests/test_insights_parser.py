"""The filter language's parser: trees for known filters, precedence, errors with positions, and property tests
(random filters from the grammar print and re-parse to the same tree; no input crashes the parser)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mltrack import FilterError
from mltrack.insights._ast import And, Compare, Count, Field, Not, Or, to_text
from mltrack.insights._parser import parse

STATUS_ERR = Compare(Field("trace", "status"), "=", "ERROR")
ENV_PROD = Compare(Field("tag", "env"), "=", "prod")
SLOW = Compare(Field("trace", "execution_time_ms"), ">", Decimal(5000))
LLM = Compare(Field("span", "type"), "=", "LLM")


def test_precedence_not_over_and_over_or():
    assert parse("trace.execution_time_ms > 5000 OR trace.status = 'ERROR' AND tags.env = 'prod'") == \
        Or(SLOW, And(STATUS_ERR, ENV_PROD))
    assert parse("(trace.execution_time_ms > 5000 or trace.status = 'ERROR') and tags.env = 'prod'") == \
        And(Or(SLOW, STATUS_ERR), ENV_PROD)
    assert parse("not trace.status = 'ERROR' and tags.env = 'prod'") == And(Not(STATUS_ERR), ENV_PROD)
    assert parse("NOT (trace.status = 'ERROR' AND tags.env = 'prod')") == Not(And(STATUS_ERR, ENV_PROD))
    assert parse("tags.env = 'prod' AND tags.env = 'prod' AND trace.status = 'ERROR'") == \
        And(And(ENV_PROD, ENV_PROD), STATUS_ERR)


def test_count_in_like_and_field_spellings():
    assert parse("count(span.type = 'LLM') > 3") == Count((LLM,), ">", 3)
    assert parse("COUNT(span.type = 'LLM' and span.status = \"ERROR\") >= 2") == \
        Count((LLM, Compare(Field("span", "status"), "=", "ERROR")), ">=", 2)
    assert parse("span.attributes.mlflow.llm.model = 'gpt-4o'") == \
        parse("span.attributes['mlflow.llm.model'] = 'gpt-4o'") == \
        Compare(Field("span_attr", "mlflow.llm.model"), "=", "gpt-4o")
    assert parse("tags.`a.b` IN ('x', 'y')") == \
        Compare(Field("tag", "a.b"), "IN", ("x", "y"))
    assert parse("tags.a.b NOT IN ('x')") == Compare(Field("tag", "a.b"), "NOT IN", ("x",))
    assert parse("trace.name ILIKE 'chat%'") == Compare(Field("trace", "name"), "ILIKE", "chat%")
    assert parse("feedback.rating <= 2.5") == Compare(Field("feedback", "rating"), "<=", Decimal("2.5"))
    assert parse("expectation.answer != 'it''s'") == Compare(Field("expectation", "answer"), "!=", "it's")
    assert parse("trace.total_cost >= 0.001") == Compare(Field("trace", "total_cost"), ">=", Decimal("0.001"))
    assert parse("metadata.`mlflow.user` = 'ann'") == Compare(Field("metadata", "mlflow.user"), "=", "ann")
    assert parse("assessment.score > -1") == Compare(Field("assessment", "score"), ">", Decimal(-1))


def test_printing_is_canonical():
    assert to_text(parse("count(span.type='LLM')>3 or not(tags.env='prod'and trace.status='OK')")) == \
        "count(span.type = 'LLM') > 3 OR NOT (tags.env = 'prod' AND trace.status = 'OK')"
    assert to_text(parse("tags.x = 'a' and (tags.y = 'b' and tags.z = 'c')")) == \
        "tags.x = 'a' AND (tags.y = 'b' AND tags.z = 'c')"
    assert to_text(parse("span.attributes.k = 'it\\'s'")) == "span.attributes['k'] = 'it\\'s'"


@pytest.mark.parametrize(("text", "position", "expected"), [
    ("", 0, "expected a field"),
    ("trace.status = ", 15, "expected a value: a quoted string or a number, got the end of the filter"),
    ("trace.status == 'OK'", 14, "expected a value"),
    ("trace.statu = 'OK'", 6, "expected a trace field: trace.status"),
    ("span.kind = 'LLM'", 5, "expected a span field: span.type"),
    ("bogus.x = 1", 0, "expected a field (trace.*, span.*"),
    ("tags.env = 'prod' AND", 21, "expected a field"),
    ("tags.env = 'prod' tags.x = 'y'", 18, "expected AND, OR or the end of the filter"),
    ("(tags.env = 'prod'", 18, "expected ')' or AND/OR"),
    ("count(tags.env = 'prod') > 1", 6, "expected a span.* field (count(...) counts the spans of a trace)"),
    ("count(span.type = 'LLM') > 1.5", 27, "expected a whole number of spans"),
    ("count(span.type = 'LLM' OR span.type = 'TOOL') > 1", 24, "joins span.* clauses with AND only"),
    ("count(span.type = 'LLM')", 24, "expected a comparison after count(...)"),
    ("tags.env = 'prod", 11, "this string is never closed"),
    ("tags.env LIKE 5", 14, "expected a quoted pattern after LIKE"),
    ("tags.env NOT LIKE 'x'", 13, "expected IN after NOT"),
    ("tags.env IN ('a' 'b')", 17, "expected ',' or ')' in the IN list"),
    ("trace.execution_time_ms > 'slow'", 26, "expected a number (trace.execution_time_ms is numeric)"),
    ("tags.env = 'prod' ; drop", 18, "unexpected character ';'"),
    ("tags.env ~ 'x'", 9, "unexpected character '~'"),
])
def test_errors_name_the_position_and_what_was_expected(text, position, expected):
    with pytest.raises(FilterError) as info:
        parse(text)
    assert info.value.position == position
    assert expected in str(info.value)
    assert isinstance(info.value, ValueError)
    assert str(info.value).endswith(" " * position + "^")  # the caret points at the position


# --- property tests: filters generated from the grammar
_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True)
_keys = st.one_of(_names, st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=8))
_strings = st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)
_numbers = st.one_of(st.integers(-10**6, 10**6).map(Decimal),
                     st.decimals(allow_nan=False, allow_infinity=False, places=3, min_value=-1000, max_value=1000))
_values = st.one_of(_strings, _numbers)
_ops = st.sampled_from(["=", "!=", "<", "<=", ">", ">="])


def _compare(field_st: st.SearchStrategy) -> st.SearchStrategy:
    def build(field: Field, kind: int, op: str, value, pattern: str, values: list) -> Compare:
        if field.kind == "trace" and field.key in ("execution_time_ms", "timestamp_ms", "end_time_ms",
                                                   "total_tokens", "total_cost"):
            value = value if isinstance(value, Decimal) else Decimal(7)
            values = [v if isinstance(v, Decimal) else Decimal(1) for v in values]
        if kind == 0:
            return Compare(field, op, value)
        if kind == 1:
            return Compare(field, "LIKE" if len(pattern) % 2 else "ILIKE", pattern)
        return Compare(field, "IN" if len(values) % 2 else "NOT IN", tuple(values))
    return st.builds(build, field_st, st.integers(0, 2), _ops, _values, _strings,
                     st.lists(_values, min_size=1, max_size=3))


_span_fields = st.one_of(st.builds(Field, st.just("span"), st.sampled_from(["type", "name", "status"])),
                         st.builds(Field, st.just("span_attr"), _keys))
_fields = st.one_of(
    st.builds(Field, st.just("trace"), st.sampled_from(["status", "execution_time_ms", "timestamp_ms", "name",
                                                        "total_tokens", "total_cost", "request_id"])),
    _span_fields,
    st.builds(Field, st.sampled_from(["tag", "metadata", "feedback", "expectation", "assessment"]), _keys),
)
_leaves = st.one_of(_compare(_fields),
                    st.builds(Count, st.lists(_compare(_span_fields), min_size=1, max_size=3).map(tuple), _ops,
                              st.integers(0, 50)))
filters = st.recursive(_leaves, lambda inner: st.one_of(st.builds(Not, inner), st.builds(And, inner, inner),
                                                        st.builds(Or, inner, inner)), max_leaves=8)


@settings(max_examples=300, deadline=None)
@given(filters)
def test_print_then_parse_gives_the_same_tree(tree):
    text = to_text(tree)
    assert parse(text) == tree
    assert to_text(parse(text)) == text


_fragments = st.sampled_from(["trace.status", "span.type", "span.attributes", "['k']", ".k", "tags.", "`x`", "count",
                              "(", ")", "AND", "or", "NOT", "IN", "LIKE", "=", "!=", ">=", "<", "'v'", "\"w\"", "3",
                              "-2.5", ",", "feedback.r", "'", "`", "[", "]", ".", "_", "1e3"])


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.lists(_fragments, max_size=12).map(" ".join), st.lists(_fragments, max_size=12).map("".join),
                 st.text(max_size=40), filters.map(to_text).map(lambda t: t[: len(t) // 2])))
def test_no_input_crashes_the_parser(text):
    try:
        tree = parse(text)
    except FilterError as exc:
        assert 0 <= exc.position <= len(text)
    else:
        assert parse(to_text(tree)) == tree
