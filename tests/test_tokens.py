"""Local token counting: exact counts, model mapping, chat overhead, and the offline fallbacks."""

from __future__ import annotations

import hashlib
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Iterator

import pytest
import tiktoken
import tiktoken.registry
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from mltrack import _safety
from mltrack._safety import TrackingWarning
from mltrack.engine import _encodings
from mltrack.engine.tokens import (
    count_completion_tokens,
    count_prompt_tokens,
    count_text_tokens,
    encoding_name_for,
    provision_offline_encodings,
)

CL100K_FILE = "9b5ad71b2ce5302211f9c61530b329a4922fc6a4"
O200K_FILE = "fb374d419588a4632f3f557e76b4b70aebbca790"
CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
O200K_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"

COOKBOOK_MESSAGES = [
    {"role": "system", "content": "You are a helpful, pattern-following assistant that translates corporate jargon "
                                  "into plain English."},
    {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
    {"role": "system", "name": "example_assistant", "content": "Things working well together will increase revenue."},
    {"role": "system", "name": "example_user", "content": "Let's circle back when we have more bandwidth to touch "
                                                          "base on opportunities for increased leverage."},
    {"role": "system", "name": "example_assistant", "content": "Let's talk later when we're less busy about how to "
                                                               "do better."},
    {"role": "user", "content": "This late pivot means we don't have time to boil the ocean for the client "
                                "deliverable."},
]


@pytest.fixture(scope="module", autouse=True)
def offline_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """tiktoken's cache filled from bpe-openai, so tiktoken's normal path works without network."""
    cache = tmp_path_factory.mktemp("tiktoken-cache")
    provision_offline_encodings(cache)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TIKTOKEN_CACHE_DIR", str(cache))
        _encodings.reset_for_tests()
        yield cache
    _encodings.reset_for_tests()


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any download attempt fails at once (connection refused) instead of depending on the sandbox."""
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def cold(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_network: None) -> Iterator[Path]:
    """Nothing resolved yet, tiktoken's in-memory registry empty and its cache dir empty."""
    empty = tmp_path / "empty-cache"
    empty.mkdir()
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(empty))
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    _encodings.reset_for_tests()
    _safety.reset_warnings_for_tests()
    yield empty
    _encodings.reset_for_tests()


def real(name: str) -> tiktoken.Encoding:
    return tiktoken.get_encoding(name)


KNOWN_COUNTS = [
    ("tiktoken is great!", 6, 6),
    ("antidisestablishmentarianism", 6, 6),
    ("2 + 2 = 4", 7, 7),
    ("お誕生日おめでとう", 9, 8),
    ("The quick brown fox jumps over the lazy dog.", 10, 10),
    ("def add(a, b):\n    return a + b\n", 12, 12),
    ("Привет, мир! 你好，世界！ مرحبا بالعالم", 25, 14),
    ("🙂👍🏽", 8, 4),
    ("Hello, world!", 4, 4),
    ("", 0, 0),
]


@pytest.mark.parametrize(("text", "cl100k", "o200k"), KNOWN_COUNTS)
def test_known_counts(text: str, cl100k: int, o200k: int) -> None:
    assert count_text_tokens(text, "gpt-4") == cl100k
    assert count_text_tokens(text, "gpt-4o") == o200k
    assert count_completion_tokens(text, "gpt-3.5-turbo") == cl100k
    assert count_completion_tokens(text, "o3-mini") == o200k


def test_published_token_ids_match_the_cookbook() -> None:
    assert real("cl100k_base").encode("tiktoken is great!") == [83, 1609, 5963, 374, 2294, 0]
    assert real("o200k_base").encode("tiktoken is great!") == [83, 8251, 2488, 382, 2212, 0]


def test_normal_path_serves_when_the_cache_is_provisioned() -> None:
    _encodings.reset_for_tests()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert count_text_tokens("tiktoken is great!", "gpt-4") == 6
        assert count_text_tokens("tiktoken is great!", "gpt-4o") == 6
    assert _encodings.source_of("cl100k_base") == "tiktoken"
    assert _encodings.source_of("o200k_base") == "tiktoken"


