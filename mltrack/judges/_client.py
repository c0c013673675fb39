"""Calls the judge model with the real openai / anthropic SDK, untracked, and prices the call with mltrack's engine.

Untracked: the call runs with the instrumentation's "inside an LLM call" flag set, so the patched SDK methods
pass it straight through (no record, no ``llm.*`` metric, no budget, no standalone run), whatever is
instrumented. Priced: tokens from the response, price from mltrack's own table (``pricing:`` overrides
included), in Decimal."""

from __future__ import annotations

import os
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from mltrack import _safety
from mltrack.judges._config import JudgeConfig


@dataclass(frozen=True)
class Reply:
    text: str
    cost: Decimal
    model: str


def _sdk(name: str) -> Any:
    try:
        return __import__(name)
    except ImportError:
        raise ImportError(f"the judges' provider {name!r} needs its SDK: pip install 'mltrack[{name}]'") from None


class JudgeClient:
    """One SDK client for the judge model (``base_url`` honored; the SDK's own retries off: the runner retries)."""

    def __init__(self, config: JudgeConfig, timeout: float) -> None:
        self.config = config
        if config.provider == "anthropic":
            sdk = _sdk("anthropic")
            key = os.environ.get("ANTHROPIC_API_KEY") or ("not-needed" if config.base_url else None)
            self._client = sdk.Anthropic(base_url=config.base_url, api_key=key, max_retries=0, timeout=timeout)
        else:
            sdk = _sdk("openai")
            key = os.environ.get("OPENAI_API_KEY") or ("not-needed" if config.base_url else None)
            self._client = sdk.OpenAI(base_url=config.base_url, api_key=key, max_retries=0, timeout=timeout)

    def complete(self, prompt: str, settings: Any, timeout: float | None = None) -> Reply:
        """The judge's answer to ``prompt`` and what it cost, within ``timeout`` seconds. Raises the SDK's errors."""
        from mltrack.instrumentation._call import _inside

        token = _inside.set(True)  # the instrumented SDK methods pass this call through untracked
        try:
            if self.config.provider == "anthropic":
                response = self._client.messages.create(model=self.config.model, max_tokens=512,
                                                        messages=[{"role": "user", "content": prompt}],
                                                        timeout=timeout)
            else:
                response = self._client.chat.completions.create(model=self.config.model, temperature=0,
                                                                messages=[{"role": "user", "content": prompt}],
                                                                timeout=timeout)
        finally:
            _inside.reset(token)
        return Reply(*_read(response, self.config, settings))


def _read(response: Any, config: JudgeConfig, settings: Any) -> tuple[str, Decimal, str]:
    from mltrack.engine.cost import compute_cost
    from mltrack.engine.process import price_table
    from mltrack.providers import _registry

    extracted = _registry.extract_response(response)
    if extracted is None:
        raise ValueError(f"the judge's response is not a known SDK response ({type(response).__name__})")
    model = extracted.model or config.model
    cost = Decimal(0)
    price = price_table(settings.pricing).lookup(model, config.provider) or price_table(settings.pricing).lookup(
        config.model, config.provider)
    if price is None or extracted.usage is None:
        _safety.warn_once(f"judge-unpriced:{model}", f"mltrack: no price known for the judge model {model!r}; "
                          "its calls count as $0.00 toward judges.max_cost_usd. Add it under 'pricing:'.")
    else:
        cost = compute_cost(price, extracted.usage).total
    return extracted.text or "", cost, model
