"""Markdown and numbered-list specs: front matter, section headings and rule list items.

The syntax is what a person writes without thinking about a parser: `- [ID] statement` with
indented `Why:` / `Example:` / `Exception:` / `Priority:` lines. Documents without id
markers still work (list items under `##` sections, else a numbered list, else the bullets
of a document with no sections), with ids derived from the section path so they survive
edits elsewhere in the document.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from specalign.spec.model import Rule
from specalign.spec.parse import (
    ID_PATTERN,
    DerivedIds,
    ParsedDoc,
    check_priority,
    finish,
    spec_error,
)

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)(?:\s+#+)?\s*$")
BULLET = re.compile(r"^[-*+]\s+(.*)$")
NUMBERED = re.compile(r"^\d+[.)]\s+(.*)$")
# `[ID]` then whitespace or the end: `[text](url)` links and `[x]` mid-word are not markers.
MARKER = re.compile(rf"^\[({ID_PATTERN})\](?=\s|$)\s*(.*)$")
FIELD = re.compile(
    r"^(?:[-*+]\s+)?[*_]{0,2}(why|rationale|examples?|exception|priority)[*_]{0,2}\s*:"
    r"[*_]{0,2}\s*(.*)$",
    re.IGNORECASE,
)
NESTED_BULLET = re.compile(r"^[-*+]\s+")
FRONT_MATTER_FIX = (
    "write one 'key: value' per line between the two '---' lines, quoting values that "
    "contain ': ' or start with a special character (e.g. version: \"1.0\")"
)


@dataclass
class Item:
    """A column-0 list item and its indented continuation lines, before it becomes a rule."""

    line: int
    numbered: bool
    section: tuple[str, ...]
    head: str
    more: list[tuple[int, str]] = field(default_factory=list)


def split_front_matter(lines: list[str], path: Path | str) -> tuple[dict[str, Any], int]:
    """The front matter mapping and the index of the first body line (0 when there is none)."""
    if not lines or lines[0].strip() != "---":
        return {}, 0
    end = next((i for i in range(1, len(lines)) if lines[i].rstrip() in ("---", "...")), None)
    if end is None:
        raise spec_error(
            path, 1, "front matter opened by '---' is never closed", "add a '---' line after it"
        )
    try:
        meta = yaml.safe_load("\n".join(lines[1:end]))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        line = mark.line + 2 if mark is not None else 2  # +1: 1-based, +1: the opening '---'
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        what = f"front matter is not valid YAML ({problem})"
        raise spec_error(path, line, what, FRONT_MATTER_FIX) from err
    if meta is None:
        return {}, end + 1
    if not isinstance(meta, dict):
        raise spec_error(
            path,
            2,
            f"front matter must be a mapping of keys, not a {type(meta).__name__}",
            FRONT_MATTER_FIX,
        )
    return {str(k): v for k, v in meta.items()}, end + 1


@dataclass
class Scan:
    """What one pass over the body finds."""

    items: list[Item] = field(default_factory=list)
    has_sections: bool = False  # any `##`+ heading
    unclosed_fence: int | None = None  # line of a code fence that is never closed


def scan_items(lines: list[str], start: int) -> Scan:
    """Column-0 list items with their section path, skipping code blocks."""
    scan = Scan()
    stack: list[tuple[int, str]] = []  # (level, title) of the open `##`+ headings
    current: Item | None = None
    fence: str | None = None
    fence_line: int | None = None
    for lineno, raw in enumerate(lines[start:], start + 1):
        line = raw.rstrip()
        opened = FENCE.match(line)
        if fence is not None:
            if opened and line.strip().startswith(fence):
                fence = None
            continue
        if opened:
            fence, fence_line = opened.group(1), lineno
            current = current if line[:1].isspace() else None
            continue
        if not line.strip():
            continue  # a blank line does not end a list item: its indented lines may follow
        if line[0].isspace():
            if current is not None:
                current.more.append((lineno, line.strip()))
            continue
        current = None
        heading = HEADING.match(line)
        if heading:
            level = len(heading.group(1))
            stack = [(lv, t) for lv, t in stack if lv < level] if level > 1 else []
            if level > 1:
                stack.append((level, heading.group(2).strip()))
                scan.has_sections = True
            continue
        bullet, numbered = BULLET.match(line), NUMBERED.match(line)
        if bullet or numbered:
            head = (bullet or numbered).group(1).strip()  # type: ignore[union-attr]
            current = Item(lineno, bool(numbered), tuple(t for _, t in stack), head)
            scan.items.append(current)
    scan.unclosed_fence = fence_line if fence is not None else None
    return scan


def build_rule(item: Item, rule_id: str, head: str, path: Path | str) -> Rule:
    """Fold an item's continuation lines into the rule's text and labelled fields."""
    text: list[str] = [head] if head else []
    rationale: list[str] = []
    exception: list[str] = []
    examples: list[list[str]] = []
    priority: str | None = None
    target = text
    for lineno, content in item.more:
        labelled = FIELD.match(content)
        if labelled:
            label, value = labelled.group(1).lower(), labelled.group(2).strip()
            if label == "priority":
                priority = check_priority(value, path, lineno)
                target = text
                continue
            if label in ("why", "rationale"):
                target = rationale
            elif label == "exception":
                target = exception
            else:
                examples.append([])
                target = examples[-1]
            if value:
                target.append(value)
            continue
        if target is not text:
            if target and examples and target is examples[-1] and NESTED_BULLET.match(content):
                examples.append([])  # `Examples:` then one nested bullet per example
                target = examples[-1]
            content = NESTED_BULLET.sub("", content)
        target.append(content)
    return Rule(
        id=rule_id,
        text=" ".join(text).strip(),
        section=item.section,
        rationale=" ".join(rationale).strip(),
        examples=tuple(e for e in (" ".join(parts).strip() for parts in examples) if e),
        exception=" ".join(exception).strip(),
        priority=priority,
        line=item.line,
    )


def parse_markdown(text: str, path: Path | str) -> ParsedDoc:
    """Rules of a markdown or plain-text document; the format says which convention matched."""
    lines = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    meta, start = split_front_matter(lines, path)
    scan = scan_items(lines, start)
    if scan.unclosed_fence is not None:
        raise spec_error(
            path,
            scan.unclosed_fence,
            "code block opened here is never closed",
            "add the closing ``` line",
        )
    items = scan.items
    marked = [(item, MARKER.match(item.head)) for item in items]
    marked = [(item, m) for item, m in marked if m]
    if marked:
        rules = [build_rule(item, m.group(1), m.group(2).strip(), path) for item, m in marked]
        return finish(rules, path, meta, "markdown")
    ids = DerivedIds()
    sectioned = [item for item in items if not item.numbered and item.section]
    if sectioned:
        rules = [build_rule(item, ids.next(item.section), item.head, path) for item in sectioned]
        return finish(rules, path, meta, "markdown")
    numbered = [item for item in items if item.numbered]
    if numbered or scan.has_sections:
        rules = [build_rule(item, ids.next(item.section), item.head, path) for item in numbered]
        return finish(rules, path, meta, "numbered")
    # No sections at all (a title and a bare list): every bullet is a rule.
    rules = [build_rule(item, ids.next(item.section), item.head, path) for item in items]
    return finish(rules, path, meta, "markdown")
