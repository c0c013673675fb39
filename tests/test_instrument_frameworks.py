"""mltrack.instrument() over LangChain, LlamaIndex, LiteLLM and DSPy, each talking HTTP to the fake server.

Every call must be logged exactly once (with the OpenAI / Anthropic SDK instrumentation on underneath), with
the provider's usage (cache reads/writes included) and the exact cost from the published prices.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from decimal import Decimal

import pytest

# LiteLLM fetches its model cost map from the internet at import unless told to use its bundled copy;
# DSPy keeps a disk cache under the home folder unless told otherwise.
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
os.environ.setdefault("DSPY_CACHEDIR", tempfile.mkdtemp(prefix="mltrack-dspy-cache-"))

import mltrack  # noqa: E402
from mltrack.testing import ScriptedReply  # noqa: E402

# The frameworks' own import-time and deprecation warnings are not what these tests are about.
pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning:pydantic.*"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince211")]

MINI = "gpt-4o-mini"  # $0.15 input, $0.075 cached input, $0.60 output per 1M
SONNET = "claude-3-5-sonnet-20241022"  # $3 input, $0.30 cache read, $3.75 cache write, $15 output per 1M
OPENAI_USAGE = {"prompt_tokens": 900, "completion_tokens": 30, "total_tokens": 930,
                "prompt_tokens_details": {"cached_tokens": 512}, "completion_tokens_details": {"reasoning_tokens": 7}}
ANTHROPIC_USAGE = {"input_tokens": 40, "output_tokens": 12, "cache_read_input_tokens": 1000,
                   "cache_creation_input_tokens": 200}


def mini_cost(prompt: int, completion: int, cached: int = 0) -> Decimal:
    return ((prompt - cached) * Decimal("0.15") + cached * Decimal("0.075") + completion * Decimal("0.60")) / 10**6


def sonnet_cost(uncached: int, read: int, write: int, output: int) -> Decimal:
    return (uncached * Decimal(3) + read * Decimal("0.30") + write * Decimal("3.75") + output * 15) / 10**6


OPENAI_COST = mini_cost(900, 30, cached=512)
ANTHROPIC_COST = sonnet_cost(40, 1000, 200, 12)


@pytest.fixture
def everything():
    """Every installed framework instrumented, the SDKs underneath included (so double logging would show)."""
    done = mltrack.instrument()
    assert {"openai", "anthropic", "langchain", "llama_index", "litellm", "dspy"} <= set(done)
    yield
    mltrack.uninstrument()


def _lines(store, run_name):
    mltrack.flush(timeout=30)
    run = store.run_named(run_name)
    return run, store.artifact_lines(run.info.run_id)


def _assert_openai_line(line, provider="openai"):
    assert (line["provider"], line["model"]) == (provider, MINI)
    assert (line["prompt_tokens"], line["completion_tokens"], line["total_tokens"]) == (900, 30, 930)
    assert (line["cached_prompt_tokens"], line["reasoning_tokens"]) == (512, 7)
    assert line["total_cost"] == str(OPENAI_COST) and line["tokens_estimated"] is False


def _assert_anthropic_line(line):
    assert (line["provider"], line["model"]) == ("anthropic", SONNET)
    assert (line["prompt_tokens"], line["completion_tokens"], line["total_tokens"]) == (1240, 12, 1252)
    assert (line["cached_prompt_tokens"], line["cache_write_tokens"]) == (1000, 200)
    assert line["total_cost"] == str(ANTHROPIC_COST) and line["tokens_estimated"] is False


# --- detection and patching ------------------------------------------------------------------------------------


def test_detect_frameworks_imports_no_framework():
    # find_spec("llama_index.core") has to look inside the llama_index namespace package, which puts that empty
    # namespace (no code of its own) into sys.modules; none of LlamaIndex's code may be imported.
    code = ("import sys, mltrack; found = mltrack.detect_frameworks(); "
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('langchain', 'langchain_core', 'litellm', 'dspy', 'openai', 'anthropic') "
            "or m.startswith('llama_index.')); "
            "ns = sys.modules.get('llama_index'); "
            "print(sorted(found), heavy, ns is None or getattr(ns, '__file__', None) is None)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "['anthropic', 'dspy', 'langchain', 'litellm', 'llama_index', 'openai'] [] True"


def test_instrument_imports_no_framework_and_patches_each_when_it_is_imported():
    code = """
