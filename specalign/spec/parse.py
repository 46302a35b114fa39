"""What every spec format shares once parsed: the result type, derived ids, and the checks.

Parsers (parse_markdown, parse_yaml) only read their syntax; the rules they produce go
through `finish` here, so every format gets the same guarantees: at least one rule, unique
ids, a known priority, and errors phrased `file:line: what is wrong. Fix: how`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from specalign.errors import SpecAlignError
from specalign.spec.model import PRIORITIES, Rule

FORMATS = ("markdown", "numbered", "yaml")
ACCEPTED = (
    "markdown rules '- [ID] text' (optionally with indented 'Why:', 'Example:', "
    "'Exception:', 'Priority:' lines), markdown list items under '## sections', "
    "a numbered list '1. text', or YAML with a 'rules:' or 'sections:' list"
)
ID_PATTERN = r"[A-Za-z0-9_][A-Za-z0-9_.\-]*"
UNSECTIONED = "rules"  # the slug path of rules that sit under no section heading


def spec_error(path: Path | str, line: int | None, what: str, fix: str) -> SpecAlignError:
    """One message a researcher can act on: where, what, and how to fix it."""
    where = f"{path}:{line}" if line else f"{path}"
    return SpecAlignError(f"{where}: {what}. Fix: {fix}")


def slug(title: str) -> str:
    """Lowercase, every run of non-alphanumerics one '-': the id-safe form of a title."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "section"


@dataclass
class DerivedIds:
    """`<section slug path>.<ordinal>` ids, counted per section path.

    Counting per path (not per document) keeps an id stable when an unrelated section gains
    or loses rules, which is what lets a spec diff match unchanged rules across versions.
    """

    counts: dict[str, int] = field(default_factory=dict)

    def next(self, section: tuple[str, ...]) -> str:
        base = ".".join(slug(title) for title in section) or UNSECTIONED
        self.counts[base] = self.counts.get(base, 0) + 1
        return f"{base}.{self.counts[base]}"


@dataclass
class ParsedDoc:
    """A parsed document: its metadata (front matter or YAML keys), rules and format."""

    meta: dict[str, Any]
    rules: tuple[Rule, ...]
    format: str


def check_priority(value: Any, path: Path | str, line: int) -> str | None:
    """The normalized priority, or a SpecAlignError naming the accepted values."""
    if value is None or value == "":
        return None
    level = str(value).strip().strip(".").lower()
    if level not in PRIORITIES:
        raise spec_error(
            path,
            line,
            f"unknown priority {value!r}",
            f"use one of {', '.join(PRIORITIES)} (e.g. 'Priority: high')",
        )
    return level


def finish(rules: list[Rule], path: Path | str, meta: dict[str, Any], fmt: str) -> ParsedDoc:
    """Check what every format must satisfy, then freeze the result."""
    if not rules:
        raise spec_error(path, 1, "no rules found", f"write rules in one accepted form: {ACCEPTED}")
    seen: dict[str, Rule] = {}
    for rule in rules:
        if not rule.text.strip():
            raise spec_error(
                path,
                rule.line,
                f"rule [{rule.id}] has no text",
                f"write the rule's statement after the id, e.g. '- [{rule.id}] The assistant ...'",
            )
        if rule.id in seen:
            raise spec_error(
                path,
                rule.line,
                f"duplicate rule id [{rule.id}] (also on line {seen[rule.id].line})",
                "give each rule its own id, e.g. renumber one of the two",
            )
        seen[rule.id] = rule
    return ParsedDoc(meta=meta, rules=tuple(rules), format=fmt)
