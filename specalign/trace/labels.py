"""The three triage labels and how a pair gets one (RESEARCH.md s.3, step 1).

A judge says, of chosen and of rejected separately, whether the response violates the new
spec. chosen violates and rejected complies: the old preference is backwards (INVERT, train
on the swap); both violate: there is nothing to prefer, push both down (PUNISH); chosen
complies: the old preference still holds (RETAIN).
"""

from __future__ import annotations

from typing import Any

from specalign.errors import SpecAlignError

INVERT, PUNISH, RETAIN = "INVERT", "PUNISH", "RETAIN"
LABELS = (INVERT, PUNISH, RETAIN)
CONFLICTS = (INVERT, PUNISH)


def label_of(chosen_violates: bool, rejected_violates: bool) -> str:
    if not chosen_violates:
        return RETAIN
    return PUNISH if rejected_violates else INVERT


def labels_in_data(row: dict[str, Any], where: str) -> tuple[bool, bool]:
    """(chosen violates, rejected violates) from a row that carries them: `triage` (or
    `label`) as one of LABELS, or the booleans `chosen_violates` / `rejected_violates`."""
    given = row.get("triage", row.get("label"))
    if isinstance(given, str) and given.upper() in LABELS:
        label = given.upper()
        return label != RETAIN, label == PUNISH
    flags = row.get("chosen_violates"), row.get("rejected_violates")
    if all(isinstance(f, bool) for f in flags):
        return bool(flags[0]), bool(flags[1])
    raise SpecAlignError(
        f"{where}: triage judge=labels needs `chosen_violates` and `rejected_violates` "
        f"(booleans) or `triage` in {list(LABELS)} on every pair; this row has "
        f"{sorted(k for k in row if k not in ('prompt', 'chosen', 'rejected'))}. Fix the data, "
        "or use stage.steps.triage.judge=llm."
    )