import sys, mltrack
done = mltrack.instrument()
heavy = ('langchain_core', 'litellm', 'dspy', 'llama_index.llms.openai')
print(sorted(done), sorted(m for m in heavy if m in sys.modules))
import litellm, dspy.clients.execution as execution
from langchain_core.language_models.chat_models import BaseChatModel
from llama_index.llms.openai.base import OpenAI
def ours(f):  # wrapped by mltrack (LlamaIndex's own methods are wrapt wrappers already)
    return getattr(getattr(f, '_self_wrapper', None), '__module__', '').startswith('mltrack.')
patched = [litellm.completion, litellm.main.acompletion, execution.execute, BaseChatModel.__dict__['stream'],
           OpenAI.__dict__['chat']]
print([ours(f) for f in patched])
mltrack.uninstrument()
print([ours(f) for f in (litellm.completion, execution.execute, OpenAI.__dict__['chat'])])
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split("\n")[:3] == [
        "['anthropic', 'dspy', 'langchain', 'litellm', 'llama_index', 'openai'] []",
        "[True, True, True, True, True]",
        "[False, False, False]",
    ]


def test_instrument_skips_a_framework_that_is_not_installed(monkeypatch):
    from mltrack.instrumentation import _manager

    monkeypatch.setattr(_manager, "_installed", lambda module: module not in ("dspy", "litellm"))
    try:
        done = mltrack.instrument()
        assert "dspy" not in done and "litellm" not in done and "langchain" in done
        assert mltrack.instrument("dspy") == []
    finally:
        mltrack.uninstrument()


def test_uninstrument_restores_every_framework_exactly():
    import dspy.clients.execution as execution
    import litellm
    import litellm.main
    from langchain_core.language_models.chat_models import BaseChatModel
    from llama_index.llms.openai.base import OpenAI

    def current():
        return (BaseChatModel.__dict__["_generate_with_cache"], BaseChatModel.__dict__["stream"],
                BaseChatModel.__dict__["_agenerate_with_cache"], OpenAI.__dict__["chat"],
                OpenAI.__dict__["astream_chat"], litellm.completion, litellm.main.acompletion, execution.execute,
                execution.aexecute)

    before = current()
    frameworks = ("langchain", "llama_index", "litellm", "dspy")
    assert mltrack.instrument(*frameworks) == list(frameworks)
    patched = current()
    assert all(a is not b for a, b in zip(patched, before))
    mltrack.instrument(*frameworks)
    assert all(a is b for a, b in zip(current(), patched))  # idempotent
    mltrack.uninstrument(*frameworks)
    assert all(a is b for a, b in zip(current(), before))


# --- LangChain ------------------------------------------------------------------------------------------------


@pytest.fixture
def chat_openai(fake_llm):
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(model=MINI, base_url=fake_llm.openai_base_url, api_key="sk-test", max_retries=0)


@pytest.fixture
def chat_anthropic(fake_llm):
    from langchain_anthropic import ChatAnthropic

    return ChatAnthropic(model=SONNET, base_url=fake_llm.anthropic_base_url, api_key="sk-ant-test", max_retries=0)


def test_langchain_invoke_openai_and_anthropic_logged_once(store, fake_llm, chat_openai, chat_anthropic, everything):
    fake_llm.queue(ScriptedReply(text="Hi there", usage=OPENAI_USAGE))
    fake_llm.queue(ScriptedReply(text="Hello!", usage=ANTHROPIC_USAGE))
    with mltrack.track_llm_context("lc") as tracker:
        answer = chat_openai.invoke([("system", "be brief"), ("human", "Say hi")], temperature=0.2)
        claude = chat_anthropic.invoke("Hello")
        assert tracker.totals["calls"] == 2
    assert answer.content == "Hi there" and claude.content == "Hello!"
    # LangChain's own numbers are what mltrack logs: input_tokens already include Anthropic's cache reads/writes
    assert claude.usage_metadata["input_tokens"] == 1240
    run, lines = _lines(store, "lc")
    _assert_openai_line(lines[0])
    _assert_anthropic_line(lines[1])
    assert lines[0]["prompt"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "Say hi"}]
    assert lines[0]["response"] == "Hi there" and lines[0]["params"]["temperature"] == 0.2
    assert lines[0]["metadata"]["framework"] == "langchain"
    assert run.data.metrics["llm.cost.cumulative"] == float(OPENAI_COST + ANTHROPIC_COST)
    assert run.data.tags["llm.provider"] == "anthropic,openai"
    assert "sk-test" not in str(lines) and "sk-ant-test" not in str(lines)