@pytest.mark.parametrize("model", [
    "gpt-4o", "gpt-4o-mini", "gpt-4o-2024-08-06", "chatgpt-4o-latest", "gpt-4.1", "gpt-4.1-nano",
    "gpt-4.5-preview", "o1", "o1-mini", "o1-2024-12-17", "o3", "o3-mini", "o3-pro", "o4-mini", "gpt-5",
    "gpt-5-mini", "gpt-5.1", "openai/gpt-4o", "azure/gpt-4.1-mini", "openrouter/openai/o3", "ft:gpt-4o-mini:org::x1",
    "GPT-4o", " gpt-4o ",
])
def test_o200k_models(model: str) -> None:
    assert encoding_name_for(model) == "o200k_base"


@pytest.mark.parametrize("model", [
    "gpt-4", "gpt-4-0613", "gpt-4-32k", "gpt-4-turbo", "gpt-4-turbo-2024-04-09", "gpt-3.5-turbo",
    "gpt-3.5-turbo-0125", "text-embedding-3-small", "text-embedding-3-large", "text-embedding-ada-002",
    "openai/gpt-4", "azure/gpt-3.5-turbo", "ft:gpt-3.5-turbo:org::x1",
    "claude-3-5-sonnet-20241022", "anthropic/claude-sonnet-4-20250514", "gemini-1.5-pro", "llama-3.1-70b-instruct",
    "mistral-large-latest", "my-finetune", "o1x", "o10", None, "",
])
def test_cl100k_models(model: str | None) -> None:
    assert encoding_name_for(model) == "cl100k_base"


@pytest.mark.parametrize("model", [
    "gpt-4o", "gpt-4o-mini", "chatgpt-4o-latest", "gpt-4.1", "o1", "o1-mini", "o3", "o3-mini", "o4-mini", "gpt-5",
    "gpt-4", "gpt-4-turbo", "gpt-3.5-turbo", "text-embedding-3-small", "text-embedding-ada-002",
])
def test_mapping_agrees_with_tiktoken(model: str) -> None:
    assert encoding_name_for(model) == tiktoken.encoding_name_for_model(model)


@pytest.mark.parametrize(("model", "published"), [
    ("gpt-3.5-turbo", 129), ("gpt-4-0613", 129), ("gpt-4", 129), ("gpt-4o", 124), ("gpt-4o-mini", 124),
])
def test_cookbook_chat_example(model: str, published: int) -> None:
    assert count_prompt_tokens(COOKBOOK_MESSAGES, model) == published


def test_chat_overhead_is_exact() -> None:
    one = [{"role": "user", "content": "tiktoken is great!"}]
    assert count_prompt_tokens(one, "gpt-4") == 3 + 1 + 6 + 3
    named = [{"role": "user", "name": "example_user", "content": "tiktoken is great!"}]
    assert count_prompt_tokens(named, "gpt-4") == 3 + 1 + count_text_tokens("example_user", "gpt-4") + 1 + 6 + 3
    assert count_prompt_tokens(one + one, "gpt-4o") == 2 * (3 + 1 + 6) + 3


def test_plain_string_has_no_chat_overhead() -> None:
    assert count_prompt_tokens("tiktoken is great!", "gpt-4") == 6
    assert count_prompt_tokens("", "gpt-4") == 0
    assert count_prompt_tokens(None, "gpt-4") == 0
    assert count_prompt_tokens([], "gpt-4") == 0


