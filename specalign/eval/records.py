"""The one shape every evaluator's results take.

An evaluator turns its per-item rows into `Measure`s: a metric as one value per item (a 0/1
success, a probability, a margin). Everything else is derived here, the same way for every
evaluator: the record (the mean over items, with a 95% CI: Wilson when the values are 0/1,
a bootstrap over items otherwise) and the shift of a trained model against the base model
(the mean of paired per-item differences, with a paired bootstrap CI over items).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from specalign.eval.stats import bootstrap_mean, is_binary, paired_shift, wilson


@dataclass(frozen=True)
class Measure:
    """A metric's per-item values (item id -> value); `note` states how it was computed
    (e.g. the length normalization), and travels into the record."""

    values: dict[str, float]
    higher_is_better: bool | None = True  # None: descriptive (e.g. another spec's value)
    note: str = ""

    @property
    def mean(self) -> float:
        """The metric's value: the mean over its items (tables and inspect-log headlines)."""
        return sum(self.values.values()) / len(self.values)


@dataclass(frozen=True)
class Record:
    """{evaluator, metric, value, n, ci_low, ci_high, higher_is_better} plus how the CI was
    made and what the metric means."""

    evaluator: str
    metric: str
    value: float
    n: int
    ci_low: float
    ci_high: float
    higher_is_better: bool | None
    ci: str = "bootstrap"  # "wilson" | "bootstrap"
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Shift:
    """Trained minus base on the items both were scored on, with a paired bootstrap CI."""

    evaluator: str
    metric: str
    base: float
    trained: float
    shift: float
    n: int
    ci_low: float
    ci_high: float
    higher_is_better: bool | None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class EvalResult:
    """What one evaluator returns for one model: per-item rows and their measures."""

    rows: list[dict[str, Any]]
    measures: dict[str, Measure]
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # extra views (W&B)


def record_of(evaluator: str, metric: str, measure: Measure) -> Record:
    values = list(measure.values.values())
    n = len(values)
    mean = sum(values) / n if n else float("nan")
    if n and is_binary(values):
        low, high = wilson(sum(values), n)
        method = "wilson"
    else:
        low, high = bootstrap_mean(values)
        method = "bootstrap"
    return Record(
        evaluator, metric, mean, n, low, high, measure.higher_is_better, method, measure.note
    )


def records_of(evaluator: str, measures: dict[str, Measure]) -> list[Record]:
    return [record_of(evaluator, metric, m) for metric, m in measures.items() if m.values]


def shifts_of(evaluator: str, base: dict[str, Measure], trained: dict[str, Measure]) -> list[Shift]:
    """A shift per metric both models have, over the items both were scored on."""
    shifts = []
    for metric, after in trained.items():
        before = base.get(metric)
        if before is None:
            continue
        ids = sorted(set(before.values) & set(after.values))
        if not ids:
            continue
        b = [before.values[i] for i in ids]
        t = [after.values[i] for i in ids]
        diff, low, high = paired_shift(b, t)
        shifts.append(
            Shift(
                evaluator,
                metric,
                sum(b) / len(b),
                sum(t) / len(t),
                diff,
                len(ids),
                low,
                high,
                after.higher_is_better,
                after.note,
            )
        )
    return shifts


def mean_by(rows: list[dict[str, Any]], field: str, key: str = "id") -> dict[str, float]:
    """item id -> a numeric field of its row (rows without the field are left out)."""
    return {str(r[key]): float(r[field]) for r in rows if r.get(field) is not None}


def rule_table(measures: dict[str, Measure], column: str) -> list[dict[str, Any]]:
    """The `rule/<id>/<column>` measures as one row per rule (a per-rule W&B / log table)."""
    table = []
    for metric, measure in measures.items():
        parts = metric.split("/")
        if len(parts) == 3 and parts[0] == "rule" and parts[2] == column and measure.values:
            values = list(measure.values.values())
            table.append({"rule_id": parts[1], "n": len(values), column: sum(values) / len(values)})
    return table