def test_langchain_stream_gets_usage_and_caller_sees_the_same_chunks(store, fake_llm, chat_openai, chat_anthropic):
    text = "alpha beta gamma delta"
    fake_llm.queue(ScriptedReply(text=text))
    plain = [(c.content, c.usage_metadata) for c in chat_openai.stream("Say hi")]
    assert "stream_options" not in fake_llm.requests[-1].json
    mltrack.instrument()
    try:
        fake_llm.queue(ScriptedReply(text=text, usage={"prompt_tokens": 21, "completion_tokens": 4,
                                                       "total_tokens": 25}))
        fake_llm.queue(ScriptedReply(text="one two three", usage=ANTHROPIC_USAGE))
        with mltrack.track_llm_context("lc-stream") as tracker:
            seen = [(c.content, c.usage_metadata) for c in chat_openai.stream("Say hi")]
            assert fake_llm.requests[-1].json["stream_options"] == {"include_usage": True}
            pieces = [c.content for c in chat_anthropic.stream("Hello")]
            assert tracker.totals["calls"] == 2
    finally:
        mltrack.uninstrument()
    assert seen == plain  # the usage chunk mltrack asked for is hidden
    assert "".join(pieces) == "one two three"
    _run, lines = _lines(store, "lc-stream")
    assert (lines[0]["prompt_tokens"], lines[0]["completion_tokens"], lines[0]["tokens_estimated"]) == (21, 4, False)
    assert lines[0]["total_cost"] == str(mini_cost(21, 4)) and lines[0]["response"] == text
    assert lines[0]["metadata"]["stream"] is True and lines[0]["ttft_ms"] <= lines[0]["latency_ms"]
    _assert_anthropic_line(lines[1])
    assert lines[1]["response"] == "one two three"


