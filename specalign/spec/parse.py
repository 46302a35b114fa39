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


# Front-matter / YAML metadata fields specalign reads, each a single value (unknown fields are
# kept as they are, for the user's own tooling)
SCALAR_FIELDS = ("name", "version", "model_name", "provider", "previous", "msm_mode")
# Invisible characters that change what a rule says without showing it: C0/C1 controls (but
# tab and line ends) and the bidirectional overrides of "Trojan Source" text.
BIDI_CONTROLS = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def hidden_character(char: str) -> bool:
    code = ord(char)
    control = (code < 0x20 and char not in "\t\n\r") or 0x7F <= code <= 0x9F
    return control or char in BIDI_CONTROLS


def check_characters(text: str, path: Path | str) -> None:
    """Refuse control characters (a NUL byte, an escape sequence) and bidi overrides: they
    are invisible in an editor, yet they change the spec's hash and what a model reads."""
    for number, line in enumerate(text.split("\n"), start=1):
        for column, char in enumerate(line, start=1):
            if hidden_character(char):
                name = "NUL" if char == "\0" else f"U+{ord(char):04X}"
                raise spec_error(
                    path,
                    number,
                    f"invisible control character {name} at column {column}",
                    "delete it (e.g. `tr -d '\\000'` for NUL bytes) and save the file as "
                    "plain UTF-8 text",
                )


def check_meta_types(meta: dict[str, Any], path: Path | str, lines: list[str]) -> None:
    """Each field specalign reads holds one value (a string or a number), not a list or a
    mapping, which would otherwise become text like "['a', 'b']" in prompts and keys."""
    for key in SCALAR_FIELDS:
        value = meta.get(key)
        if value is None or (isinstance(value, str | int | float) and not isinstance(value, bool)):
            continue
        line = next(
            (n for n, text in enumerate(lines, 1) if text.lstrip().startswith(f"{key}:")), 1
        )
        raise spec_error(
            path,
            line,
            f"'{key}' must be a single value, not a {type(value).__name__} ({value!r})",
            f"write one value, e.g. '{key}: Aria' (quote it if it contains ': ')",
        )


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
