"""Controllable specification instantiation (SpecAlign, RESEARCH.md s.1).

A spec is too long to train on whole, so synthesis works on *instances*: sub-specs of
8-13 rules. Each instance is drawn so that, as far as the spec allows:
  1. do / don't rules are balanced (|do - dont| <= 1 unless one kind runs out);
  2. every interaction stage of the spec is covered;
  3. as many domains as possible are covered;
  4. families are diverse (no family repeats while an unused one can be taken).
(1) is a hard quota; (2)-(4) are a greedy preference order within it. The chosen rules are
then ordered by the lexicographic conflict-resolution key, so that "earlier wins" when two
rules of an instance conflict.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from specalign.spec.model import PRIORITIES, Annotation

STAGE_ORDER = {"request": 0, "response": 1, "conversation": 2}
DEFAULT_ORDER = ("stage", "direction", "exception", "specificity")
ORDER_KEYS = {
    "priority": lambda a: PRIORITIES.index(a.priority),
    "stage": lambda a: STAGE_ORDER[a.stage],
    "direction": lambda a: 0 if a.direction == "dont" else 1,  # prohibitions first
    "exception": lambda a: 0 if a.has_exception else 1,  # the exception overrides the rule
    "specificity": lambda a: -a.specificity,  # the more specific rule first
}


@dataclass(frozen=True)
class Instance:
    instance_id: str
    rule_ids: tuple[str, ...]
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def direction_quota(pool: Sequence[Annotation], size: int) -> dict[str, int]:
    """How many do and dont rules an instance of `size` takes: balanced where possible."""
    available = {d: sum(a.direction == d for a in pool) for d in ("do", "dont")}
    minority = min(available, key=lambda d: (available[d], d))
    majority = "do" if minority == "dont" else "dont"
    take_min = min(available[minority], max(size // 2, size - available[majority]))
    return {minority: take_min, majority: size - take_min}


def order_rules(chosen: Sequence[Annotation], order_by: Sequence[str]) -> list[Annotation]:
    return sorted(chosen, key=lambda a: (*(ORDER_KEYS[k](a) for k in order_by), a.rule_id))


def sample_instance(
    pool: Sequence[Annotation], rng: random.Random, min_rules: int, max_rules: int
) -> list[Annotation]:
    size = min(rng.randint(min_rules, max_rules), len(pool))
    quota = direction_quota(pool, size)
    remaining = list(pool)
    rng.shuffle(remaining)
    chosen: list[Annotation] = []
    stages: set[str] = set()
    domains: set[str] = set()
    families: set[str] = set()
    while len(chosen) < size:
        allowed = [a for a in remaining if quota[a.direction] > 0]
        best = max(
            allowed,
            key=lambda a: (
                a.stage not in stages,
                a.domain not in domains,
                a.family not in families,
            ),
        )  # max() keeps the first of equals: the shuffle breaks ties at random
        chosen.append(best)
        remaining.remove(best)
        quota[best.direction] -= 1
        stages.add(best.stage)
        domains.add(best.domain)
        families.add(best.family)
    return chosen


def sample_instances(
    annotations: Sequence[Annotation],
    count: int,
    *,
    min_rules: int = 8,
    max_rules: int = 13,
    seed: int = 0,
    order_by: Sequence[str] = DEFAULT_ORDER,
    prefix: str = "inst",
) -> list[Instance]:
    """`count` instances, each reproducible from (seed, index) alone."""
    if not 1 <= min_rules <= max_rules:
        raise ValueError(f"need 1 <= min_rules <= max_rules, got {min_rules}, {max_rules}")
    unknown = [k for k in order_by if k not in ORDER_KEYS]
    if unknown:
        raise ValueError(f"unknown order_by keys {unknown}; choose from {sorted(ORDER_KEYS)}")
    if not annotations:
        raise ValueError("no annotated rules to sample from")
    instances = []
    for index in range(count):
        rng = random.Random(f"{seed}:{index}")
        chosen = order_rules(sample_instance(annotations, rng, min_rules, max_rules), order_by)
        ids = tuple(a.rule_id for a in chosen)
        digest = hashlib.sha256("|".join(ids).encode()).hexdigest()[:8]
        instances.append(Instance(f"{prefix}-{index:04d}-{digest}", ids, seed))
    return instances