async def test_langchain_async_batch_and_outside_any_run(store, fake_llm, chat_openai, chat_anthropic, everything):
    fake_llm.queue(ScriptedReply(text="a", usage={"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11}))
    fake_llm.queue(ScriptedReply(text="b c", usage=ANTHROPIC_USAGE))
    async with mltrack.track_llm_context("lc-async") as tracker:
        await chat_openai.ainvoke("go")
        pieces = [c.content async for c in chat_anthropic.astream("go")]
        assert tracker.totals == {"calls": 2, "prompt_tokens": 1250, "completion_tokens": 13, "total_tokens": 1263,
                                  "cost": float(mini_cost(10, 1) + ANTHROPIC_COST)}
    assert "".join(pieces) == "b c"

    @mltrack.track
    def batch():
        return chat_openai.batch(["one", "two three"])  # worker threads: each call still lands in this run

    fake_llm.queue(ScriptedReply(text="x", usage={"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}),
                   ScriptedReply(text="y", usage={"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}))
    batch()
    fake_llm.queue(ScriptedReply(text="z", usage={"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}))
    chat_openai.invoke("alone")
    mltrack.flush(timeout=30)
    run = store.run_named("batch")
    assert store.history(run.info.run_id, "llm.tokens.cumulative.total") == [(0, 4), (1, 8)]
    standalone = [r for r in store.runs() if r.info.run_name.startswith("chat-")]
    assert len(standalone) == 1 and standalone[0].data.metrics["llm.tokens.total"] == 7
    assert standalone[0].data.metrics["llm.cost.total"] == float(mini_cost(5, 2))


def test_langchain_error_is_counted_and_reraised(store, fake_llm, chat_openai, everything):
    import openai

    fake_llm.queue(ScriptedReply(status=429))
    with mltrack.track_llm_context("lc-error") as tracker:
        with pytest.raises(openai.RateLimitError) as caught:
            chat_openai.invoke("hi")
        assert tracker.totals["calls"] == 1
    run, lines = _lines(store, "lc-error")
    # the error the caller got (langchain-openai re-raises it as its own RateLimitError subclass)
    assert run.data.metrics["llm.errors"] == 1 and lines[0]["error"] == type(caught.value).__name__
    assert lines[0]["total_tokens"] == 0 and lines[0]["provider"] == "openai"


def test_langchain_cache_hit_is_a_call_with_zero_tokens(store, fake_llm, everything):
    from langchain_core.caches import InMemoryCache
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(model=MINI, base_url=fake_llm.openai_base_url, api_key="sk-test", max_retries=0,
                      cache=InMemoryCache())
    fake_llm.queue(ScriptedReply(text="Hi there", usage=OPENAI_USAGE))
    with mltrack.track_llm_context("lc-cache") as tracker:
        before = len(fake_llm.requests)
        assert chat.invoke("Say hi").content == "Hi there"
        assert chat.invoke("Say hi").content == "Hi there"  # from LangChain's cache: no request
        assert len(fake_llm.requests) - before == 1
        assert tracker.totals["calls"] == 2 and tracker.totals["total_tokens"] == 930
    _run, lines = _lines(store, "lc-cache")
    _assert_openai_line(lines[0])
    assert lines[1]["metadata"]["cache_hit"] is True and lines[1]["total_tokens"] == 0
    assert Decimal(lines[1]["total_cost"]) == 0


def test_langchain_usage_metadata_normalization():
    from mltrack.providers.langchain import usage_from_metadata

    usage = usage_from_metadata({"input_tokens": 1300, "output_tokens": 50, "total_tokens": 1350,
                                 "input_token_details": {"cache_read": 1000, "cache_creation": 0,
                                                         "ephemeral_5m_input_tokens": 150,
                                                         "ephemeral_1h_input_tokens": 50},
                                 "output_token_details": {"priority_reasoning": 20}})
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (1300, 50, 1350)
    assert (usage.cached_prompt_tokens, usage.cache_write_tokens, usage.reasoning_tokens) == (1000, 200, 20)


# --- LlamaIndex -----------------------------------------------------------------------------------------------


@pytest.fixture
def li_openai(fake_llm):
    from llama_index.llms.openai import OpenAI

    return OpenAI(model=MINI, api_base=fake_llm.openai_base_url, api_key="sk-test", max_retries=0)


def test_llama_index_chat_and_complete_logged_once(store, fake_llm, li_openai, everything):
    from llama_index.core.llms import ChatMessage

    fake_llm.queue(ScriptedReply(text="Hi there", usage=OPENAI_USAGE))
    fake_llm.queue(ScriptedReply(text="done", usage={"prompt_tokens": 8, "completion_tokens": 1, "total_tokens": 9}))
    with mltrack.track_llm_context("li") as tracker:
        chat = li_openai.chat([ChatMessage(role="user", content="Say hi")])
        completion = li_openai.complete("Finish this")
        assert tracker.totals["calls"] == 2
    assert chat.message.content == "Hi there" and completion.text == "done"
    run, lines = _lines(store, "li")
    _assert_openai_line(lines[0])
    assert lines[0]["prompt"] == [{"role": "user", "content": "Say hi"}] and lines[0]["response"] == "Hi there"
    assert lines[1]["prompt"] == "Finish this" and lines[1]["response"] == "done"
    assert run.data.metrics["llm.cost.cumulative"] == float(OPENAI_COST + mini_cost(8, 1))


async def test_llama_index_streams_and_async(store, fake_llm, li_openai):
    from llama_index.core.llms import ChatMessage

    messages = [ChatMessage(role="user", content="count")]
    fake_llm.queue(ScriptedReply(text="one two three"))
    plain = [(c.delta, c.message.content) for c in li_openai.stream_chat(messages)]
    mltrack.instrument()
    try:
        fake_llm.queue(ScriptedReply(text="one two three", usage={"prompt_tokens": 9, "completion_tokens": 3,
                                                                  "total_tokens": 12}))
        fake_llm.queue(ScriptedReply(text="a b", usage={"prompt_tokens": 7, "completion_tokens": 2,
                                                        "total_tokens": 9}))
        fake_llm.queue(ScriptedReply(text="c", usage={"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}))
        fake_llm.queue(ScriptedReply(text="d e", usage={"prompt_tokens": 6, "completion_tokens": 2,
                                                        "total_tokens": 8}))
        async with mltrack.track_llm_context("li-stream") as tracker:
            seen = [(c.delta, c.message.content) for c in li_openai.stream_chat(messages)]
            assert fake_llm.requests[-1].json["stream_options"] == {"include_usage": True}
            gen = await li_openai.astream_chat(messages)
            async_pieces = [c.delta async for c in gen]
            await li_openai.achat(messages)
            await li_openai.acomplete("more")
            assert tracker.totals["calls"] == 4
    finally:
        mltrack.uninstrument()
    assert seen == plain  # the usage chunk mltrack asked for is hidden
    assert "".join(p for p in async_pieces if p) == "a b"
    run, lines = _lines(store, "li-stream")
    assert [(ln["prompt_tokens"], ln["completion_tokens"]) for ln in lines] == [(9, 3), (7, 2), (5, 1), (6, 2)]
    assert all(ln["tokens_estimated"] is False for ln in lines)
    assert lines[0]["response"] == "one two three" and lines[0]["metadata"]["stream"] is True
    assert run.data.metrics["llm.cost.cumulative"] == float(mini_cost(9, 3) + mini_cost(7, 2) + mini_cost(5, 1)
                                                           + mini_cost(6, 2))


# --- LiteLLM --------------------------------------------------------------------------------------------------


def test_litellm_completion_openai_and_anthropic_logged_once(store, fake_llm, everything):
    import litellm

    fake_llm.queue(ScriptedReply(text="Hi there", usage=OPENAI_USAGE))
    fake_llm.queue(ScriptedReply(text="Hello!", usage=ANTHROPIC_USAGE))
    with mltrack.track_llm_context("litellm") as tracker:
        answer = litellm.completion(model=f"openai/{MINI}", api_base=fake_llm.openai_base_url, api_key="sk-test",
                                    messages=[{"role": "user", "content": "Say hi"}], max_tokens=40)
        claude = litellm.completion(model=f"anthropic/{SONNET}", api_base=fake_llm.anthropic_base_url,
                                    api_key="sk-ant-test", messages=[{"role": "user", "content": "Hello"}])
        assert tracker.totals["calls"] == 2
    assert answer.choices[0].message.content == "Hi there" and claude.choices[0].message.content == "Hello!"
    run, lines = _lines(store, "litellm")
    _assert_openai_line(lines[0])
    _assert_anthropic_line(lines[1])
    assert lines[0]["params"] == {"max_tokens": 40} and lines[0]["metadata"]["framework"] == "litellm"
    assert run.data.metrics["llm.cost.cumulative"] == float(OPENAI_COST + ANTHROPIC_COST)


async def test_litellm_streams_and_acompletion(store, fake_llm):
    import litellm

    def ask(**kw):
        return litellm.completion(model=f"openai/{MINI}", api_base=fake_llm.openai_base_url, api_key="sk-test",
                                  messages=[{"role": "user", "content": "count"}], **kw)

    fake_llm.queue(ScriptedReply(text="one two three"))
    plain = [(len(c.choices), c.choices[0].delta.content if c.choices else None) for c in ask(stream=True)]
    mltrack.instrument()
    try:
        fake_llm.queue(ScriptedReply(text="one two three", usage={"prompt_tokens": 9, "completion_tokens": 3,
                                                                  "total_tokens": 12}))
        fake_llm.queue(ScriptedReply(text="a b", usage={"prompt_tokens": 7, "completion_tokens": 2,
                                                        "total_tokens": 9}))
        fake_llm.queue(ScriptedReply(text="c", usage={"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}))
        async with mltrack.track_llm_context("litellm-stream") as tracker:
            seen = [(len(c.choices), c.choices[0].delta.content if c.choices else None) for c in ask(stream=True)]
            assert fake_llm.requests[-1].json["stream_options"] == {"include_usage": True}
            stream = await litellm.acompletion(model=f"openai/{MINI}", api_base=fake_llm.openai_base_url,
                                               api_key="sk-test", messages=[{"role": "user", "content": "go"}],
                                               stream=True)
            pieces = [c.choices[0].delta.content async for c in stream if c.choices]
            await litellm.acompletion(model=f"openai/{MINI}", api_base=fake_llm.openai_base_url, api_key="sk-test",
                                      messages=[{"role": "user", "content": "go"}])
            assert tracker.totals["calls"] == 3
    finally:
        mltrack.uninstrument()
    assert seen == plain  # the usage chunk mltrack asked for is hidden
    assert "".join(p for p in pieces if p) == "a b"
    run, lines = _lines(store, "litellm-stream")
    assert [(ln["prompt_tokens"], ln["completion_tokens"]) for ln in lines] == [(9, 3), (7, 2), (5, 1)]
    assert all(ln["tokens_estimated"] is False and ln["provider"] == "openai" for ln in lines)
    assert lines[0]["response"] == "one two three" and lines[1]["metadata"]["stream"] is True
    assert run.data.metrics["llm.cost.cumulative"] == float(mini_cost(9, 3) + mini_cost(7, 2) + mini_cost(5, 1))


# --- DSPy -----------------------------------------------------------------------------------------------------


def test_dspy_lm_calls_logged_once_with_dspys_usage(store, fake_llm, everything):
    import dspy

    native = dspy.LM(f"openai/{MINI}", api_base=fake_llm.openai_base_url, api_key="sk-test", cache=False)
    via_litellm = dspy.LM(f"openai/{MINI}", api_base=fake_llm.openai_base_url, api_key="sk-test", cache=False,
                          engine="litellm")
    claude = dspy.LM(f"anthropic/{SONNET}", api_base=fake_llm.anthropic_base_url + "/v1", api_key="sk-ant-test",
                     cache=False)
    fake_llm.queue(ScriptedReply(text="Hi there", usage=OPENAI_USAGE))
    fake_llm.queue(ScriptedReply(text="Hi again", usage=OPENAI_USAGE))
    fake_llm.queue(ScriptedReply(text="Hello!", usage=ANTHROPIC_USAGE))
    before = len(fake_llm.requests)
    with mltrack.track_llm_context("dspy") as tracker:
        assert native("Say hi") == ["Hi there"]
        assert via_litellm(messages=[{"role": "user", "content": "Say hi"}]) == ["Hi again"]
        assert claude("Hello") == ["Hello!"]
        assert tracker.totals["calls"] == 3 and len(fake_llm.requests) - before == 3
    run, lines = _lines(store, "dspy")
    _assert_openai_line(lines[0])
    _assert_openai_line(lines[1])
    _assert_anthropic_line(lines[2])
    assert lines[0]["prompt"] == "Say hi" and lines[1]["prompt"] == [{"role": "user", "content": "Say hi"}]
    assert lines[1]["response"] == "Hi again"
    assert {ln["metadata"]["framework"] for ln in lines} == {"dspy"}
    assert run.data.metrics["llm.cost.cumulative"] == float(2 * OPENAI_COST + ANTHROPIC_COST)


async def test_dspy_acall_and_cache_hit(store, fake_llm, everything):
    import dspy

    lm = dspy.LM(f"openai/{MINI}", api_base=fake_llm.openai_base_url, api_key="sk-test", cache=False)
    fake_llm.queue(ScriptedReply(text="async", usage={"prompt_tokens": 7, "completion_tokens": 1, "total_tokens": 8}))
    cached = dspy.LM(f"openai/{MINI}", api_base=fake_llm.openai_base_url, api_key="sk-test", cache=True,
                     temperature=0.7, rollout_id=int.from_bytes(os.urandom(4), "big"))
    fake_llm.queue(ScriptedReply(text="cached", usage={"prompt_tokens": 4, "completion_tokens": 1,
                                                       "total_tokens": 5}))
    async with mltrack.track_llm_context("dspy-async") as tracker:
        assert await lm.acall("hi") == ["async"]
        before = len(fake_llm.requests)
        assert cached("same question") == ["cached"]
        assert cached("same question") == ["cached"]  # answered by DSPy's cache: no request
        assert len(fake_llm.requests) - before == 1
        assert tracker.totals["calls"] == 3 and tracker.totals["total_tokens"] == 13
    _run, lines = _lines(store, "dspy-async")
    assert lines[2]["metadata"]["cache_hit"] is True and lines[2]["total_tokens"] == 0
    assert Decimal(lines[2]["total_cost"]) == 0 and lines[1]["total_cost"] == str(mini_cost(4, 1))
