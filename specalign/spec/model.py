"""The spec data model shared by parsing, annotation, sampling, diffs and synthesis."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Direction = Literal["do", "dont"]
# Where in an interaction a rule applies: judging the request, shaping the response,
# or across the conversation (identity, tone, memory of context).
InteractionStage = Literal["request", "response", "conversation"]
PRIORITIES = ("critical", "high", "medium", "low")  # lexicographic order: first wins


@dataclass(frozen=True)
class Rule:
    """One rule of a spec, in document order.

    `id` is stable: an explicit marker (`[CH1]`) when the document has one, else derived
    from the section path and ordinal, so unchanged rules keep their ids across versions.
    """

    id: str
    text: str
    section: tuple[str, ...] = ()
    rationale: str = ""  # the "why": what MSM documents and value-style answers explain
    examples: tuple[str, ...] = ()
    exception: str = ""  # an explicit exception clause, if the document states one
    priority: str | None = None  # explicit priority from the document, if any
    line: int = 0  # 1-based line in the source file, for error messages

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Annotation:
    """SpecAlign's rule tags (RESEARCH.md s.1), used by the instance sampler and conflicts."""

    rule_id: str
    direction: Direction
    stage: InteractionStage
    domain: str
    family: str
    priority: str  # one of PRIORITIES
    has_exception: bool
    specificity: float  # 0 (broad principle) .. 1 (narrow, concrete rule)
    annotator: str = "keyword"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