def test_content_parts_count_text_and_skip_images() -> None:
    for kind in ("text", "input_text", "output_text"):
        parts = [{"role": "user", "content": [
            {"type": kind, "text": "tiktoken is great!"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            {"type": "input_image", "image_url": "https://example.com/cat.png"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
        ]}]
        assert count_prompt_tokens(parts, "gpt-4") == 13
    split = [{"role": "user", "content": [{"type": "text", "text": "tiktoken"},
                                          {"type": "text", "text": " is great!"}]}]
    assert count_prompt_tokens(split, "gpt-4") == 3 + 1 + 3 + 3 + 3


def test_cookbook_example_as_content_parts() -> None:
    as_parts = [{**m, "content": [{"type": "text", "text": m["content"]}]} for m in COOKBOOK_MESSAGES]
    assert count_prompt_tokens(as_parts, "gpt-4") == 129
    assert count_prompt_tokens(as_parts, "gpt-4o") == 124


class Message(BaseModel):
    role: str
    content: str
    name: str | None = None


class Request(BaseModel):
    model: str
    messages: list[Message]


def test_pydantic_objects_are_dumped() -> None:
    messages = [Message(**m) for m in COOKBOOK_MESSAGES]
    assert count_prompt_tokens(messages, "gpt-4") == 129
    assert count_prompt_tokens(Request(model="gpt-4o", messages=messages), "gpt-4o") == 124
    assert count_prompt_tokens(Message(role="user", content="tiktoken is great!"), "gpt-4") == 13


def test_request_shaped_dicts() -> None:
    chat = {"model": "gpt-4", "messages": COOKBOOK_MESSAGES}
    assert count_prompt_tokens(chat, "gpt-4") == 129
    anthropic = {"model": "claude-sonnet-4", "system": "tiktoken is great!",
                 "messages": [{"role": "user", "content": [{"type": "text", "text": "tiktoken is great!"}]}]}
    assert count_prompt_tokens(anthropic, "claude-sonnet-4") == 6 + 13
    responses = {"model": "gpt-4o", "instructions": "tiktoken is great!", "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "tiktoken is great!"}]}]}
    assert count_prompt_tokens(responses, "gpt-4o") == 6 + 13
    assert count_prompt_tokens({"model": "gpt-4o", "input": "tiktoken is great!"}, "gpt-4o") == 6


def test_tool_calls_count_name_and_arguments() -> None:
    call = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]}
    expected = (3 + count_text_tokens("assistant", "gpt-4o") + count_text_tokens("get_weather", "gpt-4o")
                + count_text_tokens('{"city":"Paris"}', "gpt-4o") + 3)
    assert count_prompt_tokens([call], "gpt-4o") == expected


def test_anything_else_is_counted_as_its_str() -> None:
    assert count_prompt_tokens(12345, "gpt-4") == 2
    obj = object()
    assert count_prompt_tokens(obj, "gpt-4") == count_text_tokens(str(obj), "gpt-4")


def test_special_token_text_does_not_raise() -> None:
    text = "<|endoftext|><|fim_prefix|><|endofprompt|>"
    assert count_text_tokens(text, "gpt-4") == 19
    assert count_text_tokens(text, "gpt-4o") == 18
    assert count_text_tokens("<|endoftext|>", "gpt-4") == 7
    assert count_prompt_tokens([{"role": "user", "content": "<|endoftext|>"}], "gpt-4") == 3 + 1 + 7 + 3


def test_lone_surrogates_do_not_raise() -> None:
    assert count_text_tokens("a\ud800b", "gpt-4") > 0


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300), st.sampled_from(["gpt-4", "gpt-4o"]))
def test_counts_equal_tiktoken(text: str, model: str) -> None:
    assert count_text_tokens(text, model) == len(real(encoding_name_for(model)).encode_ordinary(text))


json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["role", "content", "name", "text", "type", "messages", "input", "system",
                                       "instructions", "prompt", "tool_calls", "function", "function_call",
                                       "arguments", "other"]), children, max_size=5),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(json_like)
def test_any_prompt_shape_counts_without_raising(prompt: object) -> None:
    assert count_prompt_tokens(prompt, "gpt-4o") >= 0


def test_fallback_to_bpe_openai_when_tiktoken_cannot_download(cold: Path) -> None:
    started = time.monotonic()
    with pytest.warns(TrackingWarning, match="bpe-openai"):
        assert count_text_tokens("tiktoken is great!", "gpt-4") == 6
    assert time.monotonic() - started < 10
    assert _encodings.source_of("cl100k_base") == "bpe-openai"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert count_text_tokens("お誕生日おめでとう", "gpt-4o") == 8
        assert count_prompt_tokens(COOKBOOK_MESSAGES, "gpt-4") == 129
        assert count_prompt_tokens(COOKBOOK_MESSAGES, "gpt-4o") == 124
    assert _encodings.source_of("o200k_base") == "bpe-openai"
    assert list(cold.iterdir()) == []
    assert tiktoken.registry.ENCODINGS == {}


@pytest.mark.parametrize("name", ["cl100k_base", "o200k_base"])
def test_offline_encoding_equals_tiktokens_own(name: str) -> None:
    expected = real(name)
    offline, error = _encodings._from_bpe_openai(name)
    assert error is None
    assert offline.name == expected.name
    assert offline._pat_str == expected._pat_str
    assert offline._special_tokens == expected._special_tokens
    assert offline.n_vocab == expected.n_vocab
    assert offline._mergeable_ranks == expected._mergeable_ranks


