"""What a provider adapter is: small detect + extract functions over SDK objects and dicts alike."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from mltrack.record import Usage


def get(obj: Any, name: str, default: Any = None) -> Any:
    """Read ``name`` from a dict or an object (SDK pydantic models), without converting either.

    A pydantic model's fields live in its ``__dict__``: reading them there skips pydantic's slow
    ``__getattr__``; properties and extra fields still go through ``getattr``.
    """
    if obj is None:
        return default
    if isinstance(obj, dict):
        return obj.get(name, default)
    fields = getattr(obj, "__dict__", None)
    if fields is not None:
        if name in fields:
            return fields[name]
        cls = type(obj)
        if getattr(cls, "__pydantic_fields__", None) is not None:  # a missing name: pydantic's miss path is slow
            extra = obj.__pydantic_extra__
            if extra and name in extra:
                return extra[name]
            if not _class_has(cls, name):
                return default
    return getattr(obj, name, default)


_CLASS_HAS: dict[tuple[type, str], bool] = {}


def _class_has(cls: type, name: str) -> bool:
    """Does the class define ``name`` (a property, a method)? Cached: the SDKs have a few dozen model classes."""
    key = (cls, name)
    found = _CLASS_HAS.get(key)
    if found is None:
        found = _CLASS_HAS[key] = any(name in klass.__dict__ for klass in cls.__mro__)
    return found


def as_int(value: Any) -> int | None:
    """A token count as int; ``None`` for missing; ValueError for garbage (the caller's safety net reports it)."""
    if value.__class__ is int and value >= 0:  # the common case first (bool is not int here)
        return value
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"token count must be an integer, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"token count must be >= 0, got {value}")
        return value
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    raise ValueError(f"token count must be an integer, got {value!r}")


def text_or_none(value: Any) -> str | None:
    """A model name or text field, or None when a malformed response put something else there."""
    return value if isinstance(value, str) else None


def first(items: Any) -> Any:
    """The first element of a list field (``choices``...), or None when it is empty or not a list."""
    return items[0] if isinstance(items, (list, tuple)) and items else None


def class_name(obj: Any) -> str:
    """An object's class name without generic parameters (``ParsedChatCompletion[Answer]`` → ``ParsedChatCompletion``)."""
    return type(obj).__name__.partition("[")[0]


def sdk_package(obj: Any) -> str:
    """Top-level package of an object's class (``openai``, ``anthropic``...), without importing anything."""
    return type(obj).__module__.partition(".")[0]


@dataclass(slots=True)  # hot path: not frozen (5x cheaper to build); never mutated after creation
class Extracted:
    """What a provider response says about its call."""

    provider: str
    model: str | None
    text: str | None
    usage: Usage | None
    kind: str = "chat"
    operation: str = "chat"  # the GenAI operation name: chat, text_completion, embeddings or responses
    service_tier: str | None = None  # as the response reports it (OpenAI: default, flex, priority, ...)


@dataclass(slots=True)  # hot path: not frozen (5x cheaper to build); never mutated after creation
class Request:
    """What a provider request (the kwargs of ``create``) says: the prompt, the model and the sampling params."""

    prompt: Any
    model: str | None
    params: dict[str, Any]
    operation: str | None = None  # the GenAI operation name, when the request's shape tells it


@dataclass(frozen=True)
class ProviderAdapter:
    """One provider's knowledge of its wire shapes. Registered in :mod:`mltrack.providers._registry`."""

    name: str
    is_response: Callable[[Any], bool]
    extract_response: Callable[[Any], Extracted]
    is_usage: Callable[[Any], bool]
    extract_usage: Callable[[Any], Usage]
    extract_request: Callable[[tuple, dict], Request]
    is_request: Callable[[dict], bool] = lambda kwargs: False


def total_of(prompt: int | None, completion: int | None, total: int | None) -> int | None:
    if total is not None:
        return total
    if prompt is not None and completion is not None:
        return prompt + completion
    return None


def fill_parts(prompt: int | None, completion: int | None, total: int | None) -> tuple[int | None, int | None]:
    """Derive a missing prompt or completion count from the total when the other part is known."""
    if total is not None:
        if prompt is None and completion is not None:
            prompt = max(total - completion, 0)
        elif completion is None and prompt is not None:
            completion = max(total - prompt, 0)
    return prompt, completion


SAMPLING_PARAMS = (
    "temperature", "top_p", "top_k", "max_tokens", "max_completion_tokens", "max_output_tokens", "n",
    "frequency_penalty", "presence_penalty", "seed", "stop", "stop_sequences", "reasoning_effort",
    "response_format", "tool_choice", "service_tier", "stream", "user", "logprobs", "top_logprobs",
)
_SAMPLING = frozenset(SAMPLING_PARAMS)


def sampling_params(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The request's sampling parameters worth keeping on the record (never credentials or headers)."""
    out: dict[str, Any] = {}
    for key, value in kwargs.items():  # a request names few of them: no scan of the whole list
        if key not in _SAMPLING or value is None or type(value).__name__ in ("NotGiven", "Omit"):
            continue
        if isinstance(value, (str, int, float, bool)):
            out[key] = value
        elif isinstance(value, (list, tuple)) and all(isinstance(v, (str, int, float, bool)) for v in value):
            out[key] = list(value)
        else:
            out[key] = str(value)
    return out


class StreamAccumulator:
    """Collects a provider's stream events into one call. ``add`` says whether the caller should see the event."""

    provider = ""
    operation = "chat"

    def __init__(self) -> None:
        self.model: str | None = None
        self.text_parts: list[str] = []
        self.usage: Usage | None = None
        self.content_events = 0  # events that carried generated content (for TTFT / inter-token latency)
        self.usage_final = False  # the provider's closing usage arrived (else completion tokens are estimated)
        self.service_tier: str | None = None  # as the stream reports it (priced by tier when the data has it)

    def add(self, event: Any) -> bool:
        raise NotImplementedError

    def finish(self) -> Extracted:
        usage = self.usage
        if usage is not None and not self.usage_final:
            usage = Usage(prompt_tokens=usage.prompt_tokens, cached_prompt_tokens=usage.cached_prompt_tokens,
                          cache_write_tokens=usage.cache_write_tokens,
                          cache_write_1h_tokens=usage.cache_write_1h_tokens)
        return Extracted(provider=self.provider, model=self.model, text="".join(self.text_parts) or None,
                         usage=usage, kind="stream", operation=self.operation, service_tier=self.service_tier)
