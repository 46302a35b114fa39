"""The models a sweep evaluated, as the arms a reader compares.

Each eval artifact a member's summary names is one *evaluation* (shared artifacts, such as
the base model's eval, count once). Evaluations of the same eval step whose members agree
on every axis but the replicate ones (`seed`) form one *arm*; an arm of several seeds is
pooled: its value is the mean over seeds x items and its 95% CI a crossed bootstrap over
both (stats.crossed_bootstrap_mean), and so is its shift against the base model (per item,
trained minus the base model's value). An arm of one evaluation reports exactly the records
and shifts its eval step wrote.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from specalign.eval.stats import crossed_bootstrap_mean
from specalign.report.eval_table import headline
from specalign.report.members import REPLICATE_AXES, Sweep

log = logging.getLogger("specalign")


@dataclass
class Evaluation:
    """One eval artifact: which step made it, on which model, for which members."""

    key: str
    step: str
    path: Path
    results: dict[str, Any]
    eval_cfg: dict[str, Any]
    model_step: str | None  # the step that trained the model; None: the backbone
    members: list[int] = field(default_factory=list)

    @property
    def baseline(self) -> str | None:
        return self.results.get("baseline")

    def rows(self, evaluator: str) -> list[dict[str, Any]]:
        path = self.path / f"{evaluator}_items.jsonl"
        lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
        return [json.loads(line) for line in lines if line.strip()]


@dataclass
class Stat:
    value: float
    low: float
    high: float
    n: int


@dataclass
class ArmMetric:
    evaluator: str
    metric: str
    stat: Stat
    shift: Stat | None
    higher_is_better: bool | None

    @property
    def name(self) -> str:
        return f"{self.evaluator}/{self.metric}"


@dataclass
class Arm:
    label: str
    choices: dict[str, str]  # the axis values its members agree on (replicate axes left out)
    evaluations: list[Evaluation]
    metrics: dict[str, ArmMetric] = field(default_factory=dict)  # filled by score_arms
    # evaluator -> per evaluation measures (None: no settings to rebuild them); see measures()
    built: dict[str, list[dict[str, Any]] | None] = field(default_factory=dict, repr=False)

    def measures(self, evaluator: str) -> list[dict[str, Any]] | None:
        """Per evaluation (one per seed), the evaluator's measures rebuilt from its rows by
        its own `measures`: read once per arm, whoever asks (pooling, contrasts)."""
        if evaluator not in self.built:
            built = build_evaluator(self.evaluations[0], evaluator)
            self.built[evaluator] = (
                None
                if built is None
                else [built.measures(e.rows(evaluator)) for e in self.evaluations]
            )
        return self.built[evaluator]

    @property
    def is_base(self) -> bool:
        return all(e.model_step is None for e in self.evaluations)

    @property
    def replicates(self) -> int:
        return len(self.evaluations)


def model_step_of(path: Path, step: str, results: dict[str, Any]) -> str | None:
    """The step that trained the evaluated model (its manifest's `model` input); None for
    the backbone. Without the artifact (a store moved elsewhere), a trained model's eval is
    the one with a baseline, named `eval_<step>`."""
    manifest = path / "manifest.json"
    if manifest.is_file():
        model = json.loads(manifest.read_text()).get("inputs", {}).get("model")
        return model["step"] if model else None
    return step.removeprefix("eval_") if results.get("baseline") else None


def evaluations(sweep: Sweep) -> dict[str, Evaluation]:
    """Every eval artifact of the sweep's finished members, by key, with its members."""
    found: dict[str, Evaluation] = {}
    for member in sweep.members:
        for step in (member.summary or {}).get("steps", []):
            if "evaluation" not in step:
                continue
            key = step["key"]
            if key not in found:
                path = Path(step["artifact"])
                found[key] = Evaluation(
                    key,
                    step["name"],
                    path,
                    step["evaluation"],
                    member.summary.get("eval") or {},
                    model_step_of(path, step["name"], step["evaluation"]),
                )
            found[key].members.append(member.num)
    return found


def arm_choices(sweep: Sweep, evaluation: Evaluation) -> dict[str, str]:
    """The axis values all of the evaluation's members share, replicate axes left out."""
    out = {}
    members = [m for m in sweep.members if m.num in evaluation.members]
    for axis in sweep.axes:
        if axis in REPLICATE_AXES:
            continue
        values = {m.choices.get(axis, "-") for m in members}
        if len(values) == 1:
            out[axis] = values.pop()
    return out


def arms_of(sweep: Sweep, found: dict[str, Evaluation]) -> list[Arm]:
    """Evaluations grouped into arms, the base model first, then in the sweep's axis order."""
    groups: dict[tuple, Arm] = {}
    for evaluation in found.values():
        chosen = arm_choices(sweep, evaluation)
        if evaluation.model_step is None:
            chosen = {}  # the backbone's eval: one base model, whatever the members chose
        ident = (evaluation.step, evaluation.model_step, tuple(sorted(chosen.items())))
        if ident not in groups:
            what = evaluation.model_step or "base"
            where = " ".join(f"{k}={v}" for k, v in chosen.items())
            label = what if not where else f"{what} | {where}"
            if evaluation.model_step is None and evaluation.step != "eval_base":
                label = f"{evaluation.step} | {where}".rstrip(" |")
            groups[ident] = Arm(label, chosen, [])
        groups[ident].evaluations.append(evaluation)
    order = {axis: values for axis, values in sweep.axes.items()}

    def rank(arm: Arm) -> tuple:
        position = [order[a].index(arm.choices[a]) if a in arm.choices else -1 for a in sweep.axes]
        return (not arm.is_base, position, arm.label)

    return sorted(groups.values(), key=rank)


def build_evaluator(evaluation: Evaluation, name: str) -> Any:
    from specalign.eval.evaluator import build_evaluators

    config = (evaluation.eval_cfg.get("evaluators") or {}).get(name)
    return build_evaluators({name: config})[name] if config else None


def pooled(values_per_replicate: list[dict[str, float]]) -> Stat | None:
    """Mean and crossed-bootstrap CI over the items every replicate has."""
    if not values_per_replicate:
        return None
    common = set.intersection(*(set(v) for v in values_per_replicate))
    if not common:
        return None
    ids = sorted(common)
    grid = [[v[i] for i in ids] for v in values_per_replicate]
    mean, low, high = crossed_bootstrap_mean(grid)
    return Stat(mean, low, high, len(ids))


def score_arms(arms: list[Arm], found: dict[str, Evaluation]) -> None:
    """Each arm's headline metrics: value and shift vs the base model, with 95% CIs."""
    for arm in arms:
        names = list(dict.fromkeys(
            (r["evaluator"], r["metric"])
            for e in arm.evaluations
            for r in e.results.get("records", [])
            if headline(r["metric"])
        ))  # fmt: skip
        if arm.replicates == 1:
            arm.metrics.update(single(arm.evaluations[0], names))
        else:
            arm.metrics.update(replicated(arm, names, found))


def single(evaluation: Evaluation, names: list[tuple[str, str]]) -> dict[str, ArmMetric]:
    """An arm of one evaluation: its eval step's own records and shifts."""
    records = {(r["evaluator"], r["metric"]): r for r in evaluation.results.get("records", [])}
    shifts = {(s["evaluator"], s["metric"]): s for s in evaluation.results.get("shifts", [])}
    out = {}
    for ident in names:
        r, s = records[ident], shifts.get(ident)
        stat = Stat(r["value"], r["ci_low"], r["ci_high"], r["n"])
        shift = Stat(s["shift"], s["ci_low"], s["ci_high"], s["n"]) if s else None
        metric = ArmMetric(ident[0], ident[1], stat, shift, r.get("higher_is_better"))
        out[metric.name] = metric
    return out


def replicated(
    arm: Arm, names: list[tuple[str, str]], found: dict[str, Evaluation]
) -> dict[str, ArmMetric]:
    """An arm of several seeds: per-item values rebuilt from the rows by each evaluator's
    own `measures`, pooled over seeds x items."""
    measures: dict[str, list[dict[str, Any]]] = {}  # evaluator -> per evaluation measures
    for evaluator in dict.fromkeys(n for n, _ in names):
        built = arm.measures(evaluator)
        if built is None:  # a summary written before reports existed: no settings to rebuild
            log.warning("%s: no settings for %s; its seeds are not pooled", arm.label, evaluator)
            continue
        measures[evaluator] = built
    base_measures: dict[str, list[dict[str, Any] | None]] = {}
    for evaluator in measures:
        bases = [found.get(e.baseline or "") for e in arm.evaluations]
        base_measures[evaluator] = [
            build_evaluator(b, evaluator).measures(b.rows(evaluator)) if b else None for b in bases
        ]
    out = {}
    for evaluator, metric in names:
        if evaluator not in measures:
            continue
        trained = [m[metric].values for m in measures[evaluator] if metric in m]
        if len(trained) != arm.replicates:
            continue
        stat = pooled(trained)
        if stat is None:
            continue
        diffs = []
        for values, base in zip(trained, base_measures[evaluator], strict=True):
            if base is None or metric not in base:
                diffs = []
                break
            before = base[metric].values
            diffs.append({i: values[i] - before[i] for i in values if i in before})
        shift = pooled(diffs) if diffs else None
        better = measures[evaluator][0][metric].higher_is_better
        out[f"{evaluator}/{metric}"] = ArmMetric(evaluator, metric, stat, shift, better)
    return out


def item_values(arm: Arm, evaluator: str, metric: str) -> list[dict[str, float]] | None:
    """Per evaluation of the arm (one per seed), the metric's value per item; None when an
    evaluation cannot be rebuilt or lacks the metric."""
    measures = arm.measures(evaluator)
    if measures is None or any(metric not in m for m in measures):
        return None
    return [dict(m[metric].values) for m in measures]


def finite(x: float | None) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))