def test_heuristic_when_nothing_else_works(cold: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "bpe_openai", None)
    with pytest.warns(TrackingWarning, match=r'pip install "mltrack\[offline\]"') as record:
        assert count_text_tokens("tiktoken is great!", "gpt-4") == 5
    assert "rough" in str(record[0].message)
    assert _encodings.source_of("cl100k_base") == "heuristic"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert count_text_tokens("abcdefghi", "gpt-4o") == 3
        assert count_prompt_tokens([{"role": "user", "content": "abcd"}], "gpt-4") == 3 + 1 + 1 + 3


def test_slow_download_falls_back_then_upgrades(cold: Path, monkeypatch: pytest.MonkeyPatch,
                                                offline_cache: Path) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(offline_cache))
    loaded = real("cl100k_base")
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    release = threading.Event()

    def slow_get_encoding(name: str) -> tiktoken.Encoding:
        release.wait(10)
        return loaded

    monkeypatch.setattr(tiktoken, "get_encoding", slow_get_encoding)
    monkeypatch.setattr(_encodings, "TIKTOKEN_WAIT_SECONDS", 0.2)
    started = time.monotonic()
    with pytest.warns(TrackingWarning, match="no answer within"):
        assert count_text_tokens("tiktoken is great!", "gpt-4") == 6
    assert time.monotonic() - started < 5
    assert _encodings.source_of("cl100k_base") == "bpe-openai"
    release.set()
    deadline = time.monotonic() + 5
    while _encodings.source_of("cl100k_base") != "tiktoken" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _encodings.source_of("cl100k_base") == "tiktoken"
    assert count_text_tokens("tiktoken is great!", "gpt-4") == 6


def test_concurrent_first_use_resolves_once(cold: Path, monkeypatch: pytest.MonkeyPatch,
                                            offline_cache: Path) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(offline_cache))
    calls: list[str] = []
    original = tiktoken.get_encoding

    def counting_get_encoding(name: str) -> tiktoken.Encoding:
        calls.append(name)
        return original(name)

    monkeypatch.setattr(tiktoken, "get_encoding", counting_get_encoding)
    results: list[int] = []
    barrier = threading.Barrier(16)

    def work() -> None:
        barrier.wait()
        results.append(count_text_tokens("tiktoken is great!", "gpt-4"))

    threads = [threading.Thread(target=work) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [6] * 16
    assert calls == ["cl100k_base"]
    assert _encodings.source_of("cl100k_base") == "tiktoken"


def test_provision_writes_tiktoken_cache_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               no_network: None) -> None:
    target = tmp_path / "nested" / "cache"
    assert provision_offline_encodings(target) == ["cl100k_base", "o200k_base"]
    files = {p.name: p for p in target.iterdir()}
    assert set(files) == {CL100K_FILE, O200K_FILE}
    assert hashlib.sha256(files[CL100K_FILE].read_bytes()).hexdigest() == CL100K_SHA256
    assert hashlib.sha256(files[O200K_FILE].read_bytes()).hexdigest() == O200K_SHA256
    assert _encodings.tiktoken_source("cl100k_base").sha256 == CL100K_SHA256
    assert _encodings.tiktoken_cache_key(_encodings.tiktoken_source("o200k_base").url) == O200K_FILE
    stamp = files[CL100K_FILE].stat().st_mtime_ns
    assert provision_offline_encodings(str(target)) == ["cl100k_base", "o200k_base"]
    assert files[CL100K_FILE].stat().st_mtime_ns == stamp
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(target))
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    assert tiktoken.get_encoding("cl100k_base").encode("tiktoken is great!") == [83, 1609, 5963, 374, 2294, 0]
    assert tiktoken.get_encoding("o200k_base").encode("tiktoken is great!") == [83, 8251, 2488, 382, 2212, 0]


def test_provision_replaces_a_corrupt_cache_file(tmp_path: Path) -> None:
    (tmp_path / CL100K_FILE).write_bytes(b"garbage")
    provision_offline_encodings(tmp_path)
    assert hashlib.sha256((tmp_path / CL100K_FILE).read_bytes()).hexdigest() == CL100K_SHA256
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_provision_without_bpe_openai_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "bpe_openai", None)
    with pytest.raises(ImportError, match=r'pip install "mltrack\[offline\]"'):
        provision_offline_encodings(tmp_path)
