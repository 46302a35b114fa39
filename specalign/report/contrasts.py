"""Differences between arms, with their 95% CIs: what a study's claim rests on.

A shift vs the base model says each arm moved; a study's claim is usually a difference
between two arms (MSM on spec A vs on spec B after the same SFT; MSM + SFT vs SFT only). A
contrast `{axis, a, b}` (`report.contrasts` in a preset) pairs every arm whose `axis` is `a`
with the arms of the same eval step and model step whose `axis` is `b` and that agree with
it on every other axis they have (the SFT-only arm, shared by both specs, has no spec: it
pairs with each spec's MSM + SFT arm). For each headline metric the difference is a minus b
over the items both arms share, paired by item, with a crossed bootstrap over items and each
arm's seeds (stats.crossed_bootstrap_difference).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from specalign.eval.stats import crossed_bootstrap_difference
from specalign.report.arms import Arm, Stat, item_values


@dataclass
class Contrast:
    label: str  # "<arm a>  -  <arm b>"
    metric: str  # <evaluator>/<metric>
    stat: Stat  # the difference a - b, its CI and the number of items
    seeds: tuple[int, int]


def same_model_step(x: Arm, y: Arm) -> bool:
    first, second = x.evaluations[0], y.evaluations[0]
    return (first.step, first.model_step) == (second.step, second.model_step)


def pairs(arms: list[Arm], axis: str, a: str, b: str) -> list[tuple[Arm, Arm]]:
    """(arm with axis=a, arm with axis=b) of one eval step, agreeing on every other axis."""
    found = []
    for left in arms:
        if left.is_base or left.choices.get(axis) != a:
            continue
        for right in arms:
            if right.is_base or right.choices.get(axis) != b or not same_model_step(left, right):
                continue
            others = {k: v for k, v in right.choices.items() if k != axis}
            if all(left.choices.get(k) == v for k, v in others.items()):
                found.append((left, right))
    return found


def difference(left: Arm, right: Arm, name: str) -> Stat | None:
    evaluator, _, metric = name.partition("/")
    a, b = item_values(left, evaluator, metric), item_values(right, evaluator, metric)
    if not a or not b:
        return None
    common = sorted(set.intersection(*(set(v) for v in a + b)))
    if not common:
        return None
    grid_a = [[v[i] for i in common] for v in a]
    grid_b = [[v[i] for i in common] for v in b]
    value, low, high = crossed_bootstrap_difference(grid_a, grid_b)
    return Stat(value, low, high, len(common))


def contrasts(arms: list[Arm], specs: list[dict[str, Any]], metrics: list[str]) -> list[Contrast]:
    """Every declared contrast, for every headline metric both arms have."""
    out = []
    for spec in specs:
        axis, a, b = str(spec["axis"]), str(spec["a"]), str(spec["b"])
        for left, right in pairs(arms, axis, a, b):
            for name in metrics:
                if name not in left.metrics or name not in right.metrics:
                    continue
                stat = difference(left, right, name)
                if stat is not None:
                    label = f"{left.label}  -  {right.label}"
                    out.append(Contrast(label, name, stat, (left.replicates, right.replicates)))
    return out
