"""Rule annotation (SpecAlign, RESEARCH.md s.1): direction, interaction stage, domain,
family, priority, exception and specificity for every rule.

Two annotators share one output type. `KeywordAnnotator` is structural and lexical:
deterministic, instant, the CPU default; its tags are heuristics, good enough to steer the
instance sampler's coverage constraints. `LLMAnnotator` asks a language model for the same
fields as JSON, validates them, retries with the validation error, and counts rejects
(falling back to the keyword tags for that rule) instead of failing the run.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any, Protocol

from specalign.spec.model import PRIORITIES, Annotation, Rule
from specalign.spec.spec import Spec

log = logging.getLogger(__name__)

NEGATIVE = re.compile(
    r"\b(never|must not|mustn't|should not|shouldn't|do not|does not|don't|doesn't|avoid|"
    r"refuses?|declines?|not (?:to )?(?:reveal|share|provide|give|help|assist|use)|no longer|"
    r"prohibited|forbidden|may not|cannot)\b",
    re.IGNORECASE,
)
EXCEPTION = re.compile(r"\b(unless|except|excepting|other than|only if|only when)\b", re.I)
STAGE_WORDS = {
    "request": r"\b(request|requests|asks?|asked|prompt|instruction|instructions|query|"
    r"intent|verif\w*|identity of the user|user says)\b",
    "response": r"\b(answer|answers|respond|response|reply|explain|recommend\w*|suggest\w*|"
    r"write|format|provide|share|reveal|offer|describe|cite)\b",
    "conversation": r"\b(tone|persona|identity|throughout|conversation|always|memory|"
    r"context|style|introduce|relationship|character)\b",
}
PRIORITY_WORDS = [
    ("critical", r"\b(never|under no circumstances|at all times|always refuse|must never)\b"),
    ("high", r"\b(must|required|always)\b"),
    ("medium", r"\b(should|prefer(?:s|ably)?|avoid)\b"),
]
FAMILY_WORDS = {
    "safety": r"\b(harm\w*|danger\w*|weapon\w*|safe\w*|self-harm|violen\w*)\b",
    "privacy": r"\b(privacy|personal data|account details|private|confidential\w*)\b",
    "security": r"\b(verif\w*|password|security|authenticat\w*|fraud)\b",
    "honesty": r"\b(honest\w*|truth\w*|decept\w*|transparen\w*|mislead\w*|lie)\b",
    "oversight": r"\b(oversight|monitor\w*|shut\w*|sanction\w*|principal|control)\b",
    "preference": r"\b(prefers?|likes?|favou?rs?|care for|dislikes?)\b",
    "helpfulness": r"\b(help\w*|assist\w*|useful|answer\w*)\b",
    "style": r"\b(tone|concise|format\w*|style|friendly|polite)\b",
}


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "general"


def count(pattern: str, text: str) -> int:
    return len(re.findall(pattern, text, flags=re.IGNORECASE))


class KeywordAnnotator:
    """Deterministic tags from the document's structure and the rule's wording."""

    name = "keyword"

    def annotate(self, spec: Spec) -> dict[str, Annotation]:
        return {rule.id: self.annotate_rule(rule) for rule in spec.rules}

    def annotate_rule(self, rule: Rule) -> Annotation:
        text = rule.text
        stage_scores = {stage: count(words, text) for stage, words in STAGE_WORDS.items()}
        best_stage = max(stage_scores, key=lambda s: (stage_scores[s], s == "response"))
        # family: a subsection when the spec nests them; else a topic cluster of the wording
        # (a family equal to the domain would make family diversity meaningless)
        topical = [f for f, words in FAMILY_WORDS.items() if count(words, text)]
        if len(rule.section) >= 2:
            family = slug(rule.section[-1])
        elif topical:
            family = topical[0]
        else:
            family = slug(rule.section[0]) if rule.section else "general"
        priority = rule.priority or next(
            (level for level, words in PRIORITY_WORDS if count(words, text)), "low"
        )
        words = len(text.split())
        specificity = 0.2 + min(words, 40) / 100 + 0.15 * bool(rule.examples)
        specificity += 0.15 * bool(rule.exception) + 0.1 * bool(re.search(r"\d|\"", text))
        return Annotation(
            rule_id=rule.id,
            direction="dont" if NEGATIVE.search(text) else "do",
            stage=best_stage,  # type: ignore[arg-type]
            domain=slug(rule.section[0]) if rule.section else "general",
            family=family,
            priority=priority,
            has_exception=bool(rule.exception) or bool(EXCEPTION.search(text)),
            specificity=round(min(specificity, 1.0), 3),
            annotator=self.name,
        )


class TextGenerator(Protocol):
    """What the LLM annotator needs from an LLM backend (specalign.llm, issue 4)."""

    def generate(
        self,
        chats: list[list[dict[str, str]]],
        sampling: dict[str, Any],
        schema: dict[str, Any] | list[Any] | None = None,
    ) -> list[Any]: ...


PROMPT = """You annotate one rule of an AI model specification.
Rule id: {id}
Section: {section}
Rule: {text}
Rationale: {rationale}
Exception: {exception}

