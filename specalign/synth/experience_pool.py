"""SpecAlign's experience pool (RESEARCH.md s.1): attacks that made the defender break a rule,
shown to the planner of later rounds as examples of what worked.

The pool is capped (the oldest entries leave first) and ordered by insertion, so the same
attacks in the same order always give the same pool. For an instance, the planner sees the
entries closest to it: those that targeted one of its rules, then those from instances
sharing a rule family, then the most recent.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class PoolEntry:
    index: int  # insertion order over the whole synthesis (recency)
    round: int
    instance_id: str
    families: tuple[str, ...]  # the rule families of the instance the attack came from
    target_rule: str
    violated_rule_ids: tuple[str, ...]
    strategy: str
    attack: str

    def to_dict(self) -> dict[str, Any]:
        row = asdict(self)
        return {
            **row,
            "families": list(self.families),
            "violated_rule_ids": list(self.violated_rule_ids),
        }


class ExperiencePool:
    """Successful attacks, at most `size` of them (first in, first out)."""

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError(f"pool_size must be >= 0, got {size}")
        self.size = size
        self.entries: list[PoolEntry] = []
        self.added = 0

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, **fields: Any) -> None:
        entry = PoolEntry(
            index=self.added,
            families=tuple(fields.pop("families")),
            violated_rule_ids=tuple(fields.pop("violated_rule_ids")),
            **fields,
        )
        self.added += 1
        if self.size:
            self.entries = [*self.entries, entry][-self.size :]

    def top(
        self, k: int, *, rule_ids: list[str], families: list[str], instance_id: str
    ) -> list[PoolEntry]:
        """The k entries most relevant to an instance: same instance or a targeted rule of
        it first, then more shared families, then the most recent."""
        rules, fams = set(rule_ids), set(families)

        def rank(entry: PoolEntry) -> tuple[int, int, int]:
            near = entry.instance_id == instance_id or entry.target_rule in rules
            return (-int(near), -len(fams & set(entry.families)), -entry.index)

        return sorted(self.entries, key=rank)[: max(k, 0)]

    def save(self, path: Path) -> None:
        with open(path, "w", encoding="utf-8") as handle:
            for entry in self.entries:
                handle.write(json.dumps(entry.to_dict(), ensure_ascii=False) + "\n")


def render_experience(entries: list[PoolEntry], empty: str = "(none yet)") -> str:
    """Pool entries as the planner prompt shows them: one numbered block each."""
    if not entries:
        return empty
    blocks = []
    for n, e in enumerate(entries, start=1):
        blocks.append(
            f"[{n}] target rule {e.target_rule} (broken: {', '.join(e.violated_rule_ids)})\n"
            f"    strategy: {e.strategy}\n"
            f"    user message: {e.attack}"
        )
    return "\n".join(blocks)
