"""YAML specs: `rules: [...]` or `sections: [{title, rules, sections?}]`, for generated specs.

A loader that records each mapping's line lets errors point at the offending rule, as the
markdown parser does, instead of only naming the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from specalign.spec.model import Rule
from specalign.spec.parse import DerivedIds, ParsedDoc, check_priority, finish, spec_error

LINE = "__line__"
RULE_KEYS = ("id", "text", "section", "rationale", "examples", "exception", "priority")
SECTION_KEYS = ("title", "rules", "sections")
SHAPE = "'rules: [{id, text, rationale, ...}]' or 'sections: [{title, rules: [...]}]'"


class LineLoader(yaml.SafeLoader):
    """SafeLoader that stores each mapping's 1-based line under LINE."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        mapping = super().construct_mapping(node, deep=deep)
        mapping[LINE] = node.start_mark.line + 1
        return mapping


def strings(value: Any) -> tuple[str, ...]:
    """A string or a list of strings as a tuple of non-empty strings."""
    values = value if isinstance(value, list) else [value]
    return tuple(str(v).strip() for v in values if v is not None and str(v).strip())


def check_field(value: Any, key: str, path: Path | str, line: int) -> None:
    """A rule field is text (or, for text-like fields, a list of text lines); a mapping or
    a nested list would otherwise turn into its Python repr inside the rule."""
    one = (str, int, float)
    ok = value is None or (isinstance(value, one) and not isinstance(value, bool))
    if key not in ("id", "priority") and isinstance(value, list):
        ok = all(isinstance(v, one) and not isinstance(v, bool) for v in value)
    if not ok:
        raise spec_error(
            path,
            line,
            f"rule field '{key}' must be text, not {type(value).__name__} ({str(value)[:60]!r})",
            f"write '{key}: <text>'"
            + ("" if key in ("id", "priority") else " or a list of text lines"),
        )


def without_lines(value: Any) -> Any:
    """Metadata as written: the recorded lines removed at every depth."""
    if isinstance(value, dict):
        return {k: without_lines(v) for k, v in value.items() if k != LINE}
    if isinstance(value, list):
        return [without_lines(v) for v in value]
    return value


class YamlRules:
    """Walks the rules / sections tree, in document order, into Rules."""

    def __init__(self, path: Path | str) -> None:
        self.path = path
        self.ids = DerivedIds()
        self.rules: list[Rule] = []

    def add_rules(self, entries: Any, section: tuple[str, ...], line: int) -> None:
        if not isinstance(entries, list):
            raise spec_error(self.path, line, "'rules' must be a list", f"write {SHAPE}")
        for entry in entries:
            self.add_rule({"text": entry, LINE: line} if isinstance(entry, str) else entry, section)

    def add_rule(self, entry: Any, section: tuple[str, ...]) -> None:
        if not isinstance(entry, dict):
            raise spec_error(
                self.path, None, f"a rule must be a mapping, got {entry!r}", f"write {SHAPE}"
            )
        line = entry.pop(LINE, 0)
        unknown = sorted(str(k) for k in entry if k not in RULE_KEYS)
        if unknown:
            raise spec_error(
                self.path,
                line,
                f"unknown rule key(s) {unknown}",
                f"use only {', '.join(RULE_KEYS)}",
            )
        for key in ("id", "text", "section", "rationale", "examples", "exception", "priority"):
            check_field(entry.get(key), key, self.path, line)
        own = strings(entry["section"]) if entry.get("section") else section
        rule_id = str(entry["id"]).strip() if entry.get("id") is not None else self.ids.next(own)
        self.rules.append(
            Rule(
                id=rule_id,
                text=" ".join(strings(entry.get("text"))),
                section=own,
                rationale=" ".join(strings(entry.get("rationale"))),
                examples=strings(entry.get("examples")),
                exception=" ".join(strings(entry.get("exception"))),
                priority=check_priority(entry.get("priority"), self.path, line),
                line=line,
            )
        )

    def add_sections(self, entries: Any, parent: tuple[str, ...], line: int) -> None:
        if not isinstance(entries, list):
            raise spec_error(self.path, line, "'sections' must be a list", f"write {SHAPE}")
        for entry in entries:
            if not isinstance(entry, dict) or not entry.get("title"):
                where = entry.get(LINE, line) if isinstance(entry, dict) else line
                raise spec_error(
                    self.path, where, "a section needs a 'title'", "write '- title: Safety'"
                )
            where = entry.pop(LINE)
            unknown = sorted(str(k) for k in entry if k not in SECTION_KEYS)
            if unknown:
                raise spec_error(
                    self.path,
                    where,
                    f"unknown section key(s) {unknown}",
                    f"use only {', '.join(SECTION_KEYS)}",
                )
            section = (*parent, str(entry["title"]).strip())
            self.add_rules(entry.get("rules") or [], section, where)
            self.add_sections(entry.get("sections") or [], section, where)


def parse_yaml(text: str, path: Path | str) -> ParsedDoc:
    """Rules and metadata of a YAML spec."""
    try:
        data = yaml.load(text, Loader=LineLoader)  # a SafeLoader subclass: safe
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise spec_error(
            path,
            mark.line + 1 if mark is not None else 1,
            f"not valid YAML ({problem})",
            "check the indentation and quote values that contain ': '",
        ) from err
    if not isinstance(data, dict):
        raise spec_error(
            path, 1, f"a YAML spec must be a mapping, not {type(data).__name__}", f"write {SHAPE}"
        )
    walker = YamlRules(path)
    walker.add_rules(data.pop("rules", None) or [], (), 1)
    walker.add_sections(data.pop("sections", None) or [], (), 1)
    return finish(walker.rules, path, without_lines(data), "yaml")