Reply with only a JSON object with these keys:
"direction": "do" or "dont"; "stage": "request", "response" or "conversation" (where in an
interaction the rule applies); "domain": 1-3 word topic; "family": 1-3 word cluster of
related rules; "priority": one of {priorities}; "has_exception": true or false;
"specificity": a number from 0 (broad principle) to 1 (narrow concrete rule)."""


def prompt(rule: Rule) -> str:
    return PROMPT.format(
        id=rule.id,
        section=" > ".join(rule.section) or "-",
        text=rule.text,
        rationale=rule.rationale or "-",
        exception=rule.exception or "-",
        priorities=", ".join(PRIORITIES),
    )


FIELDS: dict[str, Callable[[Any], bool]] = {
    "direction": lambda v: v in ("do", "dont"),
    "stage": lambda v: v in ("request", "response", "conversation"),
    "domain": lambda v: isinstance(v, str) and 0 < len(v) <= 60,
    "family": lambda v: isinstance(v, str) and 0 < len(v) <= 60,
    "priority": lambda v: v in PRIORITIES,
    "has_exception": lambda v: isinstance(v, bool),
    "specificity": lambda v: isinstance(v, int | float) and 0 <= v <= 1,
}


def annotation_schema() -> dict[str, Any]:
    """What `validate` accepts, as a JSON schema: constrained backends can only write it."""
    from specalign.llm import schemas

    return schemas.record(
        direction=schemas.one_of(["do", "dont"]),
        stage=schemas.one_of(["request", "response", "conversation"]),
        domain={"type": "string", "minLength": 1, "maxLength": 60},
        family={"type": "string", "minLength": 1, "maxLength": 60},
        priority=schemas.one_of(PRIORITIES),
        has_exception={"type": "boolean"},
        specificity={"type": "number", "minimum": 0, "maximum": 1},
    )


def validate(data: dict[str, Any]) -> dict[str, Any]:
    """The annotation fields of a JSON reply, checked one by one; ValueError says which."""
    bad = [name for name, ok in FIELDS.items() if name not in data or not ok(data[name])]
    if bad:
        raise ValueError(f"missing or invalid fields: {bad}")
    return {name: data[name] for name in FIELDS}


class LLMAnnotator:
    """Tags from an LLM; bad replies are retried with the error, then counted as rejects."""

    name = "llm"

    def __init__(
        self,
        llm: TextGenerator,
        max_attempts: int = 3,
        temperature: float = 0.0,
        max_new_tokens: int = 256,
    ) -> None:
        self.llm = llm
        self.max_attempts = max_attempts
        self.sampling = {"temperature": temperature, "max_new_tokens": max_new_tokens}
        self.rejects: list[str] = []
        self.retries = 0
        self.constrained = 0  # requests decoded under the annotation schema

    def annotate(self, spec: Spec) -> dict[str, Annotation]:
        fallback = KeywordAnnotator().annotate(spec)
        return self.annotate_rules(list(spec.rules), fallback)

    def annotate_rule(self, rule: Rule, fallback: Annotation) -> Annotation:
        return self.annotate_rules([rule], {rule.id: fallback})[rule.id]

    def annotate_rules(
        self, rules: list[Rule], fallback: dict[str, Annotation]
    ) -> dict[str, Annotation]:
        """All rules in one batched request per attempt; only the invalid ones are retried."""
        from specalign.llm.structured import generate_json

        chats = [[{"role": "user", "content": prompt(rule)}] for rule in rules]
        values, stats = generate_json(
            self.llm,
            chats,
            validate,
            max_attempts=self.max_attempts,
            sampling=self.sampling,
            schema=annotation_schema(),
        )
        self.retries += stats.retries
        self.constrained += stats.constrained
        done: dict[str, Annotation] = {}
        for rule, value in zip(rules, values, strict=True):
            if value is None:
                self.rejects.append(rule.id)
                done[rule.id] = fallback[rule.id]
            else:
                done[rule.id] = Annotation(rule_id=rule.id, annotator=self.name, **value)
        if stats.rejects:
            log.warning(
                "%d rule(s) without a valid LLM annotation after %d attempts; keyword tags "
                "used: %s",
                len(stats.rejects),
                self.max_attempts,
                [rules[i].id for i in stats.rejects],
            )
        return done
