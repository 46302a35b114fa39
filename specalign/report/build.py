"""Build a sweep's report: `report.md` and `figures/*.png` in the sweep's directory, and the
same tables and figures in a W&B `report` run of the experiment's group.

    python -m specalign.report outputs/multirun/2026-12-06/12-00-00   # a sweep
    python -m specalign.report outputs/runs/2026-12-06/12-00-00       # one run

Sections: the members and their state; the preset's headline comparison (`report.headline`
in its config: a title and the metrics to draw side by side); the differences between arms
it declares (`report.contrasts`, report/contrasts.py); per evaluator, every arm's
headline metrics, value and shift vs the base model with 95% CIs (a table and a figure);
spec coverage (rules x artifacts, per training spec); the steps the members shared.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from specalign.report.arms import Arm, arms_of, evaluations, score_arms
from specalign.report.contrasts import contrasts
from specalign.report.coverage import COLUMNS, coverage
from specalign.report.eval_table import ci_text, fmt
from specalign.report.figures import (
    contrast_figure,
    coverage_figure,
    headline_figure,
    metric_figure,
)
from specalign.report.members import Sweep
from specalign.report.sweep_plan import shared_work_rows

log = logging.getLogger("specalign")
REPORT = "report.md"
FIGURES = "figures"


@dataclass
class Report:
    sweep: Sweep
    directory: Path
    arms: list[Arm]
    lines: list[str] = field(default_factory=list)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    figures: dict[str, Path] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.directory / REPORT


def interval(stat: Any, sign: bool = False) -> str:
    return "-" if stat is None else ci_text(stat.value, stat.low, stat.high, sign)


def markdown_table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> list[str]:
    if not rows:
        return ["(none)"]
    columns = columns or list(dict.fromkeys(k for row in rows for k in row))

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return fmt(value)
        return "-" if value is None else str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return lines


def metric_rows(arms: list[Arm], evaluator: str) -> list[dict[str, Any]]:
    rows = []
    for arm in arms:
        for metric in arm.metrics.values():
            if metric.evaluator != evaluator:
                continue
            rows.append(
                {
                    "arm": arm.label,
                    "metric": metric.metric,
                    "value": metric.stat.value,
                    "ci_low": metric.stat.low,
                    "ci_high": metric.stat.high,
                    "shift": metric.shift.value if metric.shift else None,
                    "shift_ci_low": metric.shift.low if metric.shift else None,
                    "shift_ci_high": metric.shift.high if metric.shift else None,
                    "n": metric.stat.n,
                    "replicates": arm.replicates,
                    "higher_is_better": metric.higher_is_better,
                }
            )
    return rows


def members_section(report: Report) -> None:
    sweep = report.sweep
    rows = []
    for m in sweep.members:
        steps = m.steps()
        state = f"stopped: {m.failed}" if m.failed else ("done" if m.summary else "dry run")
        rows.append(
            {
                "#": m.num,
                **sweep.varying(m),
                "steps ran": sum(not s.get("cached", True) for s in steps) if m.summary else "-",
                "reused": sum(bool(s.get("cached")) for s in steps) if m.summary else "-",
                "state": state,
            }
        )
    report.tables["members"] = rows
    axes = ", ".join(f"{a} ({', '.join(v)})" for a, v in sweep.axes.items()) or "none (one run)"
    report.lines += [
        f"# {sweep.experiment}: report",
        "",
        f"`{sweep.directory}`: {len(sweep.members)} member(s); axes: {axes}. "
        f"Written {datetime.now():%Y-%m-%d %H:%M}. Values are means over items (over seeds x "
        "items for arms of several seeds) with 95% CIs; shifts are trained minus the base "
        "model on the same items (paired).",
        "",
        "## Members",
        *markdown_table(rows),
        "",
    ]


def headline_section(report: Report, headline: dict[str, Any]) -> None:
    metrics = [str(m) for m in headline.get("metrics") or []]
    if not metrics:
        return
    title = str(headline.get("title") or "headline")
    path = headline_figure(title, report.arms, metrics, report.directory / FIGURES / "headline.png")
    rows = []
    for arm in report.arms:
        row: dict[str, Any] = {"arm": arm.label, "seeds": arm.replicates}
        for name in metrics:
            got = arm.metrics.get(name)
            row[name] = interval(got.stat) if got else "-"
            row[f"{name} shift"] = interval(got.shift, True) if got and got.shift else "-"
            if got:
                key = f"headline/{arm.label}/{name}"
                report.summary[key] = got.stat.value
        rows.append(row)
    report.tables["headline"] = rows
    report.lines += [f"## Headline: {title}", ""]
    if path:
        report.figures["headline"] = path
        report.lines += [f"![headline]({FIGURES}/headline.png)", ""]
    report.lines += [*markdown_table(rows), ""]


def contrast_section(report: Report, specs: list[dict[str, Any]], metrics: list[str]) -> None:
    found = contrasts(report.arms, specs, metrics)
    rows = [
        {
            "arm a  -  arm b": c.label,
            "metric": c.metric,
            "difference [95% CI]": interval(c.stat, True),
            "items": c.stat.n,
            "seeds (a, b)": f"{c.seeds[0]}, {c.seeds[1]}",
        }
        for c in found
    ]
    report.tables["contrasts"] = rows
    report.lines += [
        "## Contrasts",
        "",
        "Differences between arms on the same items: a minus b, paired by item, 95% CI from a "
        "bootstrap over items and each arm's seeds.",
        "",
    ]
    path = contrast_figure(found, report.directory / FIGURES / "contrasts.png")
    if path:
        report.figures["contrasts"] = path
        report.lines += [f"![contrasts]({FIGURES}/contrasts.png)", ""]
    report.lines += [*markdown_table(rows), ""]
    for c in found:
        report.summary[f"contrast/{c.label}/{c.metric}"] = c.stat.value


def evaluator_sections(report: Report) -> None:
    names = list(dict.fromkeys(m.evaluator for arm in report.arms for m in arm.metrics.values()))
    for evaluator in names:
        rows = metric_rows(report.arms, evaluator)
        report.tables[evaluator] = rows
        metrics = list(dict.fromkeys(r["metric"] for r in rows))
        full = [f"{evaluator}/{m}" for m in metrics]
        figure = report.directory / FIGURES / f"{evaluator}.png"
        path = metric_figure(evaluator, report.arms, full, list(report.sweep.axes), figure)
        report.lines += [f"## {evaluator}", ""]
        if path:
            report.figures[evaluator] = path
            report.lines += [f"![{evaluator}]({FIGURES}/{path.name})", ""]
        shown = [
            {
                "arm": arm.label,
                "metric": m.metric,
                "value [95% CI]": interval(m.stat),
                "shift vs base [95% CI]": interval(m.shift, True),
                "n": m.stat.n,
                "seeds": arm.replicates,
            }
            for arm in report.arms
            for m in arm.metrics.values()
            if m.evaluator == evaluator
        ]
        report.lines += [*markdown_table(shown), ""]
    skipped = [
        {"arm": arm.label, "evaluator": name, "reason": reason}
        for arm in report.arms
        for name, reason in arm.evaluations[0].results.get("skipped", {}).items()
    ]
    if skipped:
        report.tables["skipped"] = skipped
        report.lines += ["## Skipped evaluators", "", *markdown_table(skipped), ""]


def coverage_section(report: Report) -> None:
    for spec_id, found in coverage(report.sweep).items():
        rows = found["rows"]
        name = f"coverage_{spec_id}"
        report.tables[name] = rows
        path = coverage_figure(spec_id, rows, COLUMNS, report.directory / FIGURES / f"{name}.png")
        report.figures[name] = path
        report.lines += [
            f"## Spec coverage: {spec_id}",
            "",
            f"![{name}]({FIGURES}/{path.name})",
            "",
            f"Never taught (no training row names them): {', '.join(found['untaught']) or 'none'}."
            f" Never tested (no eval item): {', '.join(found['untested']) or 'none'}.",
            *(f"- {note}" for note in found["notes"]),
            "",
            *markdown_table(rows, ["rule", *COLUMNS]),
            "",
        ]


def report_setting(sweep: Sweep, key: str) -> Any:
    """A `report.<key>` setting as the first member that finished recorded it."""
    return next(
        ((m.summary or {}).get("report", {}).get(key) for m in sweep.members if m.summary), None
    )


def write_report(
    sweep: Sweep, out: Path | None = None, tracker_cfg: dict[str, Any] | None = None
) -> Report:
    """Everything above into `out` (default: the sweep's directory); W&B when the members
    logged there (`tracker_cfg`: a logger config, e.g. the members' own)."""
    directory = Path(out or sweep.directory)
    (directory / FIGURES).mkdir(parents=True, exist_ok=True)
    found = evaluations(sweep)
    arms = arms_of(sweep, found)
    score_arms(arms, found)
    report = Report(sweep, directory, arms)
    members_section(report)
    headline = report_setting(sweep, "headline")
    if headline:
        headline_section(report, headline)
    specs = report_setting(sweep, "contrasts")
    if specs and headline:  # the contrasts of the headline metrics
        contrast_section(report, list(specs), [str(m) for m in headline.get("metrics") or []])
    evaluator_sections(report)
    coverage_section(report)
    shared = shared_work_rows(sweep)
    report.tables["shared_work"] = shared
    report.lines += ["## Steps and who computed them", "", *markdown_table(shared), ""]
    tmp = directory / f".{REPORT}.tmp"
    tmp.write_text("\n".join(report.lines) + "\n", encoding="utf-8")
    tmp.replace(report.path)
    log.info("report: %s (%d figures)", report.path, len(report.figures))
    if tracker_cfg and tracker_cfg.get("_target_"):
        from hydra.utils import instantiate

        instantiate(tracker_cfg, _convert_="all").report_run(sweep.experiment, report)
    return report
