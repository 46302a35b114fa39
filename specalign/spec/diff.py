"""What changed between two versions of a spec, rule by rule (the input TRACE triages).

Rules match by id, which is why ids are stable (explicit markers, or section-path ordinals
that ignore other sections). A rule whose statement or reason changed is one `changed`
entry naming the fields, not a removal plus an addition, so old preference data about it
can be re-judged rather than discarded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from specalign.spec.model import Rule
from specalign.spec.spec import Spec

COMPARED = ("text", "rationale", "examples", "exception", "priority")


@dataclass(frozen=True)
class RuleChange:
    """One rule present in both versions whose content differs in `fields`."""

    id: str
    fields: tuple[str, ...]
    old: Rule
    new: Rule

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "fields": list(self.fields),
            "old": {name: jsonable(getattr(self.old, name)) for name in self.fields},
            "new": {name: jsonable(getattr(self.new, name)) for name in self.fields},
        }


@dataclass(frozen=True)
class SpecDiff:
    """Rule ids added, removed, changed and unchanged from `old` to `new`, in document order."""

    old: Spec
    new: Spec
    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[RuleChange, ...]
    unchanged: tuple[str, ...]

    @property
    def is_empty(self) -> bool:
        """True when every rule is unchanged (prose outside rules may still differ)."""
        return not (self.added or self.removed or self.changed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "old": describe(self.old),
            "new": describe(self.new),
            "added": list(self.added),
            "removed": list(self.removed),
            "changed": [change.to_dict() for change in self.changed],
            "unchanged": list(self.unchanged),
            "is_empty": self.is_empty,
        }


def jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def describe(spec: Spec) -> dict[str, Any]:
    return {"id": spec.id, "path": str(spec.path), "version": spec.version, "hash": spec.hash}


def diff_specs(old: Spec, new: Spec) -> SpecDiff:
    """Match rules by id and compare the fields in COMPARED."""
    before = {rule.id: rule for rule in old.rules}
    after = {rule.id: rule for rule in new.rules}
    changed: list[RuleChange] = []
    unchanged: list[str] = []
    for rule in new.rules:
        if rule.id not in before:
            continue
        fields = tuple(f for f in COMPARED if getattr(before[rule.id], f) != getattr(rule, f))
        if fields:
            changed.append(RuleChange(rule.id, fields, before[rule.id], rule))
        else:
            unchanged.append(rule.id)
    return SpecDiff(
        old=old,
        new=new,
        added=tuple(r.id for r in new.rules if r.id not in before),
        removed=tuple(r.id for r in old.rules if r.id not in after),
        changed=tuple(changed),
        unchanged=tuple(unchanged),
    )
