"""The built-in judges: one prompt each, asking for strict JSON ``{"score": 1-5, "rationale": "..."}`` with a
rubric per score; rendering templates and reading the judge's answer."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

_ANSWER_FORMAT = """
Answer with strict JSON only, no other text: {"score": <an integer from 1 to 5>, "rationale": "<one or two sentences>"}"""


@dataclass(frozen=True)
class Judge:
    """One judge: its name, its prompt template (``{question}``, ``{answer}``, ``{context}``) and whether it
    needs the run's retrieved context (skipped when the run has none)."""

    name: str
    template: str
    needs_context: bool = False


BUILTIN: dict[str, Judge] = {judge.name: judge for judge in (
    Judge("answer_relevancy", """You grade how relevant an assistant's answer is to the user's question.

Question:
{question}

Answer:
{answer}

Rubric:
5 - fully and directly answers the question, nothing off-topic
4 - answers the question with minor gaps or slight digressions
3 - partly answers it; important parts missing or padded with unrelated content
2 - touches the topic but does not really answer the question
1 - unrelated to the question, or a refusal without reason
""" + _ANSWER_FORMAT),
    Judge("faithfulness", """You grade whether an assistant's answer is supported by the retrieved context.

Question:
{question}

Retrieved context:
{context}

Answer:
{answer}

Rubric:
5 - every claim in the answer is supported by the context
4 - nearly all claims are supported; one minor unsupported detail
3 - some claims are supported, some are not found in the context
2 - most claims are not supported by the context
1 - the answer contradicts the context or is entirely unsupported
""" + _ANSWER_FORMAT, needs_context=True),
    Judge("retrieval_relevancy", """You grade how relevant the retrieved documents are to the user's question.

Question:
{question}

Retrieved context:
{context}

Rubric:
5 - the documents contain everything needed to answer the question
4 - the documents are relevant and contain most of what is needed
3 - some documents are relevant, others are noise
2 - the documents are mostly irrelevant, little of use
1 - nothing retrieved is relevant to the question
""" + _ANSWER_FORMAT, needs_context=True),
    Judge("tone", """You grade the tone of an assistant's answer: professional, courteous, appropriate to the question.

Question:
{question}

Answer:
{answer}

Rubric:
5 - courteous, clear and fitting throughout
4 - appropriate with a minor lapse (slightly curt or verbose)
3 - acceptable but noticeably off (too casual, stiff or condescending)
2 - unprofessional or dismissive in places
1 - rude, hostile or wholly inappropriate
""" + _ANSWER_FORMAT),
    Judge("coherence", """You grade the coherence of an assistant's answer: logical flow, consistency, clarity.

Question:
{question}

Answer:
{answer}

Rubric:
5 - well structured, consistent, easy to follow
4 - clear overall with a small jump or awkward passage
3 - understandable but disorganized or partly repetitive
2 - hard to follow, contradicts itself in places
1 - incoherent
""" + _ANSWER_FORMAT),
)}


def custom_judge(name: str, template: str) -> Judge:
    """A judge from a user's template; it needs context when the template uses ``{context}``."""
    return Judge(name, template + ("" if '"score"' in template else _ANSWER_FORMAT), "{context}" in template)


def render(template: str, question: str, answer: str, context: list[str]) -> str:
    """The template with ``{question}``, ``{answer}`` and ``{context}`` filled (other braces left alone)."""
    joined = "\n\n".join(f"[{i + 1}] {doc}" for i, doc in enumerate(context)) or "(none)"
    return template.replace("{question}", question).replace("{answer}", answer).replace("{context}", joined)


class Unparseable(ValueError):
    """The judge's answer is not the JSON asked for."""


_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


def parse_answer(text: str | None) -> tuple[int, str]:
    """``(score, rationale)`` from the judge's answer; :class:`Unparseable` when it is not a JSON object with an
    integer score from 1 to 5 (a code fence or text around the object is tolerated)."""
    match = _OBJECT.search(text or "")
    if match is None:
        raise Unparseable(f"no JSON object in the judge's answer: {(text or '')[:80]!r}")
    try:
        data: Any = json.loads(match.group(0))
    except ValueError as exc:
        raise Unparseable(f"the judge's answer is not valid JSON: {exc}") from None
    score = data.get("score") if isinstance(data, dict) else None
    if isinstance(score, float) and score.is_integer():
        score = int(score)
    if not isinstance(score, int) or isinstance(score, bool) or not 1 <= score <= 5:
        raise Unparseable(f"the judge's score is not an integer from 1 to 5: {score!r}")
    rationale = data.get("rationale")
    return score, rationale if isinstance(rationale, str) else ""


def question_of(prompt: Any) -> str:
    """The last user message of a prompt (a string, or a list of chat messages with string or part contents)."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, (list, tuple)):
        for message in reversed(prompt):
            if isinstance(message, dict) and message.get("role") in ("user", "human"):
                return _text(message.get("content"))
        if prompt and isinstance(prompt[-1], dict):
            return _text(prompt[-1].get("content"))
    return "" if prompt is None else str(prompt)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, (list, tuple)):
        return "\n".join(part.get("text", "") if isinstance(part, dict) else str(part) for part in content
                         if not isinstance(part, dict) or "text" in part)
    return "" if content is None else str(content)
